"""Who gets an automatic acknowledgement, and why not when not.

Public API: `RulePolicy`, `RuleContext`, `evaluate(message, context) -> Verdict`,
`recipient(message, policy)`, `RULES`, `MESSAGE_RULES`, `CAP_RULES`.

A message gets an acknowledgement only when it starts a new thread from a
person. Each rule is a small named function that returns a reason sentence when
it forbids the acknowledgement, else None; `evaluate` runs them in order and
the first objection wins. The set follows RFC 3834 and Dovecot Pigeonhole's
vacation extension (RFC 5230), plus what real robots send without saying so:
their structure, senders and words are recognised in `mailbridge.core.robots`,
with the address patterns of `mailbridge.core.senders` and the multilingual
phrases of `mailbridge.core.phrases`. The robot rules come before `no_sender`, so
that a bounce whose From has no usable address is named a bounce.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from mailbridge.core import authres, phrases, robots
from mailbridge.core.model import Address, InboundMessage, Verdict

OUR_THREAD_HEADER = "x-mailbridge-thread"
MAX_HOPS = 100
"""More Received headers than this is a loop (RFC 5321 section 6.3)."""

LIST_HEADERS = ("list-id", "list-unsubscribe", "list-post", "list-help", "list-subscribe",
                "list-owner", "list-archive", "mailing-list", "x-mailing-list")
AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-autoreply-from",
                      "x-mail-autoreply", "x-ms-exchange-inbox-rules-loop")
"""Fields autoresponders add (vacation programs, cPanel/Exim, Zimbra, Exchange inbox rules)."""
_SUPPRESS_TOKENS = {"autoreply", "oof"}
"""X-Auto-Response-Suppress values (MS-OXCMAIL 2.1.3.2.20) that ask, as only automatic
senders do, to get no out-of-office or other automatic reply. "All" is left out: Outlook
writes it on people's mail too, so it tells nothing."""
_AUTO_PRECEDENCE = {"auto_reply", "auto-reply", "autoreply"}


@dataclass(frozen=True)
class RulePolicy:
    """The operator's choices for the rules (config `[rules]`)."""

    support_addresses: frozenset[str]
    """Every support address and alias, lower-case."""
    reply_to: str = "return-path"
    """"return-path": the envelope sender (RFC 3834 section 4); "reply-to": Reply-To or From."""
    require_addressed: bool = True
    robot_senders: tuple[str, ...] = ()
    """Extra fnmatch patterns for robot addresses or local parts, lower-case."""
    spam_header: str = "x-spam-flag"
    spam_value: str = "yes"
    dmarc_check: bool = False
    trusted_authserv_id: str = ""
    sender_cap: int = 3
    global_cap_per_minute: int = 120


@dataclass(frozen=True)
class RuleContext:
    """What the store knows about a message, gathered before the decision."""

    policy: RulePolicy
    thread: str | None = None
    """The existing thread this message belongs to, if any."""
    thread_link: str = ""
    """How it was linked to that thread, in a few words."""
    duplicate: bool = False
    """A message with the same Message-ID was already recorded."""
    own_message: bool = False
    """The Message-ID is one we generated: our own mail came back."""
    sender_acks: int = 0
    """Acknowledgements this sender got within the cap window."""
    acks_last_minute: int = 0
    unverified_staff: str = ""
    """From is an agent's or lead's address our mail server did not vouch for
    (`mailbridge.core.trust`): why not. "" for everyone else."""


Rule = Callable[[InboundMessage, RuleContext], str | None]


def _lower(value: str | None) -> str:
    return (value or "").strip().lower()


def recipient(message: InboundMessage, policy: RulePolicy) -> Address | None:
    """Who the acknowledgement goes to: exactly one address, or None."""
    author = message.author
    if policy.reply_to == "return-path":
        if not message.return_path:
            return None
        return Address(author.name if author else "", message.return_path)
    target = message.reply_to[0] if message.reply_to else author
    if target is None or "@" not in target.addr:
        return None
    name = target.name or (author.name if author else "")
    return Address(name, target.addr)


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
    if value is not None and _lower(value.split(";")[0]) != "no":
        return f"Auto-Submitted: {value.strip()[:60]} marks it automatic (RFC 3834 section 5)"
    return None


def loop(message: InboundMessage, context: RuleContext) -> str | None:
    ours = context.policy.support_addresses
    if message.header(OUR_THREAD_HEADER) is not None or context.own_message:
        return "it is our own message coming back (a loop)"
    senders = [a.addr for a in message.from_]
    if message.sender is not None:
        senders.append(message.sender.addr)
    if any(_lower(addr) in ours for addr in senders):
        return "it comes from a support address (a loop)"
    for value in message.header_all("x-loop"):
        if any(address in _lower(value) for address in ours):
            return "its X-Loop header names a support address (a loop)"
    target = recipient(message, context.policy)
    if target is not None and _lower(target.addr) in ours:
        return "the acknowledgement would go to a support address (a loop)"
    hops = len(message.header_all("received"))
    if hops > MAX_HOPS:
        return f"it passed {hops} mail servers: a mail loop (RFC 5321 section 6.3)"
    return None


def bounce(message: InboundMessage, context: RuleContext) -> str | None:
    report = robots.report_part(message)
    if report is not None:
        return f"it is a delivery, read or feedback report ({report})"
    if message.header("x-failed-recipients") is not None:
        return "it is a bounce (X-Failed-Recipients)"
    attached = robots.returned_original(message)
    found = robots.system_senders(message) if attached else []
    if found:
        field, address, kind = found[0]
        return f"it returns a message ({attached}) from {kind} ({field} {address})"
    return None


def mailing_list(message: InboundMessage, context: RuleContext) -> str | None:
    found = next((h for h in LIST_HEADERS if message.header(h) is not None), None)
    if found is not None:
        return f"it is list mail ({found.title()} header)"
    return None


def bulk(message: InboundMessage, context: RuleContext) -> str | None:
    for name in ("precedence", "x-precedence"):
        value = _lower(message.header(name))
        if value in ("bulk", "list", "junk"):
            return f"{name.title()}: {value} marks it bulk mail"
    return None


def auto_reply(message: InboundMessage, context: RuleContext) -> str | None:
    found = next((h for h in AUTO_REPLY_HEADERS if message.header(h) is not None), None)
    if found is not None:
        return f"it is an automatic reply ({found} header)"
    for name in ("precedence", "x-precedence"):
        if _lower(message.header(name)) in _AUTO_PRECEDENCE:
            return f"it is an automatic reply ({name.title()}: {_lower(message.header(name))})"
    suppress = _lower(message.header("x-auto-response-suppress"))
    asked = _SUPPRESS_TOKENS & {t.strip() for t in suppress.split(",")}
    if asked:
        return (f"X-Auto-Response-Suppress: {', '.join(sorted(asked))} asks for no automatic "
                "reply, as automatic senders do")
    checks = (("x-autogenerated", "reply"), ("x-fc-machinegenerated", "true"),
              ("x-apple-action", "vacation"),
              ("x-ms-exchange-generated-message-source", "mailbox rules agent"))
    for name, marker in checks:
        if marker in _lower(message.header(name)):
            return f"it is an automatic reply ({name} header)"
    return _worded(message, context, phrases.AUTO_REPLY)


def _worded(message: InboundMessage, context: RuleContext, *kinds: str) -> str | None:
    found = robots.wording(message, in_thread=context.thread is not None)
    return found.reason if found is not None and found.kind in kinds else None


def robot_sender(message: InboundMessage, context: RuleContext) -> str | None:
    found = robots.system_senders(message,
                                  answer_reply_to=context.policy.reply_to == "reply-to")
    if found:
        field, address, kind = found[0]
        return f"the sender is {kind} ({field} {address})"
    patterns = context.policy.robot_senders
    addresses = [("From", a.addr) for a in message.from_]
    if message.return_path:
        addresses.append(("Return-Path", message.return_path))
    for field, address in addresses:
        lowered = _lower(address)
        local = lowered.rpartition("@")[0]
        if any(fnmatch.fnmatchcase(lowered, p) or fnmatch.fnmatchcase(local, p)
               for p in patterns):
            return f"the sender is a configured robot address ({field} {address})"
    return None


def bounce_text(message: InboundMessage, context: RuleContext) -> str | None:
    return _worded(message, context, phrases.DELIVERY, phrases.COMPLAINT)


def challenge(message: InboundMessage, context: RuleContext) -> str | None:
    return _worded(message, context, phrases.CHALLENGE)


def calendar_reply(message: InboundMessage, context: RuleContext) -> str | None:
    return robots.calendar_reply(message)


def spam(message: InboundMessage, context: RuleContext) -> str | None:
    policy = context.policy
    if _lower(message.header(policy.spam_header)) == policy.spam_value:
        return f"the mail server flagged it as spam ({policy.spam_header})"
    return None


def dmarc_fail(message: InboundMessage, context: RuleContext) -> str | None:
    policy = context.policy
    if not policy.dmarc_check:
        return None
    for value in message.header_all("authentication-results"):
        found = authres.parse(value)
        if _lower(found.authserv_id) == _lower(policy.trusted_authserv_id) and any(
                r.method == "dmarc" and r.result == "fail" for r in found.results):
            return "DMARC failed at our mail server: the sender may be forged (backscatter)"
    return None


def null_return_path(message: InboundMessage, context: RuleContext) -> str | None:
    if message.return_path == "":
        return "the envelope sender is null (<>), as for bounces (RFC 3834 section 4)"
    if message.return_path is None and context.policy.reply_to == "return-path":
        return "there is no Return-Path to answer (RFC 3834 section 4)"
    return None


def unverified_agent(message: InboundMessage, context: RuleContext) -> str | None:
    if context.unverified_staff:
        return (f"From is a staff address, but not authenticated ({context.unverified_staff}): "
                "recorded only, no response, no command, no acknowledgement")
    return None


def not_addressed(message: InboundMessage, context: RuleContext) -> str | None:
    if not context.policy.require_addressed:
        return None
    ours = context.policy.support_addresses
    if any(_lower(a.addr) in ours for a in (*message.to, *message.cc)):
        return None
    return "no support address is in To or Cc (RFC 5230 section 4.5)"


def follow_up(message: InboundMessage, context: RuleContext) -> str | None:
    if context.thread is not None:
        how = f" ({context.thread_link})" if context.thread_link else ""
        return f"it continues thread {context.thread}{how}, which was already acknowledged"
    return None


def sender_cap(message: InboundMessage, context: RuleContext) -> str | None:
    cap = context.policy.sender_cap
    if context.sender_acks >= cap:
        return f"this sender already got {context.sender_acks} acknowledgements (cap {cap})"
    return None


def global_cap(message: InboundMessage, context: RuleContext) -> str | None:
    cap = context.policy.global_cap_per_minute
    if context.acks_last_minute >= cap:
        return f"{context.acks_last_minute} acknowledgements in the last minute (cap {cap})"
    return None


RULES: tuple[tuple[str, Rule], ...] = (
    ("duplicate", duplicate),
    ("auto_submitted", auto_submitted),
    ("loop", loop),
    ("bounce", bounce),
    ("list", mailing_list),
    ("bulk", bulk),
    ("auto_reply", auto_reply),
    ("robot_sender", robot_sender),
    ("bounce_text", bounce_text),
    ("challenge", challenge),
    ("calendar_reply", calendar_reply),
    ("no_sender", no_sender),
    ("unverified_agent", unverified_agent),
    ("spam", spam),
    ("dmarc_fail", dmarc_fail),
    ("null_return_path", null_return_path),
    ("not_addressed", not_addressed),
    ("follow_up", follow_up),
    ("sender_cap", sender_cap),
    ("global_cap", global_cap),
)
MESSAGE_RULES, CAP_RULES = RULES[:-2], RULES[-2:]
"""`RULES` without the caps, and the caps, which come last and read only the counts. A caller
that counts in the store runs `MESSAGE_RULES` first and, only when they pass, counts and runs
`CAP_RULES`: the same verdict as `RULES` on the full context, each rule run once."""
AUTOMATIC_RULES = frozenset({"auto_submitted", "loop", "bounce", "list", "bulk", "auto_reply",
                             "robot_sender", "bounce_text", "challenge", "calendar_reply",
                             "spam", "dmarc_fail", "null_return_path"})
"""Rules that say the message did not come from a person."""


def evaluate(message: InboundMessage, context: RuleContext,
             checks: tuple[tuple[str, Rule], ...] = RULES) -> Verdict:
    """Decide whether `message` gets an acknowledgement; the verdict names the rule.
    `checks` runs a part of `RULES` in its order (`MESSAGE_RULES`, `CAP_RULES`)."""
    for name, rule in checks:
        reason = rule(message, context)
        if reason is not None:
            return Verdict(reply=False, rule=name, detail=reason)
    return Verdict(reply=True, rule="new_thread", detail="a person started a new thread")
