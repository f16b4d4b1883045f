"""`python -m mailbridge` runs the command line."""

from __future__ import annotations

from mailbridge.cli import main

raise SystemExit(main())
