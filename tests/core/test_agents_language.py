"""Language before load: a thread waits for a colleague who writes its language, when they
start before the first-response deadline; literal times, across a DST change too."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from mailbridge.core import agents
from mailbridge.core.agents import LastContact, Member
from mailbridge.core.calendar import ALWAYS_OPEN, Calendar
from mailbridge.core.model import Agent


def shift(start: time, end: time, *, days: range = range(5)) -> Calendar:
    return Calendar(name="shift", timezone="Europe/Berlin",
                    hours={day: ((start, end),) for day in days})


DANA = Member(Agent("Dana Whitfield", "dana@example.com"), shift(time(9), time(17)),
              languages=("en",))
UTE = Member(Agent("Ute Brandt", "ute@example.com"), shift(time(10, 10), time(18)),
             languages=("de",))
TEAM = (DANA, UTE)
MONDAY_10 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # 10:00 in Berlin (UTC+1)
H = timedelta(hours=1)


def assign(now: datetime, due: datetime | None, members: tuple[Member, ...] = TEAM, *,
           language: str = "de", counts: dict[str, int] | None = None,
           last: LastContact | None = None) -> agents.Assignment:
    return agents.assign(members, policy="default", language=language, now=now,
                         open_counts=counts or {}, turn=0, last=last, due=due)


def test_a_german_thread_waits_ten_minutes_for_the_german_speaker() -> None:
    """Only Dana (English) is on shift; Ute writes German and starts 10 minutes later."""
    chosen = assign(MONDAY_10, MONDAY_10 + 4 * H)
    assert (chosen.agent.name, chosen.rule) == ("Ute Brandt", "language")
    assert chosen.starts_at == MONDAY_10 + timedelta(minutes=10)
    assert chosen.reason == ("language before load: nobody on shift writes de; Ute Brandt "
                             "does, on shift today at 10:10 (Berlin time), before the answer "
                             "is due")


def test_a_speaker_starting_after_the_deadline_leaves_it_to_whoever_is_on_shift() -> None:
    """Ute starts at 10:10, the answer is due at 10:05: Dana, on shift, answers."""
    chosen = assign(MONDAY_10, MONDAY_10 + timedelta(minutes=5))
    assert (chosen.agent.name, chosen.rule) == ("Dana Whitfield", "least_loaded")
    assert chosen.starts_at is None
    assert chosen.reason == ("language before load: no (the first who writes de starts today "
                             "at 10:10 (Berlin time), after the answer is due); nobody here "
                             "writes de; least loaded on shift (0 open)")


def test_load_decides_when_someone_on_shift_writes_the_language() -> None:
    """An English thread, or a German one once Ute is on shift, goes by load as before."""
    assert assign(MONDAY_10, MONDAY_10 + 4 * H, language="en").reason \
        == "least loaded on shift (0 open)"
    later = MONDAY_10 + H
    chosen = assign(later, later + 4 * H, counts={"ute@example.com": 5})
    assert (chosen.agent.name, chosen.rule) == ("Ute Brandt", "least_loaded")


def test_without_a_deadline_nobody_is_waited_for() -> None:
    """Callers that give no deadline get the assignment by load."""
    assert assign(MONDAY_10, None).agent.name == "Dana Whitfield"


def test_language_comes_before_a_sticky_agent_who_does_not_write_it() -> None:
    """Dana helped this customer before, but the new thread is German."""
    last = LastContact("dana@example.com", MONDAY_10 - 24 * H)
    assert assign(MONDAY_10, MONDAY_10 + 4 * H, last=last).agent.name == "Ute Brandt"
    assert assign(MONDAY_10, MONDAY_10 + 4 * H, language="en", last=last).rule == "sticky"


def test_a_speaker_at_their_cap_is_not_waited_for() -> None:
    """Ute at her cap takes no new thread early; the first speaker with room would."""
    capped = (DANA, Member(UTE.agent, UTE.shift, languages=("de",), max_open=2))
    chosen = assign(MONDAY_10, MONDAY_10 + 4 * H, capped, counts={"ute@example.com": 2})
    assert chosen.agent.name == "Dana Whitfield"
    sepp = Member(Agent("Sepp Huber", "sepp@example.com"), shift(time(11), time(19)),
                  languages=("de-AT",))
    chosen = assign(MONDAY_10, MONDAY_10 + 4 * H, (*capped, sepp),
                    counts={"ute@example.com": 2})
    assert (chosen.agent.name, chosen.starts_at) == ("Sepp Huber", MONDAY_10 + H)


def test_across_the_spring_dst_change_the_start_is_counted_in_summer_time() -> None:
    """Sunday 29 March 2026: Ute starts at 08:00 CEST, 06:00 UTC (07:00 UTC in winter)."""
    dana = Member(DANA.agent, ALWAYS_OPEN, languages=("en",))
    ute = Member(UTE.agent, shift(time(8), time(16), days=range(7)), languages=("de",))
    now = datetime(2026, 3, 29, 5, 30, tzinfo=UTC)  # 07:30 CEST, an hour after the change
    chosen = assign(now, now + H, (dana, ute))
    assert (chosen.agent.name, chosen.starts_at) == (
        "Ute Brandt", datetime(2026, 3, 29, 6, 0, tzinfo=UTC))
    assert "on shift today at 08:00 (Berlin time)" in chosen.reason
    assert assign(now, now + timedelta(minutes=29), (dana, ute)).agent.name == "Dana Whitfield"


def test_across_the_autumn_dst_change_the_start_is_counted_in_winter_time() -> None:
    """Sunday 25 October 2026: 08:00 CET is 07:00 UTC, an hour later than the day before."""
    dana = Member(DANA.agent, ALWAYS_OPEN, languages=("en",))
    ute = Member(UTE.agent, shift(time(8), time(16), days=range(7)), languages=("de",))
    now = datetime(2026, 10, 25, 6, 30, tzinfo=UTC)  # 07:30 CET
    assert assign(now, now + timedelta(minutes=31), (dana, ute)).starts_at \
        == datetime(2026, 10, 25, 7, 0, tzinfo=UTC)
    assert assign(now, now + timedelta(minutes=30), (dana, ute)).agent.name == "Dana Whitfield"
