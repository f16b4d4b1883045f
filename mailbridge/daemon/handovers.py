"""Hand-over notices: the agent a thread is given to is told, in the same transaction.

Public API: `Handovers(config, renderer, team)` with `tell(tx, thread, *, why, by, now,
text=None) -> bool` and `wants(agent_email, *, why, by="") -> bool`.

A thread is given to an agent by `#assign` (`Deadlines.apply_command`), by a shift
hand-over (`Deadlines._hand_over`) or, for agents whose `[[agents]] notify` has "new", by
the assignment of a new thread (ingest). Whether they are told is `core.briefing`'s
decision; the notice quotes the customer's latest message (the excerpt the store keeps,
bounded), gives the pending deadline in the agent's own zone and says how to answer. It goes
out through `daemon.notices.queue_notice` like every staff notice: Reply-To the support
address, its Message-ID recorded, so a reply to it is a note on the thread.
"""

from __future__ import annotations

import logging
from datetime import datetime

from mailbridge.config import Config
from mailbridge.core import agents, briefing
from mailbridge.core.model import Agent, NoticeContext
from mailbridge.daemon.notices import StaffNotice, queue_notice
from mailbridge.daemon.team import Team
from mailbridge.logs import fields
from mailbridge.mail.headers import make_message_id
from mailbridge.mail.render import Renderer
from mailbridge.store.codec import load_clock
from mailbridge.store.tables import Thread
from mailbridge.store.tx import Tx

log = logging.getLogger(__name__)

_CAUSES = {"assigned": briefing.ASSIGNED, "shift": briefing.ASSIGNED, "new": briefing.NEW}


class Handovers:
    def __init__(self, config: Config, renderer: Renderer, team: Team) -> None:
        self.config = config
        self.renderer = renderer
        self.team = team

    def wants(self, agent_email: str, *, why: str, by: str = "") -> bool:
        """Whether the agent at `agent_email` is told of a thread given to them for `why`
        (by `by`, a name): a caller can skip loading a thread nobody is told about."""
        member = agents.find(self.team.members, agent_email)
        giver = next((m.email for m in self.team.members if m.agent.name == by), "")
        return briefing.wants_notice(member, cause=_CAUSES[why], by=giver)

    def tell(self, tx: Tx, thread: Thread, *, why: str, by: str, now: datetime,
             text: str | None = None) -> bool:
        """Queue a hand-over notice to the thread's (new) agent; True when one was queued.

        `why` is "assigned" (by `by`, an agent's or lead's name), "shift" (`by`, its former
        agent, is away) or "new"; `text` is the customer's text when the store does not hold
        it yet (a new thread). Nothing is sent when the thread awaits no answer from us.
        """
        member = agents.find(self.team.members, thread.agent_email)
        if member is None or not self.wants(member.email, why=why, by=by) or not thread.clock:
            return False
        response = load_clock(thread.clock).response_due
        if response is None:
            return False
        deadline, due = response
        support = self.config.support
        excerpt = tx.customer_excerpt(thread.id) if text is None else text
        context = NoticeContext(
            kind="handover", to_name=member.agent.name, to_address=member.agent.email,
            support_name=support.name, support_address=support.address, thread_ref=thread.id,
            subject=thread.subject, customer_address=thread.customer,
            agent=Agent(thread.agent_name, thread.agent_email), policy=thread.policy,
            priority=thread.priority, deadline=deadline, due=due, received=thread.created_at,
            timezone=member.shift.timezone, quote=briefing.quote(excerpt), why=why, by=by)
        message_id = make_message_id(support.domain)
        msg = self.renderer.render_notice(context, message_id=message_id, date=now, now=now)
        envelope = self.config.smtp.envelope_sender if self.config.smtp else ""
        number = tx.take_turn("handover")
        queue_notice(tx, StaffNotice(thread.id, f"handover-{number}", "scheduler",
                                     member.agent.email, message_id, msg.as_bytes()),
                     envelope_from=envelope, now=now)
        log.info("notice %s", fields(event="handover", thread=thread.id, why=why))
        return True
