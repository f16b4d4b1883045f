"""Capped exponential backoff with jitter, for reconnects and retries.

Public API: `Backoff`, `retry_delay(attempt, initial, cap, rand)`.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def retry_delay(attempt: int, *, initial: float, cap: float,
                rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before try number `attempt + 1` (attempt counts from 1).

    "Equal jitter": half the exponential step is fixed and half random, so many
    clients that failed together do not come back together, yet none retries at once.
    """
    step = min(cap, initial * 2.0 ** max(0, attempt - 1))
    return float(step / 2 + step / 2 * rand())


class Backoff:
    """Counts consecutive failures and says how long to wait after each."""

    def __init__(self, *, initial: float = 1.0, cap: float = 300.0) -> None:
        self.initial = initial
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return retry_delay(self.failures, initial=self.initial, cap=self.cap)

    def reset(self) -> None:
        self.failures = 0
