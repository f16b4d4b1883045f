"""`mailbridge run`: the daemon, watching the mailbox until stopped.

Public API: `command(args) -> int`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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
    # per hand-over let acks trail the reading. 0.1 ms, chosen when each ack went out on its
    # own, now made the threads trade the GIL so often that the trading cost a tenth of the
    # daemon's CPU; 1 ms keeps the backlog's pace without it (benchmarks/RESULTS.md).
    sys.setswitchinterval(0.001)
    service = Service(config)
    # What start-up made (modules, classes, the config) lives as long as the process: out of
    # the collector's way, a full collection no longer walks it. A young generation ten times
    # Python's default is collected a tenth as often: with both, the collector took 0.09
    # instead of 0.28 s of a 5,000-message backlog's 10 s of CPU.
    gc.freeze()
    gc.set_threshold(7000, 10, 10)
    return asyncio.run(service.serve())
