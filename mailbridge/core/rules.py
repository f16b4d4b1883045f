"""Who gets an automatic acknowledgement, and why not when not.

Public API: `RuleContext`, `evaluate(message, context) -> Verdict`, `RULES`.

Each rule is a small named function that returns a reason sentence when it
forbids an acknowledgement, else None. `evaluate` runs them in order; the first
objection wins. When no rule objects, the message starts a new thread from a
person and is acknowledged. The full RFC 3834 rule set grows here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailbridge.core.model import InboundMessage, Verdict

OUR_THREAD_HEADER = "x-mailbridge-thread"


@dataclass(frozen=True)
class RuleContext:
    """What the store knows about a message, gathered before the decision."""

    support_addresses: frozenset[str]
    """Every support address and alias, lower-case."""
    thread: str | None = None
    """The existing thread this message belongs to, if any."""
    duplicate: bool = False
    """A message with the same Message-ID was already recorded."""


Rule = Callable[[InboundMessage, RuleContext], str | None]


def no_sender(message: InboundMessage, context: RuleContext) -> str | None:
    if message.author is None or "@" not in message.author.addr:
        return "no usable From address, so there is nobody to answer"
    return None


def duplicate(message: InboundMessage, context: RuleContext) -> str | None:
    if context.duplicate:
        return f"Message-ID {message.message_id} was already recorded"
    return None


def auto_submitted(message: InboundMessage, context: RuleContext) -> str | None:
    value = message.header("auto-submitted")
    if value is not None and value.strip().split(";")[0].strip().lower() != "no":
        return f"Auto-Submitted: {value.strip()[:60]} marks it automatic (RFC 3834 section 5)"
    return None


def loop(message: InboundMessage, context: RuleContext) -> str | None:
    if message.header(OUR_THREAD_HEADER) is not None:
        return "it carries our own X-Mailbridge-Thread header (a loop)"
    senders = [a.addr.lower() for a in message.from_]
    if message.sender is not None:
        senders.append(message.sender.addr.lower())
    if any(addr in context.support_addresses for addr in senders):
        return "it comes from a support address (a loop)"
    return None


def follow_up(message: InboundMessage, context: RuleContext) -> str | None:
    if context.thread is not None:
        return f"it continues thread {context.thread}, which was already acknowledged"
    return None


RULES: tuple[tuple[str, Rule], ...] = (
    ("no_sender", no_sender),
    ("duplicate", duplicate),
    ("auto_submitted", auto_submitted),
    ("loop", loop),
    ("follow_up", follow_up),
)


def evaluate(message: InboundMessage, context: RuleContext) -> Verdict:
    """Decide whether `message` gets an acknowledgement; the verdict names the rule."""
    for name, rule in RULES:
        reason = rule(message, context)
        if reason is not None:
            return Verdict(reply=False, rule=name, detail=reason)
    return Verdict(reply=True, rule="new_thread", detail="a person started a new thread")
