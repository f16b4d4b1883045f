"""Assignment with a fake clock: shifts, caps, sticky customers, days off, hand-overs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbridge.core import agents
from mailbridge.core.agents import LastContact, Member
from mailbridge.core.calendar import Calendar
from mailbridge.core.model import Agent

WEEKDAYS = range(5)


def shift(start: int, end: int, zone: str = "Europe/Berlin", *,
          days_off: frozenset[date] = frozenset()) -> Calendar:
    hours = {day: ((time(start), time(end)),) for day in WEEKDAYS}
    return Calendar(name="shift", timezone=zone, hours=hours, closed=days_off)


DANA = Member(Agent("Dana Whitfield", "dana@example.com"),
              shift(9, 17, days_off=frozenset({date(2026, 12, 1)})), languages=("en",))
SAM = Member(Agent("Sam Okafor", "Sam@Example.com"), shift(13, 21), languages=("en", "de"))
KAI = Member(Agent("Kai Lund", "kai@example.com"), shift(9, 17, "America/New_York"))
TEAM = (DANA, SAM, KAI)


def berlin(day: int, hour: int, minute: int = 0) -> datetime:
    """A time in Berlin (UTC+1 in winter), as aware UTC; day is in December 2026 or 30 Nov."""
    month, day = (11, day) if day == 30 else (12, day)
    return datetime(2026, month, day, hour - 1, minute, tzinfo=UTC)


MONDAY_10 = berlin(30, 10)   # only Dana on shift
MONDAY_14 = berlin(30, 14)   # Dana and Sam
MONDAY_16 = berlin(30, 16)   # Dana, Sam and Kai (10:00 in New York)


def assign(now: datetime, members: tuple[Member, ...] = TEAM, *, policy: str = "default",
           language: str = "en", counts: dict[str, int] | None = None, turn: int = 0,
           last: LastContact | None = None) -> agents.Assignment:
    return agents.assign(members, policy=policy, language=language, now=now,
                         open_counts=counts or {}, turn=turn, last=last)


# -- least loaded on shift ----------------------------------------------------------------


def test_the_only_agent_on_shift_gets_the_thread() -> None:
    """At 10:00 in Berlin only Dana works; Sam starts at 13:00 and Kai in New York later."""
    chosen = assign(MONDAY_10, counts={"dana@example.com": 7})
    assert (chosen.agent.name, chosen.rule) == ("Dana Whitfield", "least_loaded")
    assert chosen.reason == "least loaded on shift (7 open)"
    assert chosen.starts_at is None


def test_the_least_loaded_agent_on_shift_wins() -> None:
    """With Dana and Sam on shift, the one with fewer open threads gets it."""
    chosen = assign(MONDAY_14, counts={"dana@example.com": 3, "sam@example.com": 1})
    assert chosen.agent.name == "Sam Okafor"
    assert chosen.reason == "least loaded on shift (1 open)"


def test_ties_are_broken_round_robin() -> None:
    """Equal loads rotate with the store's turn counter, in roster order."""
    names = [assign(MONDAY_16, turn=turn).agent.name for turn in range(4)]
    assert names == ["Dana Whitfield", "Sam Okafor", "Kai Lund", "Dana Whitfield"]
    assert assign(MONDAY_16).reason == "least loaded on shift (0 open, round robin among 3)"


def test_a_shift_in_another_zone_counts_in_that_zone() -> None:
    """Kai works 09:00-17:00 New York time: 15:00-23:00 in Berlin."""
    late = berlin(30, 22)
    assert assign(late).agent.name == "Kai Lund"
    assert [m.agent.name for m in TEAM if m.on_shift(late)] == ["Kai Lund"]


# -- sticky customers ------------------------------------------------------------------------


def test_a_returning_customer_goes_back_to_their_agent() -> None:
    """Sam helped this customer before and is on shift: Sam again, though Dana is freer."""
    last = LastContact("SAM@example.com", datetime(2026, 11, 20, 10, tzinfo=UTC))
    chosen = assign(MONDAY_14, counts={"sam@example.com": 4}, last=last)
    assert (chosen.agent.name, chosen.rule) == ("Sam Okafor", "sticky")
    assert chosen.reason == "sticky: helped this customer on 2026-11-20"


def test_sticky_only_while_on_shift_and_under_cap() -> None:
    """Off shift or at the cap, the last agent is passed over for the least loaded."""
    last = LastContact("sam@example.com", datetime(2026, 11, 20, 10, tzinfo=UTC))
    assert assign(MONDAY_10, last=last).agent.name == "Dana Whitfield"  # Sam starts at 13:00
    capped = (DANA, replace(SAM, max_open=2), KAI)
    chosen = assign(MONDAY_14, capped, counts={"sam@example.com": 2, "dana@example.com": 5},
                    last=last)
    assert (chosen.agent.name, chosen.rule) == ("Dana Whitfield", "least_loaded")


def test_sticky_needs_the_agent_to_serve_the_policy() -> None:
    """A customer now under a policy their last agent does not serve gets someone who does."""
    team = (DANA, replace(SAM, policies=frozenset({"default"})), KAI)
    last = LastContact("sam@example.com", datetime(2026, 11, 20, tzinfo=UTC))
    assert assign(MONDAY_14, team, policy="vip", last=last).agent.name == "Dana Whitfield"


def test_a_former_agent_is_not_sticky() -> None:
    """The last agent is no longer configured: normal assignment."""
    last = LastContact("gone@example.com", datetime(2026, 11, 20, tzinfo=UTC))
    assert assign(MONDAY_10, last=last).rule == "least_loaded"


# -- nobody on shift: the next shift ------------------------------------------------------------


def test_at_the_weekend_the_next_shift_to_start_gets_it() -> None:
    """Saturday night: Dana starts first on Monday, and the assignment says when."""
    saturday = berlin(5, 23)
    chosen = assign(saturday)
    assert (chosen.agent.name, chosen.rule) == ("Dana Whitfield", "next_shift")
    assert chosen.starts_at == berlin(7, 9)
    assert chosen.reason == "next on shift: Monday 7 December at 09:00 (Berlin time)"


def test_a_day_off_is_not_a_shift() -> None:
    """Dana is off on Tuesday 1 December: at 10:00 the next one on shift is Sam, at 13:00."""
    chosen = assign(berlin(1, 10))
    assert (chosen.agent.name, chosen.starts_at) == ("Sam Okafor", berlin(1, 13))
    assert chosen.reason == "next on shift: today at 13:00 (Berlin time)"
    assert assign(berlin(2, 10)).agent.name == "Dana Whitfield"  # back on Wednesday


def test_an_inactive_agent_gets_nothing() -> None:
    """With Dana switched off, Monday 10:00 goes to the next one on shift."""
    team = (replace(DANA, active=False), SAM, KAI)
    chosen = assign(MONDAY_10, team)
    assert (chosen.agent.name, chosen.rule) == ("Sam Okafor", "next_shift")
    with pytest.raises(ValueError, match="no active agent"):
        assign(MONDAY_10, tuple(replace(m, active=False) for m in TEAM))


def test_next_shift_ties_go_to_speakers_then_load() -> None:
    """Two agents starting at once: the one who writes the customer's language."""
    twin = Member(Agent("Ute Brandt", "ute@example.com"), shift(9, 17), languages=("de",))
    team = (DANA, twin)
    saturday = berlin(5, 12)
    assert assign(saturday, team, language="de").agent.name == "Ute Brandt"
    assert assign(saturday, team, language="en").agent.name == "Dana Whitfield"
    counts = {"dana@example.com": 2}
    assert assign(saturday, team, language="fr", counts=counts).agent.name == "Ute Brandt"


# -- caps, policies, languages --------------------------------------------------------------


def test_a_full_agent_waits_for_a_colleague_with_room() -> None:
    """Dana is at her cap at 10:00: Sam, who starts at 13:00 with room, gets it."""
    team = (replace(DANA, max_open=3), SAM, KAI)
    chosen = assign(MONDAY_10, team, counts={"dana@example.com": 3})
    assert (chosen.agent.name, chosen.rule, chosen.starts_at) == (
        "Sam Okafor", "next_shift", berlin(30, 13))


def test_when_everyone_is_at_their_cap_the_least_loaded_on_shift_still_gets_it() -> None:
    """A thread always has a person: over the cap, on shift, least loaded."""
    team = tuple(replace(m, max_open=1) for m in TEAM)
    counts = {"dana@example.com": 5, "sam@example.com": 1, "kai@example.com": 1}
    chosen = assign(MONDAY_14, team, counts=counts)
    assert (chosen.agent.name, chosen.rule) == ("Sam Okafor", "over_cap")
    assert chosen.reason == "everyone is at their cap; least loaded on shift (1 open)"


def test_only_agents_serving_the_policy_are_chosen() -> None:
    """VIP mail goes to the agents who serve "vip", even when others are freer."""
    team = (replace(DANA, policies=frozenset({"vip", "default"})),
            replace(SAM, policies=frozenset({"default"})),
            replace(KAI, policies=frozenset({"default"})))
    chosen = assign(MONDAY_14, team, policy="vip", counts={"dana@example.com": 9})
    assert chosen.agent.name == "Dana Whitfield"
    nobody = assign(MONDAY_14, team, policy="press", counts={"dana@example.com": 9})
    assert nobody.agent.name == "Sam Okafor"
    assert nobody.reason.startswith("nobody serves policy press; least loaded on shift")


def test_speakers_of_the_customers_language_come_first() -> None:
    """A German message goes to Sam, who writes German, though Dana has fewer threads."""
    counts = {"sam@example.com": 2}
    assert assign(MONDAY_14, counts=counts, language="de").agent.name == "Sam Okafor"
    assert assign(MONDAY_14, counts=counts, language="de-AT").agent.name == "Sam Okafor"
    chosen = assign(MONDAY_10, language="de")
    assert chosen.agent.name == "Dana Whitfield"
    assert chosen.reason == "nobody here writes de; least loaded on shift (0 open)"


# -- hand-overs -------------------------------------------------------------------------------


def handover(now: datetime, due: datetime, current: str = "dana@example.com",
             members: tuple[Member, ...] = TEAM, **counts: int) -> agents.Handover | None:
    return agents.handover(members, current=current, due=due, policy="default", language="en",
                           now=now, open_counts={f"{k}@example.com": v for k, v in counts.items()},
                           turn=0)


def test_a_thread_due_after_the_shift_ends_moves_to_a_colleague_on_shift() -> None:
    """Dana leaves at 17:00; her thread due at 18:00 goes to the least loaded on shift."""
    moved = handover(berlin(30, 17), berlin(30, 18), sam=4, kai=1)
    assert moved is not None
    assert (moved.to.agent.name, moved.to.rule) == ("Kai Lund", "least_loaded")
    assert moved.why == ("Dana Whitfield is off shift until Wednesday 2 December at 09:00 "
                         "(Berlin time), after the answer is due")  # Tuesday is her day off
    assert moved.to.reason == "least loaded on shift (1 open)"


def test_a_thread_due_after_the_agent_is_back_stays() -> None:
    """Due on Thursday at 10:00, after Dana's 09:00 start: no hand-over."""
    assert handover(berlin(2, 17), berlin(3, 10)) is None
    assert handover(berlin(2, 17), berlin(3, 8, 59)) is not None
    assert handover(berlin(30, 16), berlin(30, 18)) is None  # still on shift


def test_inactive_or_removed_agents_hand_over_everything() -> None:
    """An inactive agent is never back; an address no longer configured neither."""
    inactive = (replace(DANA, active=False), SAM, KAI)
    moved = handover(MONDAY_14, berlin(5, 9), members=inactive)
    assert moved is not None and moved.to.agent.name == "Sam Okafor"
    assert moved.why == "Dana Whitfield is inactive"
    gone = handover(MONDAY_14, berlin(5, 9), current="lee@example.com")
    assert gone is not None and gone.why == "lee@example.com is no longer a configured agent"


def test_no_hand_over_when_nobody_is_on_shift() -> None:
    """Saturday: nobody can take it, so it stays."""
    assert handover(berlin(5, 12), berlin(5, 14)) is None


def test_hand_over_ignores_the_cap_rather_than_let_a_thread_lapse() -> None:
    """Everyone on shift is at their cap: the least loaded of them still takes it."""
    team = (DANA, replace(SAM, max_open=1), replace(KAI, max_open=1))
    moved = handover(berlin(30, 17), berlin(30, 18), members=team, sam=1, kai=3)
    assert moved is not None and (moved.to.agent.name, moved.to.rule) == ("Sam Okafor", "over_cap")


def next_check(now: datetime, due: datetime | None, current: str = "dana@example.com",
               members: tuple[Member, ...] = TEAM) -> datetime | None:
    return agents.next_check(members, current=current, due=due, policy="default", now=now)


def test_next_check_is_the_end_of_the_shift_before_the_deadline() -> None:
    """On shift: look again when the shift ends, if that is before the deadline."""
    assert next_check(MONDAY_10, berlin(30, 18)) == berlin(30, 17)
    assert next_check(MONDAY_10, berlin(30, 16)) is None
    assert next_check(MONDAY_10, None) is None
    always = (replace(DANA, shift=Calendar("24/7", "UTC", {}, always_open=True)),)
    assert next_check(MONDAY_10, berlin(9, 18), members=always) is None


def test_next_check_while_away_is_a_colleagues_start() -> None:
    """Away until after the deadline: now if a colleague works, else their first start."""
    assert next_check(berlin(30, 18), berlin(1, 12)) == berlin(30, 18)  # Sam is on
    saturday = berlin(5, 12)
    assert next_check(saturday, berlin(7, 12), current="sam@example.com") == berlin(7, 9)
    assert next_check(saturday, berlin(7, 8)) is None  # nobody before the deadline
    assert next_check(berlin(30, 7), berlin(30, 12)) == berlin(30, 9)  # Dana is back first


# -- properties ---------------------------------------------------------------------------------

MOMENTS = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31),
                       timezones=st.just(UTC))
COUNTS = st.fixed_dictionaries({m.email: st.integers(0, 5) for m in TEAM})


@given(now=MOMENTS, counts=COUNTS, turn=st.integers(0, 10), caps=st.lists(
    st.one_of(st.none(), st.integers(1, 4)), min_size=3, max_size=3))
def test_someone_free_on_shift_is_always_preferred(
        now: datetime, counts: dict[str, int], turn: int, caps: list[int | None]) -> None:
    """If an agent with room is on shift, the chosen one is on shift with room."""
    team = tuple(replace(m, max_open=cap) for m, cap in zip(TEAM, caps, strict=True))
    chosen = assign(now, team, counts=counts, turn=turn)
    member = agents.find(team, chosen.agent.email)
    assert member is not None
    if any(m.on_shift(now) and m.under_cap(counts) for m in team):
        assert member.on_shift(now) and member.under_cap(counts)
        assert chosen.starts_at is None
    if chosen.starts_at is not None:
        assert chosen.starts_at > now and member.next_start(now) == chosen.starts_at
