"""Which SLA policy a message gets: priority headers, each match kind, any/all, order."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from mailbridge.core.calendar import Calendar
from mailbridge.core.model import Address, InboundMessage
from mailbridge.core.policy import Match, Policy, choose_policy, match_reason, message_priority

ALWAYS = Calendar(name="24/7", timezone="UTC", hours={}, always_open=True)
DEFAULT = Policy(name="default", priority="normal", calendar=ALWAYS,
                 first_response=timedelta(hours=4))
ANA = Address("Ana", "ana@bigcustomer.example")


def message(*, from_: tuple[Address, ...] = (ANA,), subject: str = "Help",
            text: str = "Hello, it does not work.",
            to: tuple[Address, ...] = (Address("", "support@example.com"),),
            cc: tuple[Address, ...] = (),
            headers: tuple[tuple[str, str], ...] = ()) -> InboundMessage:
    return InboundMessage(
        message_id="<1@bigcustomer.example>", from_=from_, sender=None, reply_to=(), to=to,
        cc=cc, return_path=ANA.addr, subject=subject,
        date=datetime(2026, 11, 23, 9, tzinfo=UTC), in_reply_to=(), references=(),
        headers=headers, text=text)


def policy(name: str, **match: object) -> Policy:
    return Policy(name=name, priority="high", calendar=ALWAYS, first_response=timedelta(hours=1),
                  match=Match(**match))  # type: ignore[arg-type]


def reason(msg: InboundMessage, mailbox: str = "INBOX", **match: object) -> str | None:
    return match_reason(Match(**match), msg, mailbox)  # type: ignore[arg-type]


# -- priority headers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ((), "normal"),
        ((("x-priority", "1"),), "high"),
        ((("x-priority", "1 (Highest)"),), "high"),
        ((("x-priority", "2 (High)"),), "high"),
        ((("x-priority", "3 (Normal)"),), "normal"),
        ((("x-priority", "4 (Low)"),), "low"),
        ((("x-priority", " 5 (Lowest)"),), "low"),
        ((("x-priority", "urgent!!"),), "normal"),
        ((("x-priority", "10"),), "normal"),
        ((("importance", "High"),), "high"),
        ((("importance", "low"),), "low"),
        ((("importance", "normal"),), "normal"),
        ((("priority", "urgent"),), "high"),
        ((("priority", "non-urgent"),), "low"),
        ((("priority", "normal"),), "normal"),
        ((("x-msmail-priority", "High"),), "high"),
        ((("x-msmail-priority", "Low"),), "low"),
        ((("x-priority", "5"), ("importance", "high")), "low"),
        ((("x-priority", "junk"), ("importance", "high")), "high"),
        ((("importance", "whatever"), ("priority", "urgent")), "high"),
    ],
)
def test_message_priority(headers: tuple[tuple[str, str], ...], expected: str) -> None:
    """X-Priority, Importance, Priority and X-MSMail-Priority map to high, normal or low."""
    assert message_priority(message(headers=headers)) == expected


# -- each kind of match ---------------------------------------------------------------------------


def test_sender_patterns_ignore_case() -> None:
    """senders are shell patterns matched against the From address, ignoring case."""
    shouty = message(from_=(Address("Ana", "Ana@BigCustomer.Example"),))
    assert reason(shouty, senders=("*@bigcustomer.example",)) == (
        "sender matches *@bigcustomer.example")
    assert reason(message(), senders=("CEO@example.org", "ana@*")) == "sender matches ana@*"
    assert reason(message(), senders=("*@example.org",)) is None
    assert reason(message(from_=()), senders=("*",)) is None


def test_subject_regular_expressions() -> None:
    """subject entries are regular expressions searched in the subject."""
    outage = re.compile("(?i)outage")
    assert reason(message(subject="Total OUTAGE since 9:00"), subject=(outage,)) == (
        "subject matches (?i)outage")
    assert reason(message(subject="Outage"), subject=(re.compile("outage"),)) is None
    assert reason(message(text="outage"), subject=(outage,)) is None


def test_keywords_are_whole_words_in_subject_or_text() -> None:
    """keywords match whole words, ignoring case, in the subject or the first text part."""
    assert reason(message(subject="REFUND please"), keywords=("refund",)) == "keyword refund"
    assert reason(message(text="I want a Refund."), keywords=("refund",)) == "keyword refund"
    assert reason(message(text="refunded already"), keywords=("refund",)) is None
    assert reason(message(text="we had\nData   Loss"), keywords=("data loss",)) == (
        "keyword data loss")
    assert reason(message(text="the C++ SDK"), keywords=("C++",)) == "keyword C++"


def test_to_matches_to_and_cc() -> None:
    """to matches any To or Cc address, ignoring case."""
    vip = Address("", "VIP@example.com")
    assert reason(message(to=(vip,)), to=("vip@example.com",)) == "sent to vip@example.com"
    assert reason(message(cc=(vip,)), to=("vip@example.com",)) == "sent to vip@example.com"
    assert reason(message(), to=("vip@example.com",)) is None


def test_mailboxes() -> None:
    """mailboxes names the IMAP mailbox; only INBOX ignores case (RFC 3501)."""
    assert reason(message(), "VIP", mailboxes=("VIP",)) == "mailbox VIP"
    assert reason(message(), "vip", mailboxes=("VIP",)) is None
    assert reason(message(), "inbox", mailboxes=("INBOX",)) == "mailbox INBOX"


def test_priority_match() -> None:
    """priority compares with message_priority."""
    urgent = message(headers=(("importance", "high"),))
    assert reason(urgent, priority=("high",)) == "priority high"
    assert reason(message(), priority=("high",)) is None
    assert reason(message(), priority=("normal", "low")) == "priority normal"


def test_empty_match_selects_nothing() -> None:
    """A match without criteria never selects, with all or without."""
    assert reason(message()) is None
    assert reason(message(), all=True) is None


# -- any and all --------------------------------------------------------------------------------


def test_any_criterion_selects_by_default() -> None:
    """Without all, one matching criterion is enough, and the reason names it."""
    found = reason(message(subject="refund"), senders=("*@example.org",), keywords=("refund",))
    assert found == "keyword refund"


def test_all_needs_every_given_criterion() -> None:
    """With all, every given criterion must match; the reason names each."""
    criteria: dict[str, object] = {"senders": ("*@bigcustomer.example",),
                                   "keywords": ("refund",), "all": True}
    assert reason(message(subject="Refund"), **criteria) == (
        "sender matches *@bigcustomer.example and keyword refund")
    assert reason(message(subject="Invoice"), **criteria) is None


# -- choosing -----------------------------------------------------------------------------------


def test_first_matching_policy_wins() -> None:
    """Policies are tried in order; the first that selects the message is chosen."""
    vip = policy("vip", senders=("*@bigcustomer.example",))
    refunds = policy("refunds", keywords=("refund",))
    msg = message(subject="Refund")
    assert choose_policy(msg, "INBOX", [vip, refunds], DEFAULT) == (
        vip, "sender matches *@bigcustomer.example")
    assert choose_policy(msg, "INBOX", [refunds, vip], DEFAULT) == (refunds, "keyword refund")


def test_default_catches_the_rest() -> None:
    """A message no policy selects gets the default policy."""
    never = policy("never")
    other = policy("other", senders=("*@example.org",))
    assert choose_policy(message(), "INBOX", [never, other], DEFAULT) == (
        DEFAULT, "default policy")
    assert choose_policy(message(), "INBOX", [], DEFAULT) == (DEFAULT, "default policy")


def test_policy_rejects_impossible_targets() -> None:
    """A target of zero or an objective outside (0, 1) is a ValueError."""
    with pytest.raises(ValueError, match="longer than zero"):
        Policy(name="p", priority="normal", calendar=ALWAYS, first_response=timedelta(0))
    with pytest.raises(ValueError, match="objective"):
        Policy(name="p", priority="normal", calendar=ALWAYS,
               first_response=timedelta(hours=1), objective=1.0)
