"""The problems found while reading one received message, as short sentences.

This module owns how the readers in `mailbridge.mail` (`parse`, `fields`, `decode`) record
what they could not read instead of raising. Public API:

- `Defects`: the problems found so far, deduplicated and capped at `MAX_DEFECTS`.
- `guard(defects, what, default, read)`: `read()`, or `default` and a problem if it raises.
- `excerpt(text)`: a bad value, cleaned and shortened, to quote in a problem.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from mailbridge.mail.headers import clean

MAX_DEFECTS = 50

_T = TypeVar("_T")


class Defects:
    """The problems found so far, deduplicated and capped at MAX_DEFECTS."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.dropped = 0

    def add(self, text: str) -> None:
        if text in self.items:
            return
        if len(self.items) < MAX_DEFECTS:
            self.items.append(text)
        else:
            self.dropped += 1

    def result(self) -> tuple[str, ...]:
        more = [f"{self.dropped} more problems not listed"] if self.dropped else []
        return (*self.items, *more)


def guard(defects: Defects, what: str, default: _T, read: Callable[[], _T]) -> _T:
    """`read()`; when it raises, `default`, and "<what> unreadable (<exception>)" in `defects`."""
    try:
        return read()
    except Exception as exc:
        defects.add(f"{what} unreadable ({type(exc).__name__})")
        return default


def excerpt(text: str) -> str:
    """`text` cleaned, shortened to 60 characters and quoted, to show in a problem."""
    return repr(clean(text, max_len=60))
