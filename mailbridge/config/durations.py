"""Durations as the configuration file writes them: "45s", "30m", "4h", "1h30m", "2d", "1w".

This module owns the duration syntax. It is pure: no pydantic, no file, no clock. Public API:

- `parse_duration("1h30m") -> timedelta`, raising ValueError with a sentence for the operator.
- `format_duration(timedelta) -> "1h30m"`, the inverse for whole, non-negative seconds.
- `DURATION_LIKE`, the examples a problem about a duration begins with.

`mailbridge.config` re-exports `parse_duration` and `format_duration`. Values in messages are
written by `mailbridge.config.problems.show`, so they read like every other config problem.
"""

from __future__ import annotations

import re
from datetime import timedelta

from mailbridge.config.problems import show

_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_PART = re.compile(r"([0-9]+)([a-z]+)\s*")
DURATION_LIKE = 'expected a duration like "4h", "30m", "1h30m" or "2d"'


def parse_duration(text: str) -> timedelta:
    """Parse "45s", "30m", "4h", "2d", "1w", "1h30m" or "1d 12h"; raise ValueError otherwise.

    Units go from largest to smallest, each at most once. A bare number is refused because
    its unit would be a guess.
    """
    rest = text.strip()
    if rest.isdecimal():
        raise ValueError(f'{show(text)} has no unit: write "{rest}s", "{rest}m" or "{rest}h"')
    seconds, pos, last = 0, 0, -1
    while pos < len(rest):
        match = _PART.match(rest, pos)
        if match is None or match[2] not in _UNITS:
            raise ValueError(f"{DURATION_LIKE} (units w, d, h, m, s), got {show(text)}")
        rank = list(_UNITS).index(match[2])
        if rank <= last:
            raise ValueError(f"units in {show(text)} must go from largest to smallest, once each")
        seconds, pos, last = seconds + int(match[1]) * _UNITS[match[2]], match.end(), rank
    if pos == 0:
        raise ValueError(f"{DURATION_LIKE}, got {show(text)}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration {show(text)} is too long") from None


def format_duration(td: timedelta) -> str:
    """Write a whole-second, non-negative timedelta the way `parse_duration` reads it."""
    if td < timedelta(0) or td.microseconds:
        raise ValueError(f"cannot write {td!r} as a duration of whole seconds")
    seconds, parts = td.days * 86_400 + td.seconds, []
    for unit in "dhms":
        count, seconds = divmod(seconds, _UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
