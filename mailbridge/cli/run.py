"""`mailbridge run`: the daemon, watching the mailbox until stopped.

Public API: `command(args) -> int`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from mailbridge import logs
from mailbridge.clock import SystemClock
from mailbridge.config import Config, load_config
from mailbridge.daemon.checks import run_problems
from mailbridge.daemon.service import Service
from mailbridge.errors import ConfigError


def command(args: argparse.Namespace) -> int:
    path = args.config
    config = load_config(path)
    problems = run_problems(config, SystemClock().now())
    if problems:
        raise ConfigError(str(path), problems)
    return _serve(config)


def _serve(config: Config) -> int:
    # Under systemd stdout is the journal: records go over journald's native protocol, so a
    # traceback stays one entry at error priority. Anywhere else each line gets its time.
    logs.setup(config.daemon.log_level, log_format=config.daemon.log_format,
               journal=logs.under_journald(sys.stdout))
    # The sender mostly waits on SMTP replies; after each it needs the GIL back from the
    # IMAP thread, which works without pause through a backlog. Python's default of 5 ms
    # per hand-over let acks trail the reading; 0.1 ms measured best (benchmarks/RESULTS.md).
    sys.setswitchinterval(0.0001)
    return asyncio.run(Service(config).serve())
