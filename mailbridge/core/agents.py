"""Who answers a new thread.

Public API: `round_robin(agents, turn)`. Fair, sticky and shift-aware
assignment grows here.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailbridge.core.model import Agent


def round_robin(agents: Sequence[Agent], turn: int) -> Agent:
    """The agent whose turn it is; `turn` is a counter the store keeps."""
    if not agents:
        raise ValueError("no agents configured")
    return agents[turn % len(agents)]
