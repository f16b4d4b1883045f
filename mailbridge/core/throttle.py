"""Failed logins per source: slow a guesser down, then shut them out for a while.

Public API: `ThrottleRules`, `Admission`, `LoginThrottle` (`admit`, `failed`, `succeeded`).

Like a fail2ban jail, per key (the client's IP address): failures inside `window` are
counted; after `free_failures` of them each further failure is answered only after a delay
that doubles up to `max_delay`; at `lockout_after` failures the key is refused outright for
`lockout`, even with the right password, so guessing on stops paying. A success forgets the
key's failures. Pure: the time is a parameter (seconds on a monotonic clock), so tests drive it
with plain numbers. Memory is bounded by `max_keys`; the oldest keys are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class ThrottleRules:
    free_failures: int = 3
    delay: float = 1.0
    """Seconds before the first slowed answer; doubles with each further failure."""
    max_delay: float = 8.0
    lockout_after: int = 10
    lockout: float = 900.0
    window: float = 900.0
    """Failures older than this (seconds) are forgotten."""
    max_keys: int = 10_000


@dataclass(frozen=True)
class Admission:
    """Whether a login attempt from a key may proceed; if not, for how long it is refused."""

    allowed: bool
    retry_after: float = 0.0


@dataclass
class _Record:
    failures: list[float]
    locked_until: float = 0.0


class LoginThrottle:
    def __init__(self, rules: ThrottleRules | None = None) -> None:
        self.rules = rules or ThrottleRules()
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def admit(self, key: str, now: float) -> Admission:
        """May `key` try to log in at `now`?"""
        record = self._records.get(key)
        if record is None:
            return Admission(True)
        if record.locked_until > now:
            return Admission(False, record.locked_until - now)
        self._forget_old(record, now)
        return Admission(True)

    def failed(self, key: str, now: float) -> float:
        """Count a failed login; return the seconds to wait before answering it."""
        record = self._records.pop(key, None) or _Record([])
        self._records[key] = record  # most recently used last
        self._forget_old(record, now)
        record.failures.append(now)
        rules = self.rules
        count = len(record.failures)
        if count >= rules.lockout_after:
            record.locked_until = now + rules.lockout
            record.failures.clear()
        while len(self._records) > rules.max_keys:
            self._records.popitem(last=False)
        extra = count - rules.free_failures
        if extra <= 0:
            return 0.0
        return float(min(rules.max_delay, rules.delay * 2.0 ** (extra - 1)))

    def succeeded(self, key: str) -> None:
        """A correct login: the key's failures are forgotten."""
        self._records.pop(key, None)

    def failures(self, key: str, now: float) -> int:
        """How many failures of `key` still count at `now`."""
        record = self._records.get(key)
        if record is None:
            return 0
        self._forget_old(record, now)
        return len(record.failures)

    def _forget_old(self, record: _Record, now: float) -> None:
        horizon = now - self.rules.window
        record.failures[:] = [t for t in record.failures if t > horizon]
