"""Hand-over decisions, quoting and shift-start times for digests (pure, literal times)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from mailbridge.core import briefing
from mailbridge.core.agents import Member
from mailbridge.core.calendar import Calendar
from mailbridge.core.model import Agent, DigestEntry

BERLIN_MORNINGS = Calendar(name="shift of Sam", timezone="Europe/Berlin",
                           hours={day: ((time(8), time(16)),) for day in range(5)},
                           always_open=False)
SAM = Member(Agent("Sam Okafor", "sam@example.com"), shift=BERLIN_MORNINGS)


def test_the_new_agent_is_told_unless_they_took_it_or_opted_out() -> None:
    """"assigned" by default; never for a thread one gave oneself; "new" only when asked."""
    assert briefing.wants_notice(SAM, cause=briefing.ASSIGNED, by="dana@example.com")
    assert not briefing.wants_notice(SAM, cause=briefing.ASSIGNED, by="SAM@example.com")
    assert not briefing.wants_notice(SAM, cause=briefing.NEW)
    both = Member(SAM.agent, notify=frozenset({"assigned", "new"}))
    assert briefing.wants_notice(both, cause=briefing.NEW)
    assert not briefing.wants_notice(Member(SAM.agent, notify=frozenset()),
                                     cause=briefing.ASSIGNED)
    assert not briefing.wants_notice(None, cause=briefing.ASSIGNED)


def test_a_quote_is_bounded_and_marks_the_cut() -> None:
    """Each line becomes "> " text, control characters go, and a cut is shown."""
    assert briefing.quote("Hello\n\nmy {{ card }}\x07 broke\n") == \
        "> Hello\n>\n> my {{ card }}  broke"
    long = briefing.quote("\n".join(f"line {n}" for n in range(50)), max_lines=3)
    assert long.splitlines() == ["> line 0", "> line 1", "> line 2", "> […]"]


def test_shift_starts_in_the_agents_zone_across_daylight_saving() -> None:
    """08:00 Berlin is 07:00 UTC in summer and 08:00 UTC after the clocks go back."""
    friday = datetime(2026, 10, 23, 12, 0, tzinfo=UTC)  # 14:00 CEST, on shift
    assert briefing.current_shift_start(SAM, friday) == datetime(2026, 10, 23, 6, 0, tzinfo=UTC)
    # The next start after Friday's is Monday 26 October, after the change (CET).
    assert briefing.next_shift_start(SAM, friday) == datetime(2026, 10, 26, 7, 0, tzinfo=UTC)
    assert briefing.current_shift_start(SAM, datetime(2026, 10, 24, 9, 0, tzinfo=UTC)) is None
    assert briefing.next_digest([SAM, Member(Agent("Al", "al@example.com"))], friday) == \
        datetime(2026, 10, 26, 7, 0, tzinfo=UTC), "an agent without a shift gets no digest"
    off = Member(SAM.agent, shift=BERLIN_MORNINGS, digest=False)
    assert briefing.next_shift_start(off, friday) is None


def test_a_digest_lists_threads_by_deadline_waiting_ones_last() -> None:
    """Earliest deadline first; threads with nothing due follow, by reference."""
    t = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    entries = [DigestEntry("B", "x", "", "awaiting_customer", None),
               DigestEntry("C", "x", "", "awaiting_agent", t.replace(hour=12)),
               DigestEntry("A", "x", "", "awaiting_agent", t)]
    assert [e.thread_ref for e in briefing.digest_order(entries)] == ["A", "C", "B"]


def test_a_digest_is_due_early_in_the_shift_only() -> None:
    """From the start (07:00 UTC on a November Monday) until `grace` later; not after, not
    off shift, and the start is the digest's, whenever it is sent."""
    start = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
    hour = timedelta(hours=1)
    assert briefing.due_digests([SAM], start, grace=hour) == [(SAM, start)]
    assert briefing.due_digests([SAM], start + hour, grace=hour) == [(SAM, start)]
    assert briefing.due_digests([SAM], start + 2 * hour, grace=hour) == []
    assert briefing.due_digests([SAM], start - timedelta(minutes=1), grace=hour) == []
    # After the clocks go forward (29 March 2026), 08:00 Berlin is 06:00 UTC.
    spring = datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
    assert briefing.next_digest([SAM], spring - hour) == spring
    assert briefing.due_digests([SAM], spring, grace=hour) == [(SAM, spring)]
