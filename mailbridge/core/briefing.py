"""What an agent is told about their threads: hand-over notices and the shift digest.

Pure: the roster, texts and `now` in, decisions out. Public API:

- `ASSIGNED`, `NEW`: the `[[agents]] notify` values.
- `wants_notice(member, *, cause, by="") -> bool`: whether `member` gets a hand-over notice
  for a thread given to them for `cause` (`ASSIGNED`: `#assign`, a lead, a shift hand-over;
  `NEW`: a new thread at its acknowledgement); never for a thread they took themselves.
- `quote(text, *, max_lines, max_chars) -> str`: a customer's text as "> " lines, bounded.
- `current_shift_start(member, now)`: the start of the shift `member` is on at `now`, when
  they get digests; `next_shift_start(member, now)`: their first shift start after `now`;
  `next_digest(members, now)`: the earliest of those across the team (the scheduler's wake);
  `due_digests(members, now, *, grace)`: the (member, shift start) digests due at `now`.
- `digest_order(entries)`: a digest's threads (`core.model.DigestEntry`) in its order.

A digest belongs to one shift start, so (agent, shift start) is what makes it unique. Shift
starts come from the agent's calendar in their own zone, so a shift at 08:00 starts at
08:00 local time on both sides of a daylight saving change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from mailbridge.core import calendar as cal
from mailbridge.core.agents import Member
from mailbridge.core.model import DigestEntry

ASSIGNED = "assigned"
NEW = "new"

_LOOK_BACK = timedelta(days=2)
"""How far back the start of the current shift is looked for."""
_LOOK_AHEAD = timedelta(days=8)
"""How far ahead the next shift start is looked for; the scheduler looks again hourly."""
_QUOTE_LINE = 200


def wants_notice(member: Member | None, *, cause: str, by: str = "") -> bool:
    """Whether `member` is told that a thread is now theirs; `by` is the address of whoever
    gave it to them ("" for the daemon itself)."""
    if member is None or not member.active:
        return False
    if by and by.lower() == member.email:
        return False
    return cause in member.notify


def quote(text: str, *, max_lines: int = 20, max_chars: int = 2000) -> str:
    """`text` as "> " lines (a blank line as ">"), at most `max_lines` lines and about
    `max_chars` characters, with "> […]" where it was cut. Control characters go."""
    lines = ["".join(c if c == "\t" or c >= " " else " " for c in raw).rstrip()
             for raw in text.strip().splitlines()]
    kept: list[str] = []
    used = 0
    for line in lines:
        if len(kept) >= max_lines or used >= max_chars:
            break
        cut = line[:_QUOTE_LINE]
        kept.append(f"> {cut}" if cut else ">")
        used += len(cut) + 1
    if len(kept) < len(lines):
        kept.append("> […]")
    return "\n".join(kept)


def _digest_shift(member: Member) -> bool:
    return member.active and member.digest and not member.shift.always_open


def current_shift_start(member: Member, now: datetime) -> datetime | None:
    """When the shift `member` is on at `now` started; None when they are off shift, have no
    shift table, or get no digest."""
    if not _digest_shift(member) or not member.on_shift(now):
        return None
    for start, end in cal.open_intervals(member.shift, now - _LOOK_BACK, now + _LOOK_AHEAD):
        if start <= now < end:
            return start
    return None


def next_shift_start(member: Member, now: datetime) -> datetime | None:
    """`member`'s first shift start after `now`; None as for `current_shift_start`, or when
    none comes within eight days."""
    if not _digest_shift(member):
        return None
    try:
        for start, _end in cal.open_intervals(member.shift, now, now + _LOOK_AHEAD):
            if start > now:
                return start
    except ValueError:  # a calendar the zone database cannot place
        return None
    return None


def next_digest(members: Iterable[Member], now: datetime) -> datetime | None:
    """The next moment any member's shift starts, for the scheduler to wake at."""
    starts = [s for m in members for s in [next_shift_start(m, now)] if s is not None]
    return min(starts, default=None)


def due_digests(members: Iterable[Member], now: datetime, *,
                grace: timedelta) -> list[tuple[Member, datetime]]:
    """The digests due at `now`: (member, shift start) for each member whose shift started
    at most `grace` ago, so a daemon that was down at the start still sends it, and one
    started long after does not."""
    due = []
    for member in members:
        start = current_shift_start(member, now)
        if start is not None and now - start <= grace:
            due.append((member, start))
    return due


def digest_order(lines: Sequence[DigestEntry]) -> list[DigestEntry]:
    """Threads by deadline, earliest first; those with none (awaiting the customer) last,
    by reference."""
    return sorted(lines, key=lambda line: (line.due is None,
                                           line.due.timestamp() if line.due else 0.0,
                                           line.thread_ref))
