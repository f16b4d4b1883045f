"""Plain, frozen data shared by the core, the mail layer and the adapters.

Public API: `Address`, `Report`, `InboundMessage`, `Image`, `Agent`, `Verdict`, `FaqLink`,
`AckContext`, `UpdateContext`, `NoticeContext`, `DigestEntry`, `DigestContext`.
Nothing here does I/O or reads a clock; every datetime is timezone-aware.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property


@dataclass(frozen=True)
class Address:
    """One mailbox from a header: the decoded display name and the addr-spec."""

    name: str
    addr: str

    @property
    def domain(self) -> str:
        return self.addr.rpartition("@")[2].lower()


@dataclass(frozen=True)
class Report:
    """What a delivery report or a returned message carries besides the text: the actions
    of its message/delivery-status part (RFC 3464 section 2.3.3: "failed", "delayed",
    "delivered", "relayed", "expanded") and the header of the message it returns (a
    message/rfc822 or text/rfc822-headers part; `returned` says whether there is one)."""

    actions: tuple[str, ...] = ()
    returned: bool = False
    message_id: str | None = None
    """The returned message's Message-ID."""
    references: tuple[str, ...] = ()
    """The returned message's In-Reply-To and References."""
    subject: str = ""
    """The returned message's Subject."""


@dataclass(frozen=True)
class InboundMessage:
    """What the core needs to know about one received message.

    Built by `mailbridge.mail.parse` from headers and the first text part only;
    attachments are never part of it. Parsing never fails: problems found on the
    way are listed in `defects` as sentences, and missing fields are empty.
    """

    message_id: str | None
    """The Message-ID with angle brackets, e.g. "<abc@example.com>"; None when absent."""
    from_: tuple[Address, ...]
    sender: Address | None
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    return_path: str | None
    """The Return-Path addr-spec; "" for the null path <>; None when the header is absent."""
    subject: str
    date: datetime | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    headers: tuple[tuple[str, str], ...] = ()
    """Every header as (lower-case name, decoded value), in order."""
    content_type: str = "text/plain"
    text: str = ""
    """The first text part, decoded to str and cut to a bounded length."""
    defects: tuple[str, ...] = ()
    size: int = 0
    parts: tuple[str, ...] = ()
    """The content types of the parts below the top level, lower-case, in order; the parts
    of an attached message (message/rfc822) are not opened."""
    calendar_method: str = ""
    """The iTIP method of the first text/calendar part, lower-case ("reply"); "" for none."""
    report: Report | None = None
    """A delivery-status part or a returned message in it; None when it has neither."""

    def header(self, name: str) -> str | None:
        """The first value of a header, or None."""
        return self._first_values.get(name.lower())

    @cached_property
    def _first_values(self) -> dict[str, str]:
        """Each header's first value by name, made once: the rules ask for about thirty
        headers of each message, each a scan of the whole list before."""
        first: dict[str, str] = {}
        for key, value in self.headers:
            first.setdefault(key, value)
        return first

    def header_all(self, name: str) -> tuple[str, ...]:
        wanted = name.lower()
        return tuple(value for key, value in self.headers if key == wanted)

    @property
    def author(self) -> Address | None:
        """The first From address, or None when there is none."""
        return self.from_[0] if self.from_ else None


@dataclass(frozen=True)
class Image:
    """A picture that travels inside our mail (an agent's photo, the desk's logo)."""

    data: bytes = field(repr=False)
    content_type: str
    """"image/jpeg" or "image/png"."""
    filename: str
    """The file's own name, without its folder."""


@dataclass(frozen=True)
class Agent:
    """A named person who answers customers, and how they sign."""

    name: str
    email: str
    title: str = ""
    """E.g. "Customer Success"; shown after the name when there is no signature."""
    signature: str = ""
    """Plain text, several lines; replaces name, title and desk under the closing."""
    photo_url: str = ""
    """An https URL of their photo, shown in the HTML part; "" for none."""
    photo: Image | None = None
    """Their photo, sent inside the mail; preferred to `photo_url`."""
    from_address: str = ""
    """A personal alias for the From of mail to customers; "" for the support address."""


@dataclass(frozen=True)
class Verdict:
    """Whether a message gets an acknowledgement, which rule decided, and why."""

    reply: bool
    rule: str
    detail: str


@dataclass(frozen=True)
class FaqLink:
    """An article the acknowledgement suggests while the customer waits."""

    title: str
    url: str
    """An https URL."""


@dataclass(frozen=True)
class AckContext:
    """Everything the acknowledgement templates may show, as plain data.

    Text that came from the customer's message (`customer_name`, `subject`) is
    data: templates print it, never evaluate it.
    """

    support_name: str
    support_address: str
    customer_name: str
    customer_address: str
    subject: str
    thread_ref: str
    agent: Agent
    due: datetime
    timezone: str
    received: datetime
    extra: dict[str, str] = field(default_factory=dict)
    customer_offset: timedelta | None = None
    """The customer's UTC offset, from their Date header; None when unknown."""
    opens_at: datetime | None = None
    """When the support desk next opens, if it is closed at the time of the ack."""
    language: str = "en"
    """The language to write in: a template folder such as "en" or "de"."""
    faq: tuple[FaqLink, ...] = ()
    """Up to three articles that may help while they wait."""
    agent_starts_at: datetime | None = None
    """When the assigned agent's shift starts, if nobody was on shift at the time of the ack."""
    queue_ahead: int | None = None
    """Open requests ahead of this one in its agent's queue (`core.standing`); None: unknown."""


@dataclass(frozen=True)
class UpdateContext:
    """A status update to a customer still waiting for an answer: same agent, revised time."""

    support_name: str
    support_address: str
    customer_name: str
    customer_address: str
    subject: str
    thread_ref: str
    agent: Agent
    due: datetime
    """The revised time by which they will hear from us."""
    timezone: str
    received: datetime
    """When their message (the one we still owe an answer to) arrived."""
    in_reply_to: str | None
    references: tuple[str, ...]
    customer_offset: timedelta | None = None
    language: str = "en"
    queue_ahead: int | None = None
    """Open requests ahead of this one in its agent's queue now; None: unknown."""
    opened: bool | None = None
    """Whether a person has opened it (\\Seen in the mailbox, or an agent's note); None:
    not known (the mailbox could not be asked), so nothing is said about it."""


@dataclass(frozen=True)
class NoticeContext:
    """An internal email to staff: a breach escalated to a lead, or a nudge to the agent."""

    kind: str
    """"escalation" (a deadline passed), "nudge" (a deadline is near) or "handover" (the
    thread is now `to_address`'s)."""
    to_name: str
    to_address: str
    support_name: str
    support_address: str
    thread_ref: str
    subject: str
    customer_address: str
    agent: Agent
    policy: str
    priority: str
    deadline: str
    """Which deadline: "first_response", "next_response", "periodic_update" or "resolution"."""
    due: datetime
    received: datetime
    timezone: str
    quote: str = ""
    """A hand-over: the customer's latest message as "> " lines (`core.briefing.quote`)."""
    why: str = ""
    """A hand-over: why the thread is now theirs: "assigned" (by `by`), "shift" (`by`'s
    shift ended) or "new" (a new thread)."""
    by: str = ""
    """A hand-over: who gave it to them, or whose thread it was."""


@dataclass(frozen=True)
class DigestEntry:
    """One open thread in an agent's shift digest."""

    thread_ref: str
    customer: str
    subject: str
    state: str
    due: datetime | None


@dataclass(frozen=True)
class DigestContext:
    """The digest an agent gets at the start of a shift: their open threads by deadline."""

    to_name: str
    to_address: str
    support_name: str
    support_address: str
    timezone: str
    """The agent's zone: every time in the digest is shown in it."""
    shift_start: datetime
    entries: tuple[DigestEntry, ...]


@dataclass(frozen=True)
class SlaOutcome:
    """A response, resolution or breach as the metrics count it, at the moment it is known.

    `evaluated` is True once per deadline (met, or breached); an answer after a breach the
    scheduler already counted only reports its `business_seconds`.
    """

    sla: str
    """"first_response", "next_response" or "resolution"."""
    policy: str
    priority: str
    evaluated: bool
    breached: bool
    business_seconds: float | None = None
