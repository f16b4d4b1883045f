"""The answer time as the customer reads it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbridge.core.eta import describe_due, format_iso, zone_label

BERLIN = "Europe/Berlin"
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # a Monday; 10:00 in Berlin


def berlin(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(BERLIN))


@pytest.mark.parametrize(
    ("due", "expected"),
    [
        (berlin(2026, 11, 30, 14, 30), "today by 14:30 (Berlin time)"),
        (berlin(2026, 12, 1, 9, 0), "tomorrow by 09:00 (Berlin time)"),
        (berlin(2026, 12, 2, 10, 0), "Wednesday 2 December by 10:00 (Berlin time)"),
        (berlin(2026, 12, 7, 10, 0), "Monday 7 December by 10:00 (Berlin time)"),
        (berlin(2026, 12, 21, 8, 5), "Monday 21 December by 08:05 (Berlin time)"),
        (berlin(2027, 1, 4, 10, 0), "Monday 4 January 2027 by 10:00 (Berlin time)"),
    ],
)
def test_describe_due_in_words(due: datetime, expected: str) -> None:
    """Today and tomorrow by name, later days with weekday and date, a year only when new."""
    assert describe_due(due, timezone=BERLIN, now=NOW) == expected


def test_days_are_counted_in_the_customers_zone() -> None:
    """23:30 UTC is already tomorrow in Berlin, and still today in New York."""
    due = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    assert describe_due(due, timezone=BERLIN, now=NOW) == "tomorrow by 00:30 (Berlin time)"
    assert describe_due(due, timezone="America/New_York", now=NOW) == (
        "today by 18:30 (New York time)"
    )


def test_daylight_saving_change_is_respected() -> None:
    """Across the spring change the local clock time is the new one."""
    now = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    due = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST, after the 02:00 jump
    assert describe_due(due, timezone=BERLIN, now=now) == "tomorrow by 03:30 (Berlin time)"


@pytest.mark.parametrize(
    ("zone", "label"),
    [
        ("Europe/Berlin", "Berlin time"),
        ("America/New_York", "New York time"),
        ("America/Argentina/Buenos_Aires", "Buenos Aires time"),
        ("UTC", "UTC"),
        ("Etc/UTC", "UTC"),
        ("Etc/GMT+5", "UTC-05:00"),
        ("Asia/Kolkata", "Kolkata time"),
        ("EST5EDT", "UTC-05:00"),
    ],
)
def test_zone_label(zone: str, label: str) -> None:
    """City zones read as "<city> time"; zones without a city show their offset."""
    assert zone_label(zone, NOW) == label


def test_naive_datetimes_are_refused() -> None:
    """A naive due or now is a programming error, not a guess."""
    with pytest.raises(ValueError, match="timezone-aware"):
        describe_due(datetime(2026, 11, 30, 14, 0), timezone=BERLIN, now=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        describe_due(NOW, timezone=BERLIN, now=datetime(2026, 11, 30, 9, 0))


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "Europe", "../etc/passwd"])
def test_unknown_zone_is_refused(zone: str) -> None:
    """An unknown zone name raises ValueError naming it."""
    with pytest.raises(ValueError, match="unknown time zone"):
        describe_due(NOW, timezone=zone, now=NOW)


def test_format_iso() -> None:
    """ISO 8601 to the second, in UTC by default or in a given zone."""
    due = berlin(2026, 11, 30, 14, 30)
    assert format_iso(due) == "2026-11-30T13:30:00+00:00"
    assert format_iso(due, timezone=BERLIN) == "2026-11-30T14:30:00+01:00"


ZONES = st.sampled_from(
    ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham",
     "America/St_Johns", "UTC", "Etc/GMT-14", "Pacific/Pago_Pago"]
)  # fmt: skip
MOMENTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)
SHAPE = re.compile(
    r"(today|tomorrow|(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday) \d{1,2} "
    r"[A-Z][a-z]+( \d{4})?) by \d\d:\d\d \((.+ time|UTC([+-]\d\d:\d\d)?)\)"
)


@given(
    due=MOMENTS,
    ahead=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)),
    zone=ZONES,
)
def test_description_shape_and_day_words(due: datetime, ahead: timedelta, zone: str) -> None:
    """Always "<day> by HH:MM (<zone>)"; "today" exactly when the local dates match."""
    now = due - ahead
    text = describe_due(due, timezone=zone, now=now)
    assert SHAPE.fullmatch(text), text
    local_due, local_now = due.astimezone(ZoneInfo(zone)), now.astimezone(ZoneInfo(zone))
    assert text.startswith("today") == (local_due.date() == local_now.date())
    assert f"by {local_due:%H:%M}" in text
