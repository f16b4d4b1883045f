"""Where a request stands, in words: queue position, who has it, whether it was opened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailbridge.core.standing import (
    GERMAN,
    QUEUE_CAP,
    describe_progress,
    describe_queue,
    revised_promise,
    words_for,
)

EN = words_for("en")
DE = words_for("de-AT")
assert EN is not None and DE is not None


@pytest.mark.parametrize(("ahead", "english", "german"), [
    (0, "Right now yours is next.", "Ihre Anfrage ist als Nächste an der Reihe."),
    (1, "Right now 1 request is ahead of yours.",
     "Vor Ihrer Anfrage ist gerade noch eine andere an der Reihe."),
    (2, "Right now 2 requests are ahead of yours.",
     "Vor Ihrer Anfrage sind gerade noch 2 andere an der Reihe."),
    (17, "Right now 17 requests are ahead of yours.",
     "Vor Ihrer Anfrage sind gerade noch 17 andere an der Reihe."),
    (QUEUE_CAP, f"Right now at least {QUEUE_CAP} requests are ahead of yours.",
     f"Vor Ihrer Anfrage sind gerade noch mindestens {QUEUE_CAP} andere an der Reihe."),
])
def test_queue_position_in_english_and_german(ahead: int, english: str, german: str) -> None:
    """Nothing, one and several requests ahead read as a person would write them."""
    assert describe_queue(ahead, EN) == english
    assert describe_queue(ahead, DE) == german


def test_a_negative_position_is_refused() -> None:
    """A count below zero is a bug, not a sentence."""
    with pytest.raises(ValueError, match="negative"):
        describe_queue(-1, EN)


def test_languages_without_built_in_words() -> None:
    """German in any region uses the German words; French has none built in."""
    assert words_for("DE-ch") is GERMAN
    assert words_for("fr") is None


@pytest.mark.parametrize(("opened", "english", "german"), [
    (True, "Your request is with Sam Okafor. It has been opened but not answered yet.",
     "Ihre Anfrage liegt bei Sam Okafor. Sie wurde bereits geöffnet, aber noch nicht "
     "beantwortet."),
    (False, "Your request is with Sam Okafor. It has not been opened yet.",
     "Ihre Anfrage liegt bei Sam Okafor. Sie wurde noch nicht geöffnet."),
    (None, "Your request is with Sam Okafor.", "Ihre Anfrage liegt bei Sam Okafor."),
])
def test_progress_never_claims_more_than_is_known(opened: bool | None, english: str,
                                                  german: str) -> None:
    """Opened, not opened, or (when the mailbox could not be asked) nothing about it."""
    assert describe_progress("Sam Okafor", opened, EN) == english
    assert describe_progress("Sam Okafor", opened, DE) == german


T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def _add(start: datetime, span: timedelta) -> datetime:
    return start + span


def _revised(now: datetime, samples: list[float], decided: datetime,
             deadline: datetime | None = T0 + timedelta(hours=8)) -> datetime:
    return revised_promise(decided, deadline=deadline, waiting_since=T0,
                           recent_seconds=samples, percentile=80, min_samples=3,
                           add_business=_add, now=now)


def test_the_revised_promise_uses_the_acks_data_while_it_is_ahead() -> None:
    """Recent answers in about 2h: an update after 1h promises 11:00, as the ack did."""
    decided = T0 + timedelta(hours=8)
    assert _revised(T0 + timedelta(hours=1), [7200.0] * 5, decided) == T0 + timedelta(hours=2)


def test_a_passed_estimate_is_not_promised_again() -> None:
    """Past the time recent answers suggested, the decided time (the deadline) stands."""
    decided = T0 + timedelta(hours=8)
    assert _revised(T0 + timedelta(hours=3), [7200.0] * 5, decided) == decided
    assert _revised(T0 + timedelta(hours=1), [7200.0], decided) == decided  # too few
    later = T0 + timedelta(hours=9, minutes=30)
    assert _revised(T0 + timedelta(hours=9), [60.0] * 5, later) == later  # deadline passed
    assert _revised(T0 + timedelta(hours=1), [60.0] * 5, decided, deadline=None) == decided
