"""mailbridge: instant, named acknowledgements and SLA tracking for a support mailbox."""

from __future__ import annotations

__version__ = "0.1.0"
