"""Who answers a thread: shifts, sticky customers, least-loaded assignment, hand-overs.

This module owns assignment. It is pure: the roster, the store's counts and `now` in, a
choice and the reason for it out. Public API:

- `Member`: an agent as assignment sees them (shift calendar, policies, languages, cap,
  active switch); `LastContact`: who last helped a customer, and when.
- `assign(members, *, policy, language, now, open_counts, turn, last=None, due=None)
  -> Assignment`:

  1. language before load: when no agent on shift writes the customer's language, an
     agent under their cap who writes it and whose shift starts before `due` (the first
     response deadline), the first to start (`Assignment.starts_at` says when);
  2. sticky: the agent who last helped this customer, when on shift and under their cap;
  3. else the on-shift agent serving the policy with the fewest open threads (speakers
     of the customer's language first), ties broken round robin by `turn`;
  4. when nobody is on shift, the agent whose next shift starts first
     (`Assignment.starts_at` says when, so the acknowledgement can say so).

  Caps are respected while anyone is under theirs; when everyone is at their cap the
  least loaded still gets the thread (a thread must have a person). An agent whose
  `policies` leave a policy without anyone serves it only when no active agent does.
- `handover(members, *, current, due, policy, language, now, open_counts, turn)`: the
  colleague a waiting thread moves to when its agent is off shift (or inactive, or gone)
  and will not be back before `due`; None when it stays.
- `next_check(members, *, current, due, policy, now)`: when to look at that again (the
  end of the agent's shift, or a colleague's start); None when nothing can change.

Reasons name agents and times, never the customer's address, so they can be logged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from mailbridge.core import calendar as cal
from mailbridge.core.eta import describe_time
from mailbridge.core.language import match
from mailbridge.core.model import Agent

_SHIFT_HORIZON = timedelta(days=8)
"""How far ahead the end of a shift is looked for; a longer one is checked again then."""


@dataclass(frozen=True)
class Member:
    """An agent with what assignment needs: when they work, what they serve, their cap."""

    agent: Agent
    shift: cal.Calendar = cal.ALWAYS_OPEN
    """Their weekly hours and days off, in their own zone; ALWAYS_OPEN: always on shift."""
    policies: frozenset[str] | None = None
    """The policies they serve; None: every policy."""
    languages: tuple[str, ...] = ()
    """The languages they write (normalized tags); (): not stated, so any."""
    max_open: int | None = None
    """At most this many open threads, for new assignments; None: no cap."""
    active: bool = True
    notify: frozenset[str] = frozenset({"assigned"})
    """When they get a hand-over notice (`core.briefing`): "assigned" (a thread given to
    them), "new" (every new thread assigned to them)."""
    digest: bool = True
    """Whether they get a digest of their open threads at the start of each shift."""

    @property
    def email(self) -> str:
        return self.agent.email.lower()

    def serves(self, policy: str) -> bool:
        return self.policies is None or policy in self.policies

    def speaks(self, language: str) -> bool:
        """Whether they write `language`; "de" and "de-at" count as the same language."""
        wanted = language.lower().split("-", maxsplit=1)[0]
        return not self.languages or match(language, self.languages) is not None or any(
            tag.split("-", maxsplit=1)[0] == wanted for tag in self.languages)

    def on_shift(self, at: datetime) -> bool:
        return self.active and cal.is_open(self.shift, at)

    def next_start(self, at: datetime) -> datetime | None:
        """When they are next on shift (`at` itself while on shift); None: never again."""
        if not self.active:
            return None
        try:
            return cal.next_open(self.shift, at)
        except ValueError:  # no hours at all, or days off as far as the calendar looks
            return None

    def shift_end(self, at: datetime) -> datetime | None:
        """When the shift they are on at `at` ends; None when off shift or always on."""
        if not self.on_shift(at) or self.shift.always_open:
            return None
        for _start, end in cal.open_intervals(self.shift, at, at + _SHIFT_HORIZON):
            return end
        return None

    def under_cap(self, open_counts: Mapping[str, int]) -> bool:
        return self.max_open is None or open_counts.get(self.email, 0) < self.max_open


@dataclass(frozen=True)
class LastContact:
    """The agent of a customer's latest thread, and when that thread started."""

    email: str
    at: datetime


@dataclass(frozen=True)
class Assignment:
    """Who gets a thread, by which rule, and why in words."""

    agent: Agent
    rule: str
    """"language", "sticky", "least_loaded", "next_shift" or "over_cap"."""
    reason: str
    starts_at: datetime | None = None
    """When the agent's shift starts, if they are not on shift at the time of choosing."""


@dataclass(frozen=True)
class Handover:
    """A waiting thread moves to `to.agent`, because its agent is away (`why`)."""

    to: Assignment
    why: str


def find(members: Iterable[Member], email: str) -> Member | None:
    """The member with this address (any case), or None."""
    wanted = email.lower()
    return next((m for m in members if m.email == wanted), None)


def assign(members: Sequence[Member], *, policy: str, language: str, now: datetime,
           open_counts: Mapping[str, int], turn: int,
           last: LastContact | None = None, due: datetime | None = None) -> Assignment:
    """The agent for a new thread of `policy` in `language`, chosen at `now`.

    `open_counts` are open threads per agent address (lower case); `turn` is the store's
    round-robin counter; `due` is the first-response deadline (None: no agent off shift
    is chosen for their language). Raises ValueError when no agent is active.
    """
    ask = _Ask(language, now, open_counts, turn)
    pool, note = _eligible(members, policy)
    speaker, note = _speaker_before(pool, ask, due, note=note)
    if speaker is not None:
        return speaker
    sticky = find(pool, last.email) if last is not None else None
    if last is not None and sticky is not None and sticky.on_shift(now) \
            and sticky.under_cap(open_counts):
        when = last.at.astimezone(ZoneInfo(sticky.shift.timezone))
        return Assignment(sticky.agent, "sticky",
                          note + f"sticky: helped this customer on {when:%Y-%m-%d}")
    on_shift = [m for m in pool if m.on_shift(now)]
    free = [m for m in on_shift if m.under_cap(open_counts)]
    if free:
        return _least_loaded(free, ask, note=note, label="least loaded on shift")
    later = [m for m in pool if not m.on_shift(now) and m.under_cap(open_counts)]
    upcoming = _next_shift(later, ask, note=note)
    if upcoming is not None:
        return upcoming
    capped = note + "everyone is at their cap; "
    if on_shift:
        return _least_loaded(on_shift, ask, note=capped, label="least loaded on shift",
                             rule="over_cap")
    upcoming = _next_shift(pool, ask, note=capped)
    if upcoming is not None:
        return upcoming
    return _least_loaded(pool, ask, note=note + "nobody has a shift ahead; ",
                         label="least loaded", rule="over_cap")


def handover(members: Sequence[Member], *, current: str, due: datetime, policy: str,
             language: str, now: datetime, open_counts: Mapping[str, int],
             turn: int) -> Handover | None:
    """Where a thread awaiting an answer by `due` goes when its agent `current` is away.

    None while the agent is on shift, when they are back by `due`, or when no colleague
    serving the policy is on shift to take it.
    """
    agent = find(members, current)
    away = _away(agent, current, due, now)
    if away is None:
        return None
    pool, note = _eligible(members, policy)
    others = [m for m in pool if m.email != current.lower() and m.on_shift(now)]
    if not others:
        return None
    ask = _Ask(language, now, open_counts, turn)
    free = [m for m in others if m.under_cap(open_counts)]
    if free:
        to = _least_loaded(free, ask, note=note, label="least loaded on shift")
    else:
        to = _least_loaded(others, ask, note=note + "everyone on shift is at their cap; ",
                           label="least loaded on shift", rule="over_cap")
    return Handover(to, away)


def next_check(members: Sequence[Member], *, current: str, due: datetime | None,
               policy: str, now: datetime) -> datetime | None:
    """When `handover` may decide differently for this thread; None when it cannot.

    While the agent is on shift: the end of their shift, if it comes before `due`. While
    they are away and not back by `due`: `now` if a colleague serving the policy is on
    shift, else the first colleague's start before the agent is back and before `due`.
    """
    if due is None or due <= now:
        return None
    agent = find(members, current)
    if agent is not None and agent.on_shift(now):
        end = agent.shift_end(now)
        return end if end is not None and end < due else None
    back = agent.next_start(now) if agent is not None else None
    if back is not None and back <= due:
        return back if back < due else None
    pool, _note = _eligible(members, policy)
    starts = [s for m in pool if m.email != current.lower()
              for s in [m.next_start(now)] if s is not None and s < due]
    return min(starts, default=None)


# -- the steps ----------------------------------------------------------------------------------


def _eligible(members: Sequence[Member], policy: str) -> tuple[list[Member], str]:
    """The active agents serving `policy`, else every active agent (with a note saying so)."""
    active = [m for m in members if m.active]
    if not active:
        raise ValueError("no active agent to assign")
    serving = [m for m in active if m.serves(policy)]
    if serving:
        return serving, ""
    return active, f"nobody serves policy {policy}; "


@dataclass(frozen=True)
class _Ask:
    """What one choice depends on besides the candidates."""

    language: str
    now: datetime
    open_counts: Mapping[str, int]
    turn: int


def _least_loaded(candidates: Sequence[Member], ask: _Ask, *, note: str, label: str,
                  rule: str = "least_loaded") -> Assignment:
    language, open_counts, turn = ask.language, ask.open_counts, ask.turn
    speakers = [m for m in candidates if m.speaks(language)]
    if not speakers:
        note += f"nobody here writes {language}; "
    pool = speakers or list(candidates)
    fewest = min(open_counts.get(m.email, 0) for m in pool)
    tied = [m for m in pool if open_counts.get(m.email, 0) == fewest]
    chosen = tied[turn % len(tied)]
    tie = f", round robin among {len(tied)}" if len(tied) > 1 else ""
    return Assignment(chosen.agent, rule, f"{note}{label} ({fewest} open{tie})")


def _next_shift(candidates: Sequence[Member], ask: _Ask, *, note: str) -> Assignment | None:
    language, now, open_counts, turn = ask.language, ask.now, ask.open_counts, ask.turn
    starts = {m.email: s for m in candidates for s in [m.next_start(now)] if s is not None}
    if not starts:
        return None
    first = min(starts.values())
    soonest = [m for m in candidates if starts.get(m.email) == first]
    speakers = [m for m in soonest if m.speaks(language)] or soonest
    fewest = min(open_counts.get(m.email, 0) for m in speakers)
    tied = [m for m in speakers if open_counts.get(m.email, 0) == fewest]
    chosen = tied[turn % len(tied)]
    when = describe_time(first, timezone=chosen.shift.timezone, now=now)
    return Assignment(chosen.agent, "next_shift", f"{note}next on shift: {when}",
                      starts_at=first)


def _speaker_before(candidates: Sequence[Member], ask: _Ask, due: datetime | None, *,
                    note: str) -> tuple[Assignment | None, str]:
    """Language before load: when nobody on shift writes the customer's language, the
    speaker under their cap whose shift starts first, if that is before `due`.

    Also the note the other rules continue with: why no speaker was chosen, when one would
    have been but starts too late.
    """
    language, now = ask.language, ask.now
    if due is None or any(m.on_shift(now) and m.speaks(language) for m in candidates):
        return None, note
    starts = {m.email: s for m in candidates
              if m.speaks(language) and m.under_cap(ask.open_counts)
              for s in [m.next_start(now)] if s is not None}
    if not starts:
        return None, note
    first = min(starts.values())
    soonest = [m for m in candidates if starts.get(m.email) == first]
    if first >= due:
        if not any(m.on_shift(now) for m in candidates):
            return None, note  # the next shift decides, as ever
        when = describe_time(first, timezone=soonest[0].shift.timezone, now=now)
        return None, note + f"language before load: no (the first who writes {language} " \
                            f"starts {when}, after the answer is due); "
    fewest = min(ask.open_counts.get(m.email, 0) for m in soonest)
    tied = [m for m in soonest if ask.open_counts.get(m.email, 0) == fewest]
    chosen = tied[ask.turn % len(tied)]
    when = describe_time(first, timezone=chosen.shift.timezone, now=now)
    return Assignment(chosen.agent, "language",
                      f"{note}language before load: nobody on shift writes {language}; "
                      f"{chosen.agent.name} does, on shift {when}, before the answer is due",
                      starts_at=first), note


def _away(agent: Member | None, email: str, due: datetime, now: datetime) -> str | None:
    """Why the thread's agent cannot answer it by `due`; None when they can."""
    if agent is None:
        return f"{email} is no longer a configured agent"
    name = agent.agent.name
    if not agent.active:
        return f"{name} is inactive"
    if agent.on_shift(now):
        return None
    back = agent.next_start(now)
    if back is not None and back <= due:
        return None
    if back is None:
        return f"{name} has no shift ahead"
    when = describe_time(back, timezone=agent.shift.timezone, now=now)
    return f"{name} is off shift until {when}, after the answer is due"
