"""An agent's own mail: a reply that stops the clock, mail commands, and relayed mail.

Public API: `StaffMail` (`record`), `Relayed`, `prepare_relayed`, `StaffResult`, `PRIORITIES`.

`Ingestor` hands every message from staff here (agents and leads, from any mailbox or the
relay), inside the message's one transaction. The decisions:

- a duplicate (the relay's own copy showing up again in a Sent folder) or an automatic reply
  changes nothing;
- a configured agent's mail from the relay or sent to the support address may start with
  mail commands (`mailbridge.core.commands`). If any is unknown or malformed, nothing
  happens: relayed mail raises `RefusedError` (the relay refuses it with the problems, and
  the transaction records nothing), other mail gets the agent a short notice saying so.
  Otherwise the commands are applied to the thread;
- a reply to one of our staff notices (`mailbridge.daemon.notices`) from an agent, or from
  a lead, is never an answer to the customer: its own text becomes a note on the thread and
  its commands are applied;
- a reply with text of its own is the agent's response (the clock stops at `received`); a
  command-only message is not, and the relay does not send it on;
- relayed mail that is to go out is queued in the outbox (mailbox "relay", one row per
  recipient), in the same transaction, before the relay answers 250.

Mail in a watched Sent folder is never read for commands: its commands already went out.
A Sent copy of mail to the desk alone (commands or a note sent from the shared account) is
no answer to the customer: its copy in the inbox decides, whichever is seen first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from mailbridge.config import Config
from mailbridge.core import commands, rules, threads
from mailbridge.core.model import Agent, InboundMessage, Verdict
from mailbridge.daemon.deadlines import Deadlines
from mailbridge.daemon.notices import StaffNotice, is_notice, queue_notice
from mailbridge.errors import RefusedError
from mailbridge.logs import fields
from mailbridge.mail.agent_mail import command_error_mail, prepare_outgoing
from mailbridge.mail.headers import make_message_id
from mailbridge.mail.parse import parse_message
from mailbridge.store.tables import KnownId, Message, OutboxItem
from mailbridge.store.tx import Tx

log = logging.getLogger(__name__)

PRIORITIES = ("low", "normal", "high", "urgent")
"""What `#priority` accepts, besides the priorities of the configured policies."""
RELAY_MAILBOX = "relay"
COMMANDS_MAILBOX = "commands"
FORWARDED_RULES = frozenset({"agent_reply", "agent_mail", "agent_auto_reply"})
"""The relayed mail that goes on upstream; the rest (duplicates, command-only mail and
mail with a wrong command) stays here."""


@dataclass(frozen=True)
class Relayed:
    """A message an agent submitted through the relay, as it is to go upstream."""

    agent: Agent
    envelope_from: str
    recipients: tuple[str, ...]
    data: bytes
    """The message without its command lines (`mail.agent_mail.prepare_outgoing`)."""


def prepare_relayed(raw: bytes, *, agent: Agent, envelope_from: str,
                    recipients: tuple[str, ...], support_addresses: frozenset[str],
                    domain: str, now: datetime,
                    reply_to: str | None = None) -> tuple[InboundMessage, Relayed] | None:
    """Read a relayed message and make its outgoing copy (with `reply_to` as Reply-To when
    it has none); None when its From header is not the agent's address or the support
    address. Raises PermanentError when a text part cannot be read to remove the
    commands."""
    message = parse_message(raw)
    allowed = {agent.email.lower(), *(a.lower() for a in support_addresses)}
    if not message.from_ or any(a.addr.lower() not in allowed for a in message.from_):
        return None
    outgoing = prepare_outgoing(raw, domain=domain, now=now, reply_to=reply_to)
    if outgoing.message_id != message.message_id:
        message = replace(message, message_id=outgoing.message_id)
    return message, Relayed(agent, envelope_from, recipients, outgoing.data)


@dataclass(frozen=True)
class StaffResult:
    verdict: Verdict
    thread_id: str | None
    queued: int = 0
    """How many outbox rows were queued: relayed copies (one per recipient), or the mail
    that tells the agent their commands were wrong."""


class StaffMail:
    def __init__(self, config: Config, deadlines: Deadlines, *, agents: tuple[Agent, ...],
                 staff_policy: rules.RulePolicy, sent_folders: frozenset[str]) -> None:
        self.config = config
        self.deadlines = deadlines
        self.agents = agents
        self.by_email = {a.email.lower(): a for a in agents}
        self.staff_policy = staff_policy
        self.sent_folders = sent_folders
        policies = deadlines.policies
        self.priorities = frozenset(PRIORITIES) | {
            p.priority.casefold() for p in (policies.default, *policies.policies)}

    def record(self, tx: Tx, message: InboundMessage, mailbox: str, source: str, *,
               received: datetime, now: datetime, thread_id: str | None, duplicate: bool,
               relayed: Relayed | None = None, uidvalidity: int | None = None,
               uid: int | None = None, account: str = "") -> StaffResult:
        """Decide and record one message from staff; queue what it causes."""
        author = message.author
        notice = thread_id is not None and not duplicate and _answers_notice(tx, message,
                                                                             thread_id)
        agent = self._commander(message, relayed, notice=notice)
        name = agent.name if agent else (author.name or author.addr if author else "")
        automatic = rules.evaluate(message, rules.RuleContext(policy=self.staff_policy))
        is_automatic = automatic.rule in rules.AUTOMATIC_RULES - {"loop", "null_return_path"}
        parsed = plan = None
        if agent is not None and not duplicate and not is_automatic \
                and mailbox not in self.sent_folders:
            parsed, plan = self._commands(message, thread_id)
        in_thread, queued = False, 0
        if duplicate:
            verdict = Verdict(False, "duplicate", f"Message-ID {message.message_id} was "
                                                  "already recorded")
        elif is_automatic:
            verdict = Verdict(False, "agent_auto_reply", "an agent's automatic reply is not "
                                                         f"a response ({automatic.detail})")
        elif mailbox in self.sent_folders and self._to_desk_only(message):
            # Commands or a note to the desk, sent from its own account: the customer got
            # nothing. Its copy in the inbox decides, even when this one is seen first.
            verdict = Verdict(False, "agent_mail", "the Sent copy of mail to the desk itself, "
                                                   "not to the customer: its copy in the inbox "
                                                   "counts")
        elif plan is not None and plan.errors:
            assert agent is not None
            if relayed is not None:  # the relay refuses it whole: the client keeps the draft
                raise RefusedError(plan.errors)
            verdict = Verdict(False, "agent_command_error",
                              f"commands not applied, {name} was told: " + "; ".join(plan.errors))
            self._report(tx, message, agent, plan.errors, thread_id=thread_id, now=now,
                         relayed=relayed is not None)
            in_thread, queued = thread_id is not None, 1
        elif thread_id is None:
            verdict = Verdict(False, "agent_mail", "from an agent, but in no known thread")
        elif notice:
            in_thread = True
            verdict = self._noted(tx, thread_id, message, parsed, plan, received=received,
                                  name=name)
        else:
            in_thread = True
            verdict = self._in_thread(tx, thread_id, parsed, plan, received=received, name=name)
        tx.insert(
            Message, source=source, account=account, mailbox=mailbox, uidvalidity=uidvalidity,
            uid=uid, message_id=message.message_id, sender=author.addr.lower() if author else "",
            subject=message.subject, received_at=received, recorded_at=now, size=message.size,
            thread_id=thread_id if in_thread else None, action="ignore", rule=verdict.rule,
            reason=verdict.detail, defects="\n".join(message.defects))
        if in_thread and thread_id and message.message_id:
            # Also for mail that is not sent on: its copy in a Sent folder is then a duplicate.
            tx.insert(KnownId, message_id=message.message_id, thread_id=thread_id,
                      direction="agent")
        if relayed is not None and verdict.rule in FORWARDED_RULES:
            queued = self._forward(tx, relayed, message_id=message.message_id or "",
                                   thread_id=thread_id, received=received, now=now)
        return StaffResult(verdict, thread_id, queued)

    def _to_desk_only(self, message: InboundMessage) -> bool:
        """Whether every recipient of `message` is a support address."""
        recipients = {a.addr.lower() for a in (*message.to, *message.cc)}
        return bool(recipients) and recipients <= set(self.config.support.addresses)

    def _commander(self, message: InboundMessage, relayed: Relayed | None, *,
                   notice: bool) -> Agent | None:
        """Who may give commands in `message`: the relay's agent, a configured agent, or a
        lead answering a notice (as an `Agent` of their name and address); else None.

        Only staff mail comes here, and ingest has decided who is staff (and, for the INBOX,
        that our mail server vouches for them): an author who is neither an agent nor the
        support address is a lead."""
        author = message.author
        if relayed is not None:
            return relayed.agent
        if author is None:
            return None
        addr = author.addr.lower()
        agent = self.by_email.get(addr)
        if agent is None and notice and addr not in self.config.support.addresses:
            return Agent(author.name or author.addr, addr)
        return agent

    def _noted(self, tx: Tx, thread_id: str, message: InboundMessage,
               parsed: commands.Parsed | None, plan: commands.Plan | None, *,
               received: datetime, name: str) -> Verdict:
        """A reply to one of our notices: its own text becomes a note on the thread and its
        commands apply; it never answers the customer, so the clock is left alone."""
        text = commands.own_text(parsed.rest if parsed else message.text)
        if text:
            tx.event(thread_id, received, "note",
                     f"{name}: {text[:commands.MAX_ARGUMENT]}")
        for action in plan.actions if plan else ():
            self.deadlines.apply_command(tx, thread_id, action, received, name)
        given = " ".join(f"#{c.name}" for c in parsed.commands) if parsed else ""
        return Verdict(False, "notice_reply",
                       f"{name} replied to a notice of thread {thread_id}: "
                       + ("a note" if text else "no text")
                       + (f"; commands {given}" if given else ""))

    def _commands(self, message: InboundMessage, thread_id: str | None,
                  ) -> tuple[commands.Parsed | None, commands.Plan | None]:
        """The command block of an agent's message and what it would do; (None, None)
        when the message starts with none."""
        parsed = commands.parse(message.text)
        if not parsed.found:
            return None, None
        return parsed, commands.plan(parsed, agents=self.agents, priorities=self.priorities,
                                     in_thread=thread_id is not None)

    def _in_thread(self, tx: Tx, thread_id: str, parsed: commands.Parsed | None,
                   plan: commands.Plan | None, *, received: datetime, name: str) -> Verdict:
        """A reply (text of its own) and its commands; or commands alone."""
        given = " ".join(f"#{c.name}" for c in parsed.commands) if parsed else ""
        if parsed is None or commands.has_own_text(parsed.rest):
            responded = self.deadlines.agent_replied(tx, thread_id, received, name)
            timing = ""
            if responded is not None:
                timing = (f"; {responded.kind.replace('_', ' ')} "
                          f"{'met' if responded.met else 'missed'} its deadline")
            if given:
                timing += f"; commands {given}"
            verdict = Verdict(False, "agent_reply", f"{name} answered thread {thread_id}{timing}")
        else:
            verdict = Verdict(False, "agent_command", f"{name} gave commands {given} for thread "
                                                      f"{thread_id}; no text, nothing sent")
        for action in plan.actions if plan else ():
            self.deadlines.apply_command(tx, thread_id, action, received, name)
        return verdict

    def _forward(self, tx: Tx, relayed: Relayed, *, message_id: str, thread_id: str | None,
                 received: datetime, now: datetime) -> int:
        """Queue the relayed message upstream: one outbox row per recipient."""
        number = tx.take_turn("relay")
        for index, recipient in enumerate(relayed.recipients):
            tx.insert(OutboxItem, thread_id=thread_id or "", kind=f"relay-{number}-{index}",
                      mailbox=RELAY_MAILBOX, message_id=message_id,
                      envelope_from=relayed.envelope_from, recipient=recipient,
                      body=relayed.data, state="pending", attempts=0, next_attempt_at=now,
                      created_at=now, arrived_at=received, sent_at=None, last_error="")
        return len(relayed.recipients)

    def _report(self, tx: Tx, message: InboundMessage, agent: Agent, errors: tuple[str, ...],
                *, thread_id: str | None, now: datetime, relayed: bool) -> None:
        """Queue the short mail that tells the agent what was wrong with their commands."""
        support = self.config.support
        message_id = make_message_id(support.domain)
        mail = command_error_mail(
            support_name=support.name, support_address=support.address, agent=agent,
            subject=message.subject, errors=errors, in_reply_to=message.message_id,
            relayed=relayed, message_id=message_id, date=now, language=support.language)
        envelope = self.config.smtp.envelope_sender if self.config.smtp else ""
        number = tx.take_turn("command_errors")
        queue_notice(tx, StaffNotice(thread_id or "", f"command-error-{number}",
                                     COMMANDS_MAILBOX, agent.email, message_id, mail.as_bytes()),
                     envelope_from=envelope, now=now)
        log.info("commands %s", fields(event="refused", thread=thread_id, errors=len(errors)))


def _answers_notice(tx: Tx, message: InboundMessage, thread_id: str) -> bool:
    """Whether `message` answers one of our notices about `thread_id` (In-Reply-To or
    References names it: `mailbridge.daemon.notices`)."""
    known = tx.known_ids(list(threads.linked_ids(message)))
    return any(thread == thread_id and is_notice(direction)
               for thread, direction in known.values())
