"""Sample mail of every kind, for trying templates before any customer sees them.

`mailbridge check-config` hands these to `Renderer.check`, which turns them into template
values through the same code that renders real mail, so the sample values cannot drift from
what the daemon passes. Every optional part a template may show is set (a closed desk that
opens later, an agent whose shift starts after that, a help article, a signature, a photo,
the customer's own clock, a logo), so that the templates' conditional parts render too.

Public API: `Samples`, and `samples(now, *, support_name, support_address, timezone)`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from mailbridge.core.model import (
    AckContext,
    Address,
    Agent,
    DigestContext,
    DigestEntry,
    FaqLink,
    Image,
    InboundMessage,
    NoticeContext,
    UpdateContext,
)

_CUSTOMER = Address("Ana Souza", "ana.souza@example.org")
_SUBJECT = "Invoice 2291 charged twice"
_THREAD = "K7QX2M"
_PARENT = "<sample-2291@example.org>"
SAMPLE_PICTURE = Image(data=base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="),
    content_type="image/png", filename="sample.png")
"""A 1x1 PNG: the sample agent's photo and the sample logo."""


@dataclass(frozen=True)
class Samples:
    """One sample of each kind of mail we write, and the moment they are written."""

    ack: AckContext
    original: InboundMessage
    """The customer's message the sample acknowledgement answers."""
    update: UpdateContext
    escalation: NoticeContext
    nudge: NoticeContext
    handover: NoticeContext
    digest: DigestContext
    now: datetime
    logo: Image = field(default_factory=lambda: SAMPLE_PICTURE)
    """A logo for a desk that has none, so that a template's logo part renders too."""


def samples(now: datetime, *, support_name: str = "Example Support",
            support_address: str = "support@example.com", timezone: str = "UTC") -> Samples:
    """A sample of each kind of mail at `now` (timezone-aware), from the desk given."""
    agent = Agent(name="Dana Whitfield", email="dana@example.com", title="Customer Success",
                  signature="Dana Whitfield\nCustomer Success",
                  photo_url="https://example.com/people/dana.jpg", photo=SAMPLE_PICTURE)
    original = InboundMessage(
        message_id=_PARENT, from_=(_CUSTOMER,), sender=None, reply_to=(),
        to=(Address(support_name, support_address),), cc=(), return_path=_CUSTOMER.addr,
        subject=_SUBJECT, date=now, in_reply_to=(), references=(),
        text="Hello, my card was charged twice for invoice 2291. Can you refund one?",
    )  # fmt: skip
    ack = AckContext(
        support_name=support_name, support_address=support_address,
        customer_name=_CUSTOMER.name, customer_address=_CUSTOMER.addr, subject=_SUBJECT,
        thread_ref=_THREAD, agent=agent, due=now + timedelta(hours=4), timezone=timezone,
        received=now, customer_offset=timedelta(hours=-5), opens_at=now + timedelta(hours=1),
        agent_starts_at=now + timedelta(hours=2), queue_ahead=2,
        faq=(FaqLink("Refunds and double charges", "https://example.com/help/refunds"),),
    )  # fmt: skip
    update = UpdateContext(
        support_name=support_name, support_address=support_address,
        customer_name=_CUSTOMER.name, customer_address=_CUSTOMER.addr, subject=_SUBJECT,
        thread_ref=_THREAD, agent=agent, due=now + timedelta(days=1), timezone=timezone,
        received=now - timedelta(days=1), in_reply_to=_PARENT, references=(_PARENT,),
        customer_offset=timedelta(hours=-5), queue_ahead=1, opened=False,
    )  # fmt: skip
    escalation = NoticeContext(
        kind="escalation", to_name="Support Lead", to_address=support_address,
        support_name=support_name, support_address=support_address, thread_ref=_THREAD,
        subject=_SUBJECT, customer_address=_CUSTOMER.addr, agent=agent, policy="default",
        priority="normal", deadline="first_response", due=now - timedelta(minutes=30),
        received=now - timedelta(hours=5), timezone=timezone,
    )  # fmt: skip
    nudge = replace(escalation, kind="nudge", to_name=agent.name, to_address=agent.email,
                    due=now + timedelta(minutes=30))
    handover = replace(nudge, kind="handover", why="assigned", by="Sam Okafor",
                       quote="> " + original.text)
    digest = DigestContext(
        to_name=agent.name, to_address=agent.email, support_name=support_name,
        support_address=support_address, timezone=timezone, shift_start=now,
        entries=(DigestEntry(_THREAD, _CUSTOMER.name, _SUBJECT, "awaiting_agent",
                             now + timedelta(hours=1)),
                 DigestEntry("P3LW8D", _CUSTOMER.addr, "", "awaiting_customer", None)),
    )  # fmt: skip
    return Samples(ack, original, update, escalation, nudge, handover, digest, now)
