"""A thread's SLA clock to and from the JSON text stored with the thread.

Public API: `dump_clock(clock) -> str`, `load_clock(text) -> Clock`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from mailbridge.core.sla import Clock

_TIMES = ("waiting_since", "first_response_due", "first_response_at", "next_response_due",
          "resolution_due", "last_from_us", "last_agent_reply", "last_update")


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def dump_clock(clock: Clock) -> str:
    data: dict[str, Any] = {name: (getattr(clock, name).isoformat()
                                   if getattr(clock, name) else None) for name in _TIMES}
    data.update(state=clock.state, resolution_used=clock.resolution_used.total_seconds(),
                updates_sent=clock.updates_sent, breached=sorted(clock.breached),
                escalations_due=[[kind, when.isoformat()] for kind, when in
                                 clock.escalations_due])
    return json.dumps(data, sort_keys=True)


def load_clock(text: str) -> Clock:
    data = json.loads(text)
    return Clock(
        state=data["state"],
        **{name: _time(data.get(name)) for name in _TIMES},
        resolution_used=timedelta(seconds=data.get("resolution_used", 0)),
        updates_sent=int(data.get("updates_sent", 0)),
        breached=frozenset(data.get("breached", ())),
        escalations_due=tuple((kind, datetime.fromisoformat(when))
                              for kind, when in data.get("escalations_due", ())),
    )
