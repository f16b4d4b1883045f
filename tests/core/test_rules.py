"""The basic acknowledgement guard: one ack per new thread from a person."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbridge.core.model import Address, InboundMessage
from mailbridge.core.rules import RuleContext, evaluate

SUPPORT = frozenset({"support@example.com", "help@example.com"})


def message(*, from_: tuple[Address, ...] = (Address("Ana", "ana@example.org"),),
            headers: tuple[tuple[str, str], ...] = (), sender: Address | None = None,
            ) -> InboundMessage:
    return InboundMessage(
        message_id="<1@example.org>", from_=from_, sender=sender, reply_to=(), to=(), cc=(),
        return_path="ana@example.org", subject="Help", date=datetime(2026, 11, 2, tzinfo=UTC),
        in_reply_to=(), references=(), headers=headers)


def test_new_thread_from_a_person_is_acknowledged() -> None:
    """A first message from a person gets an acknowledgement."""
    verdict = evaluate(message(), RuleContext(SUPPORT))
    assert verdict.reply and verdict.rule == "new_thread"


@pytest.mark.parametrize("value", ["auto-replied", "auto-generated", "Auto-Replied; owner=x",
                                   "auto-notified"])
def test_auto_submitted_other_than_no_is_not_acknowledged(value: str) -> None:
    """Auto-Submitted with any value but "no" suppresses the ack (RFC 3834 section 5)."""
    verdict = evaluate(message(headers=(("auto-submitted", value),)), RuleContext(SUPPORT))
    assert not verdict.reply and verdict.rule == "auto_submitted"
    assert "RFC 3834" in verdict.detail


def test_auto_submitted_no_is_a_person() -> None:
    """Auto-Submitted: no is explicitly a person's message."""
    verdict = evaluate(message(headers=(("auto-submitted", " No "),)), RuleContext(SUPPORT))
    assert verdict.reply


@pytest.mark.parametrize("addr", ["support@example.com", "HELP@example.com"])
def test_mail_from_a_support_address_is_a_loop(addr: str) -> None:
    """Mail from our own addresses (in any case) never gets an ack."""
    verdict = evaluate(message(from_=(Address("", addr.lower()),)), RuleContext(SUPPORT))
    assert (verdict.reply, verdict.rule) == (False, "loop")


def test_sender_header_from_support_is_a_loop() -> None:
    """A Sender: of a support address marks our own mail, whatever the From says."""
    verdict = evaluate(message(sender=Address("", "support@example.com")), RuleContext(SUPPORT))
    assert verdict.rule == "loop"


def test_our_own_thread_header_is_a_loop() -> None:
    """Mail carrying our X-Mailbridge-Thread header came from us."""
    verdict = evaluate(message(headers=(("x-mailbridge-thread", "ABCDEF"),)),
                       RuleContext(SUPPORT))
    assert verdict.rule == "loop"


def test_follow_up_in_a_known_thread_is_not_acknowledged() -> None:
    """A second message in a known thread gets no second ack; the reason names the thread."""
    verdict = evaluate(message(), RuleContext(SUPPORT, thread="K7M2QD"))
    assert (verdict.reply, verdict.rule) == (False, "follow_up")
    assert "K7M2QD" in verdict.detail


def test_missing_from_is_explained() -> None:
    """A message without a From address is recorded as unanswerable, not acknowledged."""
    verdict = evaluate(message(from_=()), RuleContext(SUPPORT))
    assert (verdict.reply, verdict.rule) == (False, "no_sender")


def test_duplicate_message_id_is_not_acknowledged() -> None:
    """The same Message-ID delivered twice gets one ack."""
    verdict = evaluate(message(), RuleContext(SUPPORT, duplicate=True))
    assert verdict.rule == "duplicate"


@given(value=st.text(min_size=1).filter(lambda v: v.strip().split(";")[0].strip().lower()
                                        != "no"),
       thread=st.one_of(st.none(), st.just("ABCDEF")))
def test_automatic_mail_is_never_acknowledged(value: str, thread: str | None) -> None:
    """Whatever else it carries, a message marked automatic is never acknowledged."""
    verdict = evaluate(message(headers=(("auto-submitted", value),)),
                       RuleContext(SUPPORT, thread=thread))
    assert not verdict.reply
