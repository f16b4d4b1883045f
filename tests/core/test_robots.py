"""Mail software recognised by its structure, senders and words, and people who only sound
like it: reports, system senders, delivery failures and auto-replies in several languages,
challenge requests, calendar replies and vendor fields."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from mailbridge.core import phrases
from mailbridge.core.model import Address, InboundMessage
from mailbridge.core.rules import AUTOMATIC_RULES, RuleContext, RulePolicy, evaluate

POLICY = RulePolicy(support_addresses=frozenset({"support@example.com"}))
ANA = Address("Ana Souza", "ana@example.org")
SUPPORT = (Address("", "support@example.com"),)


def message(*, subject: str = "Question about invoice 2291", text: str = "Hello, can you help?",
            from_: tuple[Address, ...] = (ANA,), sender: Address | None = None,
            return_path: str | None = "ana@example.org", reply_to: tuple[Address, ...] = (),
            headers: tuple[tuple[str, str], ...] = (), content_type: str = "text/plain",
            parts: tuple[str, ...] = (), calendar_method: str = "") -> InboundMessage:
    return InboundMessage(
        message_id="<1@example.org>", from_=from_, sender=sender, reply_to=reply_to,
        to=SUPPORT, cc=(), return_path=return_path, subject=subject,
        date=datetime(2026, 11, 2, tzinfo=UTC), in_reply_to=(), references=(),
        headers=headers, content_type=content_type, text=text, parts=parts,
        calendar_method=calendar_method)


def decide(msg: InboundMessage, *, thread: str | None = None) -> tuple[str, str]:
    verdict = evaluate(msg, RuleContext(POLICY, thread=thread))
    assert verdict.reply == (verdict.rule == "new_thread")
    return verdict.rule, verdict.detail


def rule_of(msg: InboundMessage, *, thread: str | None = None) -> str:
    return decide(msg, thread=thread)[0]


# --- structure ---------------------------------------------------------------------


@pytest.mark.parametrize("parts", [
    ("text/plain", "message/delivery-status", "message/rfc822"),
    ("multipart/alternative", "text/plain", "message/global-delivery-status"),
    ("text/plain", "message/feedback-report", "text/rfc822-headers"),
    ("text/plain", "message/disposition-notification"),
], ids=["dsn-in-mixed", "global-dsn", "arf", "mdn"])
def test_a_report_part_anywhere_is_a_bounce(parts: tuple[str, ...]) -> None:
    """Report parts are mail software's, wherever they sit in the message."""
    msg = message(content_type="multipart/mixed", parts=parts, subject="Nyaan")
    report = next(p for p in parts if p.startswith("message/"))
    assert decide(msg) == ("bounce", f"it is a delivery, read or feedback report ({report})")


def test_a_returned_message_from_a_system_sender_is_a_bounce() -> None:
    """A gateway returning the original as message/rfc822 from postmaster is a bounce."""
    msg = message(from_=(Address("", "post_master@gw.example.net"),), subject="Mail",
                  content_type="multipart/mixed", parts=("text/plain", "message/rfc822"),
                  return_path=None)
    rule, detail = decide(msg)
    assert rule == "bounce"
    assert "message/rfc822" in detail and "post_master@gw.example.net" in detail


def test_a_list_digest_is_not_a_returned_message() -> None:
    """A digest from a list robot is the list's mail, not a bounce returning a message."""
    msg = message(from_=(Address("", "ppp-request@lists.example.org"),), subject="Digest #2",
                  content_type="multipart/mixed",
                  parts=("text/plain", "multipart/digest", "message/rfc822", "message/rfc822"))
    assert rule_of(msg) == "robot_sender"


def test_a_person_forwarding_a_message_as_an_attachment_is_a_person() -> None:
    """A customer's forward as attachment, with words of their own, gets an ack."""
    msg = message(subject="Fw: the quote you sent", content_type="multipart/mixed",
                  parts=("text/plain", "message/rfc822"),
                  text="Is this quote still valid? It came from your sales team.")
    assert rule_of(msg) == "new_thread"


# --- system senders ------------------------------------------------------------------


@pytest.mark.parametrize("addr", [
    "MAILER-DAEMON@mx.example.net", "mailer_daemon@mx.example.net", "postmaster@example.net",
    "post_master@vtext.example.com", "post-master@example.net", "LISTSERV@LISTS.EXAMPLE.EDU",
    "majordomo@example.org", "users-request@lists.example.org",
    "users-request+subscribe@lists.example.org", "owner-users@lists.example.org",
    "neko-admin@example.co.jp", "E500_SMTP_Mail_Service@example.jp",
    '"System Administrator"@example.com', "Mail.Delivery.System@example.com",
    "noreply@example.org", "no-reply@example.org", "no_reply@example.org",
    "donotreply@example.org", "do-not-reply@example.org", "gmail-noreply@google.com",
    "noreply-billing@example.org", "ne-pas-repondre@impots.example.fr",
    "naoresponda@banco.example.br", "bitte-nicht-antworten@bank.example.de",
])
def test_system_senders_in_from_are_robots(addr: str) -> None:
    """Mail software's addresses in From are robots, whatever separator they use."""
    assert rule_of(message(from_=(Address("", addr),), return_path=None)) == "robot_sender"


@pytest.mark.parametrize("addr", [
    "bounces@mail.shop.example", "bounce-1234-ana=example.org@mailer.shop.example",
    "newsletter-bounces@lists.shop.example", "bounces+1234-ab12=example.org@em.shop.example",
    "listname-return-12-ana=example.org@lists.example.org",
])
def test_bounce_handlers_in_the_envelope_are_robots(addr: str) -> None:
    """A newsletter whose Return-Path is a bounce handler is bulk mail, not a person."""
    rule, detail = decide(message(from_=(Address("Shop", "news@shop.example"),),
                                  return_path=addr))
    assert rule == "robot_sender"
    assert f"Return-Path {addr}" in detail


def test_a_list_robot_in_sender_is_a_robot() -> None:
    """Sender: names who sent the mail; a list server there makes it a robot's."""
    msg = message(sender=Address("", "neko-admin@example.co.jp"))
    assert rule_of(msg) == "robot_sender"


def test_an_unreadable_from_is_still_read_for_system_names() -> None:
    """'MAILER-DAEMON <>' has no address, but it is still mail software's."""
    msg = message(from_=(), headers=(("from", "MAILER-DAEMON <>"),), return_path=None,
                  subject="Mail delivery failed")
    assert rule_of(msg) in ("robot_sender", "bounce_text")
    msg = message(from_=(), headers=(("from", "Mail Delivery Subsystem <MAILER-DAEMON>"),),
                  return_path=None, subject="Nyaan")
    assert rule_of(msg) == "robot_sender"


@pytest.mark.parametrize("addr", [
    "requests@example.org", "feature-requests@example.org", "admin@example.org",
    "norbert.reply@example.org", "bouncer.ana@example.org", "anna.noreen@example.org",
    "postbox@example.org",
])
def test_people_whose_address_only_resembles_a_robot_are_people(addr: str) -> None:
    """Only the patterns mail software uses count, not words near them."""
    assert rule_of(message(from_=(Address("", addr),), return_path=addr)) == "new_thread"


def test_a_web_form_writing_for_a_person_is_the_person() -> None:
    """noreply@ of a site with the writer's address of another domain in Reply-To: a form,
    answered at Reply-To; with the envelope no-reply too, only when acks go to Reply-To."""
    form = message(from_=(Address("Marta Silva via Contact", "noreply@www.shop.example"),),
                   reply_to=(Address("", "marta@padaria.example"),),
                   return_path="wordpress@www.shop.example")
    assert rule_of(form) == "new_thread"
    form = replace(form, return_path="noreply@www.shop.example")
    assert rule_of(form) == "robot_sender"
    by_reply_to = evaluate(form, RuleContext(replace(POLICY, reply_to="reply-to")))
    assert by_reply_to.rule == "new_thread"


def test_a_no_reply_sender_naming_its_own_organisation_is_a_robot() -> None:
    """A notification's Reply-To in its own organisation is no form relay."""
    msg = message(from_=(Address("Billing", "no-reply@billing.shop.example"),),
                  reply_to=(Address("", "accounts@shop.example"),),
                  return_path="bills@billing.shop.example")
    assert rule_of(msg) == "robot_sender"


# --- delivery failures and auto-replies by their words --------------------------------


@pytest.mark.parametrize("subject", [
    "Undeliverable: Invoice 2291", "Unzustellbar: Rechnung 2291", "Non remis : Devis 2291",
    "No se puede entregar: Pedido 2291", "Non recapitabile: Ordine 2291",
    "Não é possível entregar: Pedido 2291", "Onbestelbaar: Bestelling 2291",
    "配信不能: 注文 2291", "Undelivered Mail Returned to Sender",
    "Returned mail: see transcript for details",
    "Mail delivery failed: returning message to sender", "Delivery Status Notification (Failure)",
    "failure notice", "Returned Mail - Error During Delivery", "Недоставленное сообщение",
    "Warning: could not send message for past 4 hours",
])
def test_delivery_failure_subjects_of_mail_software(subject: str) -> None:
    """The subjects MTAs and Exchange write, in several languages, decide alone."""
    assert rule_of(message(subject=subject, text="")) == "bounce_text"


@pytest.mark.parametrize("subject", [
    "Automatic reply: Invoice 2291", "Automatische Antwort: Rechnung",
    "Réponse automatique : Devis", "Respuesta automática: Pedido", "Risposta automatica: Ordine",
    "Resposta automática: Pedido", "Automatisch antwoord: Bestelling", "自動応答: 注文",
    "不在: 注文", "自動回復: 訂單", "自动回复: 订单", "Out of Office AutoReply: Invoice",
    "Abwesenheitsnotiz: Rechnung",
    "AUTO: Jane Doe is out of the office (returning 02/03/2026)",
    "AUTO: Hans Meier ist außer Haus (Rückkehr am 02.03.2026)", "Autoreply", "Autosvar: x",
])
def test_auto_reply_subjects_of_mail_software(subject: str) -> None:
    """Outlook's, Exchange's and Notes' automatic-reply subjects decide alone."""
    assert rule_of(message(subject=subject, text="")) == "auto_reply"


@pytest.mark.parametrize(("subject", "text", "expected"), [
    ("Delivery Failure", "Your message could not be delivered to the following recipients:\n"
     "  p.lang@fabrikam.example", "bounce_text"),
    ("Delivery failure notification", "The message you sent to p.lang@fabrikam.example was not"
     " delivered because it contained a virus (W32/Netsky).", "bounce_text"),
    ("Devis 2291 non remis (delivery failed)",
     "Votre message n'a pas pu être remis à p.lang@fabrikam.example.", "bounce_text"),
    ("Mail failure", "Die Nachricht konnte nicht zugestellt werden.\n550 5.1.1 User unknown",
     "bounce_text"),
    ("Out of office", "I am currently out of the office with limited access to e-mail.",
     "auto_reply"),
    ("Abwesend", "Ich bin bis 14.11. nicht im Büro. Dies ist eine automatische Antwort.",
     "auto_reply"),
    ("Absent du bureau", "Je suis absente jusqu'au 14 novembre. Ceci est une réponse "
     "automatique.", "auto_reply"),
    ("En vacaciones", "Estoy de vacaciones hasta el 14 de noviembre. Esta es una respuesta "
     "automática.", "auto_reply"),
    ("In ferie", "Sono in ferie fino al 14 novembre. Questa è una risposta automatica.",
     "auto_reply"),
    ("De férias", "Estou de férias até 14 de novembro. Esta é uma resposta automática.",
     "auto_reply"),
    ("Afwezig tot maandag", "Ik ben afwezig tot maandag 14 november. Dit is een automatisch "
     "antwoord.", "auto_reply"),
    ("不在のお知らせ", "ただいま不在にしております。このメールは自動送信です。", "auto_reply"),
    ("Mail failure", "Impossibile recapitare il messaggio a p.lang@fabrikam.example.",
     "bounce_text"),
])
def test_hints_decide_with_corroborating_words(subject: str, text: str, expected: str) -> None:
    """A hint in the subject and the words of mail software in the text: a robot."""
    assert rule_of(message(subject=subject, text=text)) == expected


def test_a_hint_with_a_system_display_name_is_a_robot() -> None:
    """'Mail Delivery System' signing a 'Delivery failure' is a gateway's bounce."""
    msg = message(subject="Delivery failure", text="Delivery to 1 recipient failed.",
                  from_=(Address("Mail Delivery System", "mail@gw.example.net"),))
    assert rule_of(msg) == "bounce_text"


def test_a_complaint_report_without_arf() -> None:
    """A provider's staff complaint with the original attached and no text is a report."""
    msg = message(subject="complaint about message from 192.0.2.222", text="",
                  from_=(Address("", "staff@hotmail.example"),),
                  content_type="multipart/mixed", parts=("message/rfc822",))
    rule, detail = decide(msg)
    assert rule == "bounce_text"
    assert "complaint" in detail and "message/rfc822" in detail


# --- people who sound like mail software ---------------------------------------------


def test_a_customer_writing_about_a_failed_parcel_delivery_is_a_person() -> None:
    """'Delivery failure' and 'could not be delivered' about a parcel is a customer."""
    msg = message(subject="Delivery failure",
                  text="Hello, my parcel could not be delivered yesterday. Please send it again.")
    assert rule_of(msg) == "new_thread"


@pytest.mark.parametrize(("subject", "text"), [
    ("Delivery problem", "Hello, you were unable to deliver my parcel on Monday."),
    ("Mail failure", "My message could not be delivered to your billing address, please fix."),
    ("Undeliverable package", "The courier says the address is undeliverable."),
    ("Abwesend", "Ich bin bis 14.11. nicht im Büro, bitte rufen Sie mich danach an."),
    ("Out of office until Monday", "I am out of the office until Monday, please hold my order."),
    ("Paket unzustellbar", "Mein Paket konnte nicht zugestellt werden. Bitte neu senden."),
    ("動画配信について", "動画が配信できません。確認をお願いします。"),
])
def test_people_writing_about_deliveries_and_absences_are_people(subject: str,
                                                                  text: str) -> None:
    """Parcels, 'my message' and a person's own absence are not mail software's words."""
    assert rule_of(message(subject=subject, text=text)) == "new_thread"


def test_a_forwarded_bounce_with_a_question_above_it_is_a_person() -> None:
    """'Fwd: Returned mail' with the person's question above the bounce gets an ack."""
    text = ("Hi, why does my mail to your billing address bounce?\n\n"
            "---------- Forwarded message ---------\n"
            "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.org>\n"
            "Subject: Returned mail: see transcript for details\n\n"
            "   ----- The following addresses had permanent fatal errors -----\n"
            "<billing@example.com>\n    (reason: 550 5.1.1 User unknown)\n")
    msg = message(subject="Fwd: Returned mail: see transcript for details", text=text)
    assert rule_of(msg) == "new_thread"


def test_a_forwarded_bounce_without_words_is_a_person() -> None:
    """A bare forward of a bounce is still the person's forward, not the bounce."""
    text = ("Begin forwarded message:\n\n> From: Mail Delivery Subsystem <MAILER-DAEMON>\n"
            "> Subject: Returned mail: see transcript for details\n> 550 5.1.1 User unknown\n")
    assert rule_of(message(subject="Fwd: Returned mail: see transcript for details",
                           text=text)) == "new_thread"


def test_a_reply_in_a_known_thread_that_quotes_a_bounce_is_a_person() -> None:
    """A customer's 'Re: Undeliverable' in their thread continues it."""
    msg = message(subject="Re: Undeliverable: Invoice 2291 [#K7QX2M]",
                  text="Still undeliverable mail, 550 5.1.1 user unknown - did you fix it?")
    assert rule_of(msg, thread="K7QX2M") == "follow_up"


def test_an_auto_reply_in_a_known_thread_is_still_a_robot() -> None:
    """An out-of-office answering our acknowledgement is not the customer writing."""
    msg = message(subject="Automatic reply: Re: Invoice 2291 [#K7QX2M]",
                  text="I am out of the office until Monday.")
    assert rule_of(msg, thread="K7QX2M") == "auto_reply"


def test_a_set_form_subject_in_a_known_thread_is_a_robot_without_other_words() -> None:
    """'Abwesenheitsnotiz: Re: ...' in the thread is Notes answering, whatever its text."""
    msg = message(subject="Abwesenheitsnotiz: Re: Rechnung 2291 [#K7QX2M]",
                  text="Vielen Dank für Ihre Nachricht. Ab dem 1.12. wieder erreichbar.")
    assert rule_of(msg, thread="K7QX2M") == "auto_reply"


@pytest.mark.parametrize("thread", [None, "K7QX2M"])
def test_a_set_form_subject_decides_whatever_the_text_asks(thread: str | None) -> None:
    """Outlook's out-of-office text often asks something ("Urgent? Call ..."); its subject
    still says software wrote it, in a thread or not."""
    msg = message(subject="Automatic reply: Invoice 2291",
                  text="I am away until Monday. Need help sooner? Call +49 30 1234.")
    assert rule_of(msg, thread=thread) == "auto_reply"


def test_a_person_announcing_their_absence_with_a_question_is_a_person() -> None:
    """'Out of office next week' with a question is a person planning ahead."""
    msg = message(subject="Out of office next week",
                  text="I'll be out of the office next week, could we move our call?")
    assert rule_of(msg) == "new_thread"


@pytest.mark.parametrize("subject", ["Auto: claim 2291 for my car", "Absence of invoice 22",
                                     "Office move next week", "Reply about my order",
                                     "Delivery report for March", "Returned mail-order item"])
def test_subjects_with_such_words_alone_are_people(subject: str) -> None:
    """A hint without anything beside it is a person's subject."""
    assert rule_of(message(subject=subject)) == "new_thread"


def test_a_customer_quoting_an_ndr_in_their_own_words_without_a_subject_hint() -> None:
    """Words about a bounce in the text alone, with nothing else, are a person's."""
    msg = message(subject="Cannot write to your billing address",
                  text="Hello, my message to billing could not be delivered: "
                       "550 5.1.1 user unknown. Please fix it.")
    assert rule_of(msg) == "new_thread"


# --- challenge-response requests -----------------------------------------------------


@pytest.mark.parametrize("text", [
    "I'm protecting myself from receiving junk mail. Please click the link below to complete "
    "the verification process.",
    "Your message is being held until you confirm it. Click here to be added to my approved "
    "senders list: https://verify.example.net/c/8f2",
    "Hello, to prove you are a human please follow this link: https://cr.example.net/x",
    "I apologize for this automatic reply to your email. To control spam, I now allow "
    "incoming messages only from senders I have approved beforehand. If you would like to be "
    "added to my list of approved senders, please fill out the short request form.",
    "I'm using a spam filter. To release your message for delivery, please reply to this "
    "confirmation request.",
])
def test_challenge_response_requests_are_robots(text: str) -> None:
    """Requests to prove being a person before delivery are software answering."""
    assert rule_of(message(subject="Re: Invoice 2291", text=text)) == "challenge"


def test_a_challenge_answering_our_acknowledgement_in_the_thread_is_a_robot() -> None:
    """A challenge sent back to our acknowledgement is not the customer writing."""
    text = "Please click the link below to be added to my allowed senders."
    assert rule_of(message(subject="Re: Invoice 2291 [#K7QX2M]", text=text),
                   thread="K7QX2M") == "challenge"


def test_a_person_saying_they_allowed_our_address_is_a_person() -> None:
    """'I added you to my approved senders list' is a person's sentence."""
    msg = message(text="I added you to my approved senders list, please send the invoice again.")
    assert rule_of(msg) == "new_thread"


# --- calendar replies ----------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "", "Your request was accepted.",
    "Anna Lima has accepted this invitation.\n\nQuarterly review\nWhen: Mon 9 Nov 2026 10:00\n"
    "Invitation from Google Calendar",
    "Ihre Anfrage wurde angenommen.",
])
def test_calendar_replies_without_words_of_a_person_are_robots(text: str) -> None:
    """A room mailbox's or a calendar's REPLY to an invitation is software answering."""
    msg = message(subject="Accepted: Quarterly review", text=text,
                  content_type="multipart/alternative",
                  parts=("text/plain", "text/html", "text/calendar"), calendar_method="reply")
    assert rule_of(msg) == "calendar_reply"


def test_a_counter_proposal_without_words_is_a_robot() -> None:
    """METHOD:COUNTER, a new time proposed with no text, is a calendar's answer."""
    msg = message(subject="New Time Proposed: Quarterly review", text="",
                  parts=("text/calendar",), calendar_method="counter")
    assert rule_of(msg) == "calendar_reply"


@pytest.mark.parametrize("method", ["reply", "request"])
def test_calendar_mail_with_a_persons_words_is_a_person(method: str) -> None:
    """An acceptance with a comment, or an invitation, is a person's mail."""
    msg = message(subject="Accepted: Quarterly review", calendar_method=method,
                  text="Accepted. I'll bring the signed contract and the figures for March.",
                  parts=("text/plain", "text/calendar"))
    assert rule_of(msg) == "new_thread"


# --- vendor fields ---------------------------------------------------------------------


@pytest.mark.parametrize("field", [
    ("x-autoreply", "yes"), ("x-autorespond", "Vacation"), ("x-autoreply-from", "a@b.example"),
    ("x-mail-autoreply", "1"), ("precedence", "auto_reply"), ("x-autogenerated", "Reply"),
    ("x-auto-response-suppress", "OOF"), ("x-auto-response-suppress", "DR, OOF, AutoReply"),
    ("x-auto-response-suppress", "AutoReply"), ("x-apple-action", "vacation"),
])
def test_vendor_auto_reply_fields(field: tuple[str, str]) -> None:
    """The fields autoresponders add mark an automatic reply."""
    assert rule_of(message(headers=(field,))) == "auto_reply"


def test_outlooks_suppress_all_on_a_persons_mail_is_a_person() -> None:
    """X-Auto-Response-Suppress: All says nothing about who wrote the mail."""
    assert rule_of(message(headers=(("x-auto-response-suppress", "All"),))) == "new_thread"


def test_suppress_all_is_no_evidence_beside_a_persons_absence_note() -> None:
    """A person's 'Out of office' note from Outlook, which writes Suppress: All on any
    mail, is still the person's."""
    msg = message(subject="Out of office", text="I am out of the office until Monday.",
                  headers=(("x-auto-response-suppress", "All"),))
    assert rule_of(msg) == "new_thread"


def test_the_new_rules_say_the_mail_is_automatic() -> None:
    """Bounces, challenges and calendar replies by content count as automatic mail."""
    assert {"bounce_text", "challenge", "calendar_reply"} <= AUTOMATIC_RULES


# --- how phrases are matched -------------------------------------------------------------


def test_phrases_are_reported_as_written_whatever_their_case() -> None:
    """Phrases match in any case and the reason quotes the mail's own words, also when a
    letter before them lowers to two ("İ" becomes "i̇")."""
    text = "İSTANBUL OFFICE. YOUR MESSAGE COULD NOT BE DELIVERED to p.lang@fabrikam.example"
    rule, detail = decide(message(subject="DELIVERY FAILURE", text=text))
    assert rule == "bounce_text"
    assert "text 'YOUR MESSAGE COULD NOT BE DELIVER'" in detail  # the pattern's words
    assert "subject 'DELIVERY FAILURE'" in detail


def test_phrase_patterns_are_written_in_lower_case() -> None:
    """The patterns match lower-cased text without re.IGNORECASE: an upper-case letter in
    one could never match."""
    patterns = [p for _, p in (*phrases._SET_SUBJECTS, *phrases._SUBJECT_HINTS,
                               *phrases._TEXT)]
    patterns += [phrases._ABSENCE, phrases._DIAGNOSTICS, phrases._QUOTE_START]
    for pattern in patterns:
        letters = re.sub(r"\\.", "", pattern.pattern)  # escapes such as \S are not letters
        assert letters == letters.lower(), pattern.pattern[:60]
