"""Which SLA policy a message gets, and why.

This module owns policy selection. It is pure: a message and the configured policies in, a
policy and a short reason out. Public API:

- `Match`, the criteria of one policy; `Policy`, an SLA's targets on a business calendar.
- `message_priority(message) -> "high" | "normal" | "low"`, from the sender's headers.
- `choose_policy(message, mailbox, policies, default) -> (policy, reason)`: the first policy
  whose match selects the message, else `default`.

The reasons name configured values (a sender pattern, a keyword), never the customer's
address or subject, so they can be logged at info.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache

from mailbridge.core.calendar import Calendar
from mailbridge.core.model import InboundMessage

PRIORITIES = ("high", "normal", "low")


@dataclass(frozen=True)
class Match:
    """What selects a message for a policy.

    `senders` are shell patterns against the From address; `subject` regular expressions
    searched in the subject; `keywords` whole words in the subject or the first text part;
    `to` addresses in To or Cc; `mailboxes` IMAP mailbox names; `priority` values of
    `message_priority`. All comparisons but `subject` ignore case. With `all` False any one
    given criterion selects; with `all` True every given one must. An empty Match selects
    nothing.
    """

    senders: tuple[str, ...] = ()
    subject: tuple[re.Pattern[str], ...] = ()
    keywords: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    mailboxes: tuple[str, ...] = ()
    priority: tuple[str, ...] = ()
    all: bool = False

    @property
    def empty(self) -> bool:
        criteria = (self.senders, self.subject, self.keywords, self.to, self.mailboxes,
                    self.priority)
        return not any(criteria)


@dataclass(frozen=True)
class Policy:
    """An SLA: response targets counted in `calendar`'s business time, and who hears of a breach.

    `first_response` is due after a new thread arrives; `next_response` after each new
    customer message once an agent has answered; `periodic_update` is the longest wait
    between our messages while we owe an answer; `resolution` bounds the whole thread.
    `objective` is the share of threads that should meet their targets (0 < x < 1).
    `language` is the language to write to its customers in, when their message does not say;
    None leaves it to the desk's default.
    """

    name: str
    priority: str
    calendar: Calendar
    first_response: timedelta
    next_response: timedelta | None = None
    periodic_update: timedelta | None = None
    resolution: timedelta | None = None
    objective: float = 0.95
    escalate_to: str | None = None
    match: Match = field(default_factory=Match)
    language: str | None = None
    """The language its customers are written to, when their message does not say."""

    def __post_init__(self) -> None:
        targets = (self.first_response, self.next_response, self.periodic_update,
                   self.resolution)
        if any(t is not None and t <= timedelta(0) for t in targets):
            raise ValueError(f"policy {self.name}: every target must be longer than zero")
        if not 0 < self.objective < 1:
            raise ValueError(f"policy {self.name}: objective must lie between 0 and 1, "
                             f"got {self.objective}")


# -- priority -----------------------------------------------------------------------------------

_WORDS = {
    "importance": {"high": "high", "low": "low", "normal": "normal"},
    "priority": {"urgent": "high", "non-urgent": "low", "normal": "normal"},
    "x-msmail-priority": {"high": "high", "highest": "high", "low": "low", "lowest": "low",
                          "normal": "normal"},
}
_LEADING_DIGIT = re.compile(r"\s*([1-5])\b")


def message_priority(message: InboundMessage) -> str:
    """The priority the sender gave: "high", "normal" or "low"; "normal" when none is given.

    Headers are read in this order and the first one understood decides: X-Priority (1-2
    high, 3 normal, 4-5 low; "1 (Highest)" forms too), Importance (RFC 2156: high, normal,
    low), Priority (RFC 2156: urgent, normal, non-urgent), X-MSMail-Priority (Outlook).
    """
    value = message.header("x-priority")
    if value is not None and (digit := _LEADING_DIGIT.match(value)):
        return ("high", "high", "normal", "low", "low")[int(digit[1]) - 1]
    for name, words in _WORDS.items():
        value = message.header(name)
        word = value.strip().lower() if value is not None else ""
        if word in words:
            return words[word]
    return "normal"


# -- choosing -------------------------------------------------------------------------------------


def choose_policy(
    message: InboundMessage, mailbox: str, policies: Sequence[Policy], default: Policy
) -> tuple[Policy, str]:
    """The first policy whose match selects `message` (received in `mailbox`), and why.

    The reason is short: "sender matches *@bigcustomer.example", or with `all`, the
    criteria joined by " and ". A message no policy selects gets `default` and the reason
    "default policy".
    """
    for policy in policies:
        reason = match_reason(policy.match, message, mailbox)
        if reason is not None:
            return policy, reason
    return default, "default policy"


def match_reason(match: Match, message: InboundMessage, mailbox: str) -> str | None:
    """Why `match` selects the message, or None when it does not."""
    if match.empty:
        return None
    reasons: list[str] = []
    for values, check in _criteria(match, message, mailbox):
        if not values:
            continue
        reason = check()
        if reason is None and match.all:
            return None
        if reason is not None and not match.all:
            return reason
        if reason is not None:
            reasons.append(reason)
    return " and ".join(reasons) if reasons else None


def _criteria(
    match: Match, message: InboundMessage, mailbox: str
) -> list[tuple[tuple[object, ...], Callable[[], str | None]]]:
    """Each criterion's configured values and a check that gives its reason (lazily)."""
    return [
        (match.senders, lambda: _senders(match.senders, message)),
        (match.to, lambda: _to(match.to, message)),
        (match.mailboxes, lambda: _mailboxes(match.mailboxes, mailbox)),
        (match.priority, lambda: _priority(match.priority, message)),
        (match.subject, lambda: _subject(match.subject, message)),
        (match.keywords, lambda: _keywords(match.keywords, message)),
    ]


def _senders(patterns: tuple[str, ...], message: InboundMessage) -> str | None:
    author = message.author
    address = author.addr.lower() if author is not None else ""
    if not address:
        return None
    for pattern in patterns:
        if fnmatch.fnmatchcase(address, pattern.lower()):
            return f"sender matches {pattern}"
    return None


def _to(addresses: tuple[str, ...], message: InboundMessage) -> str | None:
    recipients = {a.addr.lower() for a in (*message.to, *message.cc)}
    for address in addresses:
        if address.lower() in recipients:
            return f"sent to {address}"
    return None


def _mailboxes(names: tuple[str, ...], mailbox: str) -> str | None:
    for name in names:
        # RFC 3501 section 5.1: INBOX is case-insensitive, every other name is not.
        if name == mailbox or name.upper() == mailbox.upper() == "INBOX":
            return f"mailbox {name}"
    return None


def _priority(wanted: tuple[str, ...], message: InboundMessage) -> str | None:
    priority = message_priority(message)
    return f"priority {priority}" if priority in wanted else None


def _subject(patterns: tuple[re.Pattern[str], ...], message: InboundMessage) -> str | None:
    for pattern in patterns:
        if pattern.search(message.subject):
            return f"subject matches {pattern.pattern}"
    return None


def _keywords(keywords: tuple[str, ...], message: InboundMessage) -> str | None:
    for keyword in keywords:
        word = _word(keyword)
        if word.search(message.subject) or word.search(message.text):
            return f"keyword {keyword}"
    return None


@lru_cache(maxsize=1024)
def _word(keyword: str) -> re.Pattern[str]:
    # Lookarounds rather than \b, so a keyword that starts or ends with punctuation
    # ("C++", "#urgent") still matches as a whole word; a phrase may wrap across lines.
    phrase = r"\s+".join(re.escape(part) for part in keyword.split())
    return re.compile(rf"(?<!\w){phrase}(?!\w)", re.IGNORECASE)
