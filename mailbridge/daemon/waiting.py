"""Sleeping until woken: the one waiting primitive of the daemon's tasks.

Public API: `sleep_until(wake, stopping, timeout)`.
"""

from __future__ import annotations

import asyncio


async def sleep_until(wake: asyncio.Event, stopping: asyncio.Event,
                      timeout: float | None) -> None:
    """Return when `wake` or `stopping` is set, or after `timeout` seconds (None: never)."""
    waits = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopping.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waits:
            waiter.cancel()
