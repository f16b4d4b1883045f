"""Response deadlines. Wall-clock for now; business hours come with calendars.

Public API: `first_response_due(received, target)`.
"""

from __future__ import annotations

from datetime import datetime, timedelta


def first_response_due(received: datetime, target: timedelta) -> datetime:
    """When the first answer to a message received at `received` is due."""
    if received.tzinfo is None:
        raise ValueError("received must be timezone-aware")
    return received + target
