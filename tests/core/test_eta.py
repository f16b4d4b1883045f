"""The answer time as the customer reads it."""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbridge.core.eta import (
    ENGLISH,
    customer_offset,
    describe_due,
    describe_opening,
    describe_promise,
    describe_time,
    format_iso,
    honest_due,
    phrases_for,
    zone_label,
)

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


# --- the honest due time ------------------------------------------------------------

RECEIVED = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
DEADLINE = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
HOURS = [h * 3600.0 for h in range(1, 11)]  # 1 h ... 10 h, ten samples


def wall(start: datetime, span: timedelta) -> datetime:
    return start + span


def weekdays_9_to_17(start: datetime, span: timedelta) -> datetime:
    """A tiny business calendar in UTC: Monday to Friday, 09:00-17:00."""
    moment, left = start, span
    while True:
        day_start = moment.replace(hour=9, minute=0, second=0, microsecond=0)
        day_end = moment.replace(hour=17, minute=0, second=0, microsecond=0)
        if moment.weekday() < 5 and moment < day_end:
            moment = max(moment, day_start)
            if moment + left <= day_end:
                return moment + left
            left -= day_end - moment
        moment = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def test_percentile_of_recent_answers_when_faster_than_the_deadline() -> None:
    """With ten samples of 1..10 h the 80th percentile (nearest rank) is 8 h."""
    due = honest_due(DEADLINE, received=RECEIVED, recent_seconds=HOURS, add_business=wall)
    assert due == RECEIVED + timedelta(hours=8)


@pytest.mark.parametrize(("percentile", "hours"), [(1, 1), (50, 3), (60, 3), (61, 4), (100, 5)])
def test_nearest_rank(percentile: int, hours: int) -> None:
    """Nearest rank: the smallest sample that at least `percentile`% of samples do not exceed."""
    samples = [5 * 3600.0, 1 * 3600.0, 4 * 3600.0, 2 * 3600.0, 3 * 3600.0]  # unsorted on purpose
    due = honest_due(
        DEADLINE, received=RECEIVED, recent_seconds=samples, percentile=percentile,
        min_samples=5, add_business=wall,
    )  # fmt: skip
    assert due == RECEIVED + timedelta(hours=hours)


def test_too_few_samples_keep_the_deadline() -> None:
    """Below `min_samples` the SLA deadline is the promise, however fast the few answers were."""
    due = honest_due(DEADLINE, received=RECEIVED, recent_seconds=HOURS[:9], add_business=wall)
    assert due == DEADLINE
    assert honest_due(DEADLINE, received=RECEIVED, recent_seconds=[], add_business=wall) == DEADLINE
    due = honest_due(
        DEADLINE, received=RECEIVED, recent_seconds=HOURS[:9], min_samples=9, add_business=wall
    )
    assert due == RECEIVED + timedelta(hours=8)


def test_unusable_samples_are_ignored_and_not_counted() -> None:
    """NaN, infinite and negative samples neither count toward `min_samples` nor move the time."""
    junk = [math.nan, math.inf, -60.0, -math.inf]
    due = honest_due(
        DEADLINE, received=RECEIVED, recent_seconds=[*HOURS[:9], *junk], add_business=wall
    )
    assert due == DEADLINE
    due = honest_due(DEADLINE, received=RECEIVED, recent_seconds=[*HOURS, *junk], add_business=wall)
    assert due == RECEIVED + timedelta(hours=8)


def test_never_later_than_the_deadline() -> None:
    """When recent answers were slower than the SLA, the deadline still caps the promise."""
    slow = [48 * 3600.0] * 10
    due = honest_due(DEADLINE, received=RECEIVED, recent_seconds=slow, add_business=wall)
    assert due == DEADLINE


def test_never_before_received() -> None:
    """Instant answers (or an odd calendar) never give a time before the message arrived."""
    zeros = [0.0] * 10
    assert honest_due(DEADLINE, received=RECEIVED, recent_seconds=zeros, add_business=wall) == (
        RECEIVED
    )
    backwards = honest_due(
        DEADLINE, received=RECEIVED, recent_seconds=HOURS,
        add_business=lambda start, span: start - span,
    )  # fmt: skip
    assert backwards == RECEIVED


def test_business_time_is_added_with_the_given_calendar() -> None:
    """The percentile is business time: 8 h from Friday 15:00 ends Monday 15:00."""
    friday = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)
    deadline = datetime(2026, 12, 8, 17, 0, tzinfo=UTC)
    due = honest_due(deadline, received=friday, recent_seconds=HOURS, add_business=weekdays_9_to_17)
    assert due == datetime(2026, 12, 7, 15, 0, tzinfo=UTC)


def test_honest_due_refuses_bad_input() -> None:
    """A deadline before receipt, a percentile outside 1-100 or a naive time raise ValueError."""
    with pytest.raises(ValueError, match="before"):
        honest_due(RECEIVED, received=DEADLINE, recent_seconds=HOURS, add_business=wall)
    for percentile in (0, 101):
        with pytest.raises(ValueError, match="percentile"):
            honest_due(
                DEADLINE, received=RECEIVED, recent_seconds=HOURS, percentile=percentile,
                add_business=wall,
            )  # fmt: skip
    with pytest.raises(ValueError, match="timezone-aware"):
        honest_due(
            DEADLINE.replace(tzinfo=None), received=RECEIVED, recent_seconds=HOURS,
            add_business=wall,
        )  # fmt: skip


@given(
    samples=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=30),
    percentile=st.integers(1, 100),
    min_samples=st.integers(0, 15),
    window=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
)
def test_honest_due_stays_between_receipt_and_deadline(
    samples: list[float], percentile: int, min_samples: int, window: timedelta
) -> None:
    """Whatever the samples, received <= promise <= deadline."""
    deadline = RECEIVED + window
    due = honest_due(
        deadline, received=RECEIVED, recent_seconds=samples, percentile=percentile,
        min_samples=min_samples, add_business=lambda start, span: start + min(span, window * 2),
    )  # fmt: skip
    assert RECEIVED <= due <= deadline


# --- the customer's clock -----------------------------------------------------------

NEW_YORK = timedelta(hours=-5)
KOLKATA = timedelta(hours=5, minutes=30)


@pytest.mark.parametrize(
    ("header", "offset"),
    [
        ("Mon, 30 Nov 2026 04:00:00 -0500", NEW_YORK),
        ("Mon, 30 Nov 2026 14:30:00 +0530", KOLKATA),
        ("Mon, 30 Nov 2026 10:00:00 +0100", timedelta(hours=1)),
        ("Mon, 30 Nov 2026 09:00:00 -0000", None),  # RFC 5322: local time unknown
        ("Mon, 30 Nov 2026 09:00:00 +0000", None),  # what zone-hiding clients send
        ("Mon, 30 Nov 2026 09:00:00 +2300", None),  # no place on Earth
        ("Mon, 30 Nov 2026 09:00:00 -1300", None),
    ],
)
def test_customer_offset_from_a_date_header(header: str, offset: timedelta | None) -> None:
    """The offset of the parsed Date header; None when unknown, zero or impossible."""
    assert customer_offset(parsedate_to_datetime(header)) == offset


def test_customer_offset_of_a_zoned_or_missing_date() -> None:
    """A zoneinfo datetime gives its offset; no Date header gives None."""
    assert customer_offset(datetime(2026, 11, 30, 14, 30, tzinfo=ZoneInfo("Asia/Kolkata"))) == (
        KOLKATA
    )
    assert customer_offset(None) is None
    assert customer_offset(datetime(2026, 11, 30, 9, 0)) is None


@pytest.mark.parametrize(
    ("due", "offset", "expected"),
    [
        (berlin(2026, 11, 30, 14, 30), NEW_YORK,
         "today by 14:30 (Berlin time), that is 08:30 your time"),
        (berlin(2026, 11, 30, 14, 30), KOLKATA,
         "today by 14:30 (Berlin time), that is 19:00 your time"),
        # Across a date boundary the customer's own day is named.
        (berlin(2026, 11, 30, 22, 0), KOLKATA,
         "today by 22:00 (Berlin time), that is tomorrow 02:30 your time"),
        (berlin(2026, 12, 1, 0, 30), NEW_YORK,
         "tomorrow by 00:30 (Berlin time), that is today 18:30 your time"),
        (berlin(2026, 12, 8, 0, 30), NEW_YORK,
         "Tuesday 8 December by 00:30 (Berlin time), that is Monday 7 December 18:30 your time"),
        (berlin(2026, 12, 2, 10, 0), KOLKATA,
         "Wednesday 2 December by 10:00 (Berlin time), that is 14:30 your time"),
        # Same offset as the desk, or none known: our clock alone.
        (berlin(2026, 11, 30, 14, 30), timedelta(hours=1), "today by 14:30 (Berlin time)"),
        (berlin(2026, 11, 30, 14, 30), None, "today by 14:30 (Berlin time)"),
    ],
)  # fmt: skip
def test_describe_promise(due: datetime, offset: timedelta | None, expected: str) -> None:
    """Our clock, then the customer's if the offset differs; their day if it reads differently."""
    assert describe_promise(due, timezone=BERLIN, customer_offset=offset, now=NOW) == expected


def test_promise_omits_a_day_that_reads_the_same_for_both() -> None:
    """Both sides call it "today" (on different dates), so the customer's day is not repeated."""
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # 13:00 in Berlin, 01:00 on 1 Dec at +13
    due = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    text = describe_promise(due, timezone=BERLIN, customer_offset=timedelta(hours=13), now=now)
    assert text == "today by 16:00 (Berlin time), that is 04:00 your time"


def test_promise_compares_offsets_at_the_due_time() -> None:
    """In summer Berlin is +02:00: a +02:00 customer needs no second clock, a +01:00 one does."""
    now = datetime(2026, 7, 6, 8, 0, tzinfo=UTC)
    due = berlin(2026, 7, 6, 14, 30)
    assert describe_promise(due, timezone=BERLIN, customer_offset=timedelta(hours=2), now=now) == (
        "today by 14:30 (Berlin time)"
    )
    assert describe_promise(due, timezone=BERLIN, customer_offset=timedelta(hours=1), now=now) == (
        "today by 14:30 (Berlin time), that is 13:30 your time"
    )


# --- when the desk opens ------------------------------------------------------------


@pytest.mark.parametrize(
    ("opens", "expected"),
    [
        (berlin(2026, 11, 30, 13, 0), "today at 13:00 (Berlin time)"),
        (berlin(2026, 12, 1, 9, 0), "tomorrow at 09:00 (Berlin time)"),
        (berlin(2026, 12, 7, 9, 0), "Monday 7 December at 09:00 (Berlin time)"),
    ],
)
def test_describe_opening(opens: datetime, expected: str) -> None:
    """The closed-desk sentence names the opening day and time in the desk's zone."""
    assert describe_time(opens, timezone=BERLIN, now=NOW) == expected
    assert describe_opening(opens, timezone=BERLIN, now=NOW) == (
        f"We are closed right now and open again {expected}."
    )


def test_opening_after_a_weekend() -> None:
    """On a Saturday evening the desk opens again on Monday, with the date spelled out."""
    saturday = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)
    assert describe_opening(berlin(2026, 11, 30, 9, 0), timezone=BERLIN, now=saturday) == (
        "We are closed right now and open again Monday 30 November at 09:00 (Berlin time)."
    )


# --- other languages ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("due", "expected"),
    [
        (berlin(2026, 11, 30, 14, 30), "heute bis 14:30 Uhr (Berliner Zeit)"),
        (berlin(2026, 12, 1, 9, 0), "morgen bis 09:00 Uhr (Berliner Zeit)"),
        (berlin(2026, 12, 2, 10, 0), "Mittwoch, 2. Dezember, bis 10:00 Uhr (Berliner Zeit)"),
        (berlin(2027, 1, 4, 10, 0), "Montag, 4. Januar 2027, bis 10:00 Uhr (Berliner Zeit)"),
    ],
)
def test_describe_due_in_german(due: datetime, expected: str) -> None:
    """German writes "heute bis 14:30 Uhr" and "Mittwoch, 2. Dezember, bis 10:00 Uhr"."""
    assert describe_due(due, timezone=BERLIN, now=NOW, language="de") == expected


def test_german_times_zones_promises_and_openings() -> None:
    """Every phrase has its German form, zone labels included."""
    now = NOW - timedelta(days=2)  # Saturday
    monday = berlin(2026, 11, 30, 9, 0)
    assert describe_time(monday, timezone=BERLIN, now=now, language="de") == (
        "am Montag, 30. November, um 09:00 Uhr (Berliner Zeit)")
    assert describe_opening(monday, timezone=BERLIN, now=now, language="de") == (
        "Wir sind gerade nicht erreichbar und am Montag, 30. November, um 09:00 Uhr "
        "(Berliner Zeit) wieder für Sie da.")
    promise = describe_promise(berlin(2026, 11, 30, 14, 30), timezone=BERLIN,
                               customer_offset=timedelta(hours=-5), now=NOW, language="de")
    assert promise == "heute bis 14:30 Uhr (Berliner Zeit), bei Ihnen 08:30 Uhr"
    late = describe_promise(berlin(2026, 11, 30, 22, 0), timezone=BERLIN,
                            customer_offset=timedelta(hours=5, minutes=30), now=NOW,
                            language="de-DE")
    assert late == "heute bis 22:00 Uhr (Berliner Zeit), bei Ihnen morgen 02:30 Uhr"
    assert zone_label("Europe/Vienna", NOW, language="de") == "Wiener Zeit"
    assert zone_label("Asia/Kolkata", NOW, language="de") == "Ortszeit Kolkata"
    assert zone_label("Etc/GMT+5", NOW, language="de") == "UTC-05:00"


def test_phrases_of_another_language_can_be_passed_in() -> None:
    """A language without built-in phrases brings its own; an unknown code is refused."""
    dutch = dataclasses.replace(ENGLISH, today="vandaag", due="{day} vóór {time} ({zone})",
                                city_zone="{city}-tijd", zones={"Amsterdam": "Nederlandse tijd"})
    assert describe_due(berlin(2026, 11, 30, 14, 30), timezone="Europe/Amsterdam", now=NOW,
                        language=dutch) == "vandaag vóór 14:30 (Nederlandse tijd)"
    with pytest.raises(ValueError, match="no built-in phrases"):
        describe_due(NOW, timezone=BERLIN, now=NOW, language="nl")
    assert phrases_for("EN") is ENGLISH
