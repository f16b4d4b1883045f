"""Business time: opening hours, closed days and holidays in one IANA time zone.

This module owns business-time arithmetic. It is pure: no I/O and no clock reads (`now` is
always a parameter). Every datetime it takes must be timezone-aware (ValueError otherwise);
every datetime it returns is aware UTC.

Opening hours are local wall-clock times in the calendar's zone, turned into instants day by
day with zoneinfo, so business time is real elapsed time: on the spring-forward day an
interval 01:00-04:00 in Europe/Berlin lasts 2 hours, on the fall-back day 4. A local time
that does not exist (in a spring-forward gap) moves forward to the first instant after the
gap; an ambiguous one (in a fall-back overlap) means its first occurrence (fold=0). A closed
day (an explicit date or a holiday of `holiday_country`/`holiday_subdivision`, as the
`holidays` package reports it, observed days included) has no opening time at all.

Public API:

- `Calendar`, a frozen description; `ALWAYS_OPEN`, a ready 24/7 UTC calendar.
- `parse_hours({"mon": ["09:00-17:00"], ...})` and `parse_closed(["2026-12-24", "a..b"])`,
  which read the configuration syntax and raise ValueError with a sentence.
- `is_holiday(cal, day)`, `is_open(cal, at)`, `next_open(cal, at)`.
- `add_business_time(cal, start, duration)`, `business_time_between(cal, start, end)`.
- `open_intervals(cal, start, end)`: the UTC opening intervals within [start, end).

An interval end of `time(0)` means 24:00, the midnight that ends the day: a start can never
be 24:00, and an end of 00:00 would be empty, so the reading is unambiguous.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Interval = tuple[time, time]
WeekHours = Mapping[int, tuple[Interval, ...]]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SEARCH_DAYS = 3 * 366
"""How far ahead `next_open` and `add_business_time` look before giving up."""
MAX_CLOSED_RANGE_DAYS = 366

_DAY = timedelta(days=1)
_ZERO = timedelta(0)
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class Calendar:
    """When a desk is open: weekly local hours, minus closed dates and public holidays.

    `hours` maps a weekday (0 = Monday .. 6 = Sunday) to sorted, non-overlapping local
    intervals; a missing or empty weekday is closed. `closed` holds explicit closed local
    dates. `always_open` makes every instant business time and ignores everything else.
    The constructor checks all of it and raises ValueError with a sentence.
    """

    name: str
    timezone: str
    hours: WeekHours = field(hash=False)
    closed: frozenset[date] = frozenset()
    holiday_country: str | None = None
    holiday_subdivision: str | None = None
    always_open: bool = False

    def __post_init__(self) -> None:
        _zone(self.timezone, self.name)
        problems = [
            f"{day!r} is not a weekday number 0 (Monday) to 6 (Sunday)"
            for day in self.hours
            if not (isinstance(day, int) and 0 <= day <= 6)
        ]
        problems += [
            f"weekday {day}: {problem}"
            for day, intervals in self.hours.items()
            for problem in _interval_problems(intervals)
        ]
        if problems:
            raise ValueError(f"calendar {self.name}: " + "; ".join(problems))
        # A private copy, so changing the caller's dict later cannot change a frozen calendar.
        object.__setattr__(
            self, "hours", MappingProxyType({d: tuple(iv) for d, iv in self.hours.items() if iv})
        )
        object.__setattr__(self, "closed", frozenset(self.closed))
        _check_holiday_region(self.name, self.holiday_country, self.holiday_subdivision)


# -- parsing the configuration syntax ---------------------------------------------------------


def parse_hours(spec: Mapping[str, Sequence[str]]) -> dict[int, tuple[Interval, ...]]:
    """Read {"mon": ["09:00-17:00"], "tue": ["09:00-12:00", "13:00-17:00"], "sat": []}.

    Keys are mon..sun (any case); a missing day is closed. Each interval is "HH:MM-HH:MM",
    with "24:00" allowed as an end ("00:00-24:00" is the whole day, returned as an end of
    `time(0)`). Intervals may be listed in any order; they come back sorted.
    """
    result: dict[int, tuple[Interval, ...]] = {}
    for key, texts in spec.items():
        name = key.strip().lower() if isinstance(key, str) else key
        if name not in DAY_NAMES:
            raise ValueError(f"{_show(key)} is not a day: use mon, tue, wed, thu, fri, sat or sun")
        day = DAY_NAMES.index(name)
        if day in result:
            raise ValueError(f"{name} is given twice")
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise ValueError(f'{name}: expected a list of intervals like ["09:00-17:00"]')
        intervals = tuple(sorted(_parse_interval(name, text) for text in texts))
        problems = _interval_problems(intervals)
        if problems:
            raise ValueError(f"{name}: {problems[0]}")
        result[day] = intervals
    return result


def _parse_interval(day: str, text: object) -> Interval:
    if not isinstance(text, str) or text.count("-") != 1:
        raise ValueError(f'{day}: expected an interval like "09:00-17:00", got {_show(text)}')
    start_text, end_text = (part.strip() for part in text.split("-"))
    start = _parse_time(day, start_text, text, end=False)
    end = _parse_time(day, end_text, text, end=True)
    if end != time(0) and end <= start:
        raise ValueError(f"{day}: {_show(text)} must end after it starts")
    return start, end


def _parse_time(day: str, text: str, interval: str, *, end: bool) -> time:
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{day}: {_show(text)} in {_show(interval)} is not a time like 09:30")
    hour, minute = int(match[1]), int(match[2])
    if (hour, minute) == (24, 0) and end:
        return time(0)  # 24:00, the end of the day
    if (hour, minute) == (24, 0):
        raise ValueError(f"{day}: {_show(interval)} cannot start at 24:00")
    if (hour, minute) == (0, 0) and end:
        raise ValueError(f'{day}: {_show(interval)} ends at 00:00; write "24:00" for midnight')
    if hour > 23 or minute > 59:
        raise ValueError(f"{day}: {_show(text)} in {_show(interval)} is not a time of day")
    return time(hour, minute)


def _interval_problems(intervals: Sequence[Interval]) -> list[str]:
    """Why these intervals cannot be one weekday's hours; empty when they can."""
    problems: list[str] = []
    previous_end = _ZERO
    for interval in intervals:
        if not (isinstance(interval, tuple) and len(interval) == 2):
            problems.append(f"{interval!r} is not a (start, end) pair of times")
            continue
        start, end = interval
        if not (isinstance(start, time) and isinstance(end, time)):
            problems.append(f"{interval!r} is not a (start, end) pair of times")
        elif start.tzinfo is not None or end.tzinfo is not None:
            problems.append(f"{_span(interval)} must be local wall-clock times, without tzinfo")
        elif _since_midnight(end, end=True) <= _since_midnight(start, end=False):
            problems.append(f"{_span(interval)} must end after it starts")
        elif _since_midnight(start, end=False) < previous_end:
            problems.append(f"{_span(interval)} overlaps or precedes the interval before it")
        else:
            previous_end = _since_midnight(end, end=True)
    return problems


def parse_closed(items: Sequence[str]) -> frozenset[date]:
    """Read ["2026-12-24", "2026-12-27..2026-12-31"] into every closed date (ranges inclusive).

    A range may span at most 366 days, so a typo in a year cannot close a decade.
    """
    if isinstance(items, str):
        raise ValueError('expected a list of dates like ["2026-12-24", "2026-12-27..2026-12-31"]')
    days: set[date] = set()
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f'expected a date like "2026-12-24", got {_show(item)}')
        first_text, dots, last_text = item.partition("..")
        first = _parse_date(first_text.strip(), item)
        last = _parse_date(last_text.strip(), item) if dots else first
        if last < first:
            raise ValueError(f"range {_show(item)} ends before it starts")
        count = (last - first).days + 1
        if count > MAX_CLOSED_RANGE_DAYS:
            raise ValueError(
                f"range {_show(item)} spans {count} days; split it into ranges of at most "
                f"{MAX_CLOSED_RANGE_DAYS} days"
            )
        days.update(first + timedelta(days=n) for n in range(count))
    return frozenset(days)


def _parse_date(text: str, item: str) -> date:
    if _DATE.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"{_show(text)} in {_show(item)} is not a date like 2026-12-24")


# -- queries ------------------------------------------------------------------------------------


def is_holiday(cal: Calendar, day: date) -> bool:
    """Whether `day` (a local date) is closed: an explicit date or a public holiday.

    This reports the dates even for an `always_open` calendar, which ignores them.
    """
    if day in cal.closed:
        return True
    if cal.holiday_country is None:
        return False
    return day in _holiday_dates(cal.holiday_country, cal.holiday_subdivision, day.year)


def is_open(cal: Calendar, at: datetime) -> bool:
    """Whether the instant `at` is business time."""
    _check_aware(at, "at")
    if cal.always_open:
        return True
    zone = _zone(cal.timezone, cal.name)
    at = at.astimezone(UTC)
    day = _local_date(at, zone)
    return any(s <= at < e for d in (day - _DAY, day) for s, e in _day_intervals(cal, zone, d))


def next_open(cal: Calendar, at: datetime) -> datetime:
    """`at` itself (in UTC) when open, else the start of the next opening interval.

    Raises ValueError when the calendar is never open, or has no opening time within
    SEARCH_DAYS days (every day closed).
    """
    _check_aware(at, "at")
    if cal.always_open:
        return at.astimezone(UTC)
    for start, _end in _intervals_after(cal, at):
        return max(start, at.astimezone(UTC))
    raise ValueError(
        f"calendar {cal.name} has no opening time within {SEARCH_DAYS} days after {at.isoformat()}"
    )


def add_business_time(cal: Calendar, start: datetime, duration: timedelta) -> datetime:
    """The instant at which `duration` of business time has elapsed after `start`, in UTC.

    A zero duration gives `next_open(cal, start)`. A deadline that uses up an opening
    interval exactly is that interval's end, not the start of the next one. Raises
    ValueError for a negative duration, a calendar that is never open, or a deadline that
    lies more than SEARCH_DAYS days ahead.
    """
    _check_aware(start, "start")
    if duration < _ZERO:
        raise ValueError(f"duration must not be negative, got {duration}")
    if cal.always_open:
        return start.astimezone(UTC) + duration
    if duration == _ZERO:
        return next_open(cal, start)
    remaining = duration
    for interval_start, interval_end in _intervals_after(cal, start):
        begin = max(interval_start, start.astimezone(UTC))
        if remaining <= interval_end - begin:
            return begin + remaining
        remaining -= interval_end - begin
    raise ValueError(
        f"calendar {cal.name}: {duration} of business time after {start.isoformat()} "
        f"is not reached within {SEARCH_DAYS} days"
    )


def business_time_between(cal: Calendar, start: datetime, end: datetime) -> timedelta:
    """How much business time lies in [start, end); zero when end <= start."""
    return sum((e - s for s, e in open_intervals(cal, start, end)), _ZERO)


def open_intervals(
    cal: Calendar, start: datetime, end: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """The opening time within [start, end) as sorted, disjoint UTC intervals.

    Intervals are clipped to [start, end), and intervals that touch (Sunday to 24:00, then
    Monday from 00:00) come back as one.
    """
    _check_aware(start, "start")
    _check_aware(end, "end")
    return _clipped_intervals(cal, start.astimezone(UTC), end.astimezone(UTC))


def _clipped_intervals(
    cal: Calendar, start: datetime, end: datetime
) -> Iterator[tuple[datetime, datetime]]:
    if end <= start:
        return
    if cal.always_open:
        yield start, end
        return
    zone = _zone(cal.timezone, cal.name)
    pending: tuple[datetime, datetime] | None = None
    day, last_day = _local_date(start, zone) - _DAY, _local_date(end, zone)
    while day <= last_day:
        for day_start, day_end in _day_intervals(cal, zone, day):
            s, e = max(day_start, start), min(day_end, end)
            if s >= e:
                continue
            if pending is not None and pending[1] == s:
                pending = (pending[0], e)
                continue
            if pending is not None:
                yield pending
            pending = (s, e)
        day += _DAY
    if pending is not None:
        yield pending


# -- the day-by-day walk ------------------------------------------------------------------------


def _intervals_after(cal: Calendar, at: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Opening intervals that end after `at`, in order, for up to SEARCH_DAYS days."""
    if not any(cal.hours.get(day) for day in range(7)):
        raise ValueError(f"calendar {cal.name} is never open: it has no hours on any weekday")
    zone = _zone(cal.timezone, cal.name)
    at = at.astimezone(UTC)
    # The day before too: in a zone that falls back across midnight, an instant on the
    # earlier local date can come after the start of the next date's first interval.
    first = _local_date(at, zone) - _DAY
    for n in range(SEARCH_DAYS + 2):
        for s, e in _day_intervals(cal, zone, first + timedelta(days=n)):
            if e > at:
                yield s, e


def _day_intervals(cal: Calendar, zone: ZoneInfo, day: date) -> list[tuple[datetime, datetime]]:
    """The UTC opening intervals of one local date; empty on a closed day."""
    intervals = cal.hours.get(day.weekday(), ())
    if not intervals or is_holiday(cal, day):
        return []
    result = []
    for start, end in intervals:
        s = _local_instant(day, start, zone)
        e = _local_instant(day + _DAY if end == time(0) else day, end, zone)
        if s < e:  # an interval inside a spring-forward gap has no real time
            result.append((s, e))
    return result


def _local_instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local time: fold=0 when ambiguous, the gap's end when missing."""
    naive = datetime.combine(day, wall)
    instant = naive.replace(tzinfo=zone).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == naive:
        return instant
    # `naive` falls in a gap. fold=0 and fold=1 read it with the offsets on either side of
    # the transition, which brackets the transition; zoneinfo has no public list of
    # transitions, so find it by bisection over whole seconds (tzdata's resolution).
    edges = sorted(naive.replace(tzinfo=zone, fold=f).astimezone(UTC) for f in (0, 1))
    low, high = int(edges[0].timestamp()), int(edges[1].timestamp())
    while low < high:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle + 1
    return datetime.fromtimestamp(low, UTC)


# -- small helpers ------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _holiday_dates(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    import holidays  # here: only a desk with public holidays needs it (20 ms to import)

    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year))


def _check_holiday_region(name: str, country: str | None, subdivision: str | None) -> None:
    if country is None:
        if subdivision is not None:
            raise ValueError(f"calendar {name}: holiday_subdivision needs a holiday_country")
        return
    import holidays  # here: only a desk with public holidays needs it (20 ms to import)

    try:
        holidays.country_holidays(country, subdiv=subdivision)
    except NotImplementedError as exc:
        where = country if subdivision is None else f"{country}/{subdivision}"
        raise ValueError(
            f"calendar {name}: the holidays package knows no public holidays for {where} ({exc})"
        ) from exc


def _zone(key: str, name: str) -> ZoneInfo:
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f'calendar {name}: {_show(key)} is not an IANA time zone like "Europe/Berlin"'
        ) from exc


def _check_aware(value: datetime, label: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{label} must be timezone-aware, got {value.isoformat()}")


def _local_date(at: datetime, zone: ZoneInfo) -> date:
    return at.astimezone(zone).date()


def _since_midnight(t: time, *, end: bool) -> timedelta:
    if end and t == time(0):
        return _DAY
    return timedelta(hours=t.hour, minutes=t.minute, seconds=t.second, microseconds=t.microsecond)


def _span(interval: Interval) -> str:
    start, end = interval
    return f"{_clock(start)}-{'24:00' if end == time(0) else _clock(end)}"


def _clock(t: time) -> str:
    return t.isoformat(timespec="minutes" if t == t.replace(second=0, microsecond=0) else "auto")


def _show(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else f"{text[:76]}…"


# Built last: the constructor's checks use the helpers above.
ALWAYS_OPEN = Calendar(name="always-open", timezone="UTC", hours={}, always_open=True)
