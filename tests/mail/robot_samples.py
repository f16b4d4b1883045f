"""Raw samples of machine-written mail in the shapes real software sends, and a person's mail
that carries such a report inside an attachment; shared by the structure tests."""

from __future__ import annotations

ROOM_ACCEPT = b"""\
From: Boardroom 4 <boardroom4@fabrikam.example>
To: Support <support@example.com>
Subject: Accepted: Quarterly review
Date: Mon, 2 Nov 2026 09:14:07 +0000
Message-ID: <b1a7e3f0c2@fabrikam.example>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="_000_b1a7"

--_000_b1a7
Content-Type: text/plain; charset="us-ascii"

Your request was accepted.

--_000_b1a7
Content-Type: text/html; charset="us-ascii"

<html><body><p>Your request was accepted.</p></body></html>

--_000_b1a7
Content-Type: text/calendar; charset="utf-8"; method=REPLY
Content-Transfer-Encoding: base64

QkVHSU46VkNBTEVOREFSDQpNRVRIT0Q6UkVQTFkNCkVORDpWQ0FMRU5EQVINCg==

--_000_b1a7--
"""

POSTFIX_DSN = b"""\
From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: support@example.com
Subject: Nyaan
Date: Mon, 2 Nov 2026 09:15:00 +0000
Message-ID: <20261102091500.4F1C2@mx.example.org>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="4F1C2.1"

--4F1C2.1
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.org.

--4F1C2.1
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; p.lang@fabrikam.example
Action: failed
Status: 5.1.1

--4F1C2.1
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: support@example.com
Subject: Your request

--4F1C2.1--
"""

NOTES_OOO = """\
From: Hans Meier <hans.meier@contoso.example>
To: support@example.com
Subject: AUTO: Hans Meier ist außer Haus (Rückkehr am 16.11.2026)
Date: Mon, 2 Nov 2026 09:16:00 +0000
Message-ID: <OF12AB34CD.5678EF90-ON0025@contoso.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 8bit

Ich bin bis 16.11.2026 nicht im Büro.

Hinweis: Dies ist eine automatische Antwort auf Ihre Nachricht "Ihre Anfrage" gesendet am
02.11.2026.
""".encode()

PERSON_FORWARDING_A_BOUNCE = b"""\
From: Ana Souza <ana@example.org>
To: support@example.com
Subject: Fwd: Undelivered Mail Returned to Sender
Date: Mon, 2 Nov 2026 09:17:00 +0000
Message-ID: <c0ffee01@example.org>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: text/plain; charset=us-ascii

Why does my mail to your billing address come back? The bounce is attached.

--outer
Content-Type: message/rfc822

From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: ana@example.org
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="inner"

--inner
Content-Type: text/plain

This is the mail system at host mx.example.org.

--inner
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

--inner--

--outer--
"""

SAMPLES = {
    "room-accept": (ROOM_ACCEPT, "calendar_reply"),
    "postfix-dsn": (POSTFIX_DSN, "bounce"),
    "notes-ooo": (NOTES_OOO, "auto_reply"),
    "person-forwarding-a-bounce": (PERSON_FORWARDING_A_BOUNCE, "new_thread"),
}
"""name: (raw message, the rule that decides it for a new thread)."""
