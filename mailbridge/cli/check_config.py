"""`mailbridge check-config FILE`: validate a configuration file, then exit.

Besides the file itself, it loads the operator's templates ([templates] dir) and renders
each one once with sample mail, so that a syntax error, an unknown variable or a refused
operation is reported with its file and line before any customer mail needs it. And it
asks the store whether `run` could use it ([store] url: the SQLite file's folder can be
made, the file is a database it may write, PostgreSQL answers and lets it in, and the
schema is not newer than this code), creating and changing nothing. With an [oauth2]
grant in use, it checks that the refresh token file holds a token (it never calls the token
endpoint: a refresh would rotate the daemon's token).

Public API: `command(args) -> int`. What `run` needs besides a valid file (its sections and
working templates) is `mailbridge.daemon.checks.run_problems`, which `run` asks too.
"""

from __future__ import annotations

import argparse
import sys

from mailbridge.clock import SystemClock
from mailbridge.config import load_config
from mailbridge.config.oauth2 import refresh_token_problems
from mailbridge.daemon.checks import run_problems, run_warnings
from mailbridge.errors import ConfigError
from mailbridge.store.access import problems as store_problems


def command(args: argparse.Namespace) -> int:
    path = args.file
    config = load_config(path)
    problems = run_problems(config, SystemClock().now()) + store_problems(config.store.url)
    if config.uses_oauth2 and config.oauth2 is not None:
        problems += refresh_token_problems(config.oauth2, config.daemon.state_dir, path)
    if problems:
        raise ConfigError(str(path), problems)
    for warning in run_warnings(config):
        print(f"{path}: warning: {warning}", file=sys.stderr)
    print(f"{path}: ok ({len(config.agents)} agents, store {config.store.url.split(':')[0]}"
          f"{', own templates' if config.templates.dir else ''})")
    return 0
