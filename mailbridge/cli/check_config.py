"""`mailbridge check-config FILE`: validate a configuration file, then exit.

Public API: `command(args) -> int`.
"""

from __future__ import annotations

import argparse

from mailbridge.config import load_config


def command(args: argparse.Namespace) -> int:
    path = args.file
    config = load_config(path)
    print(f"{path}: ok ({len(config.agents)} agents, store {config.store.url.split(':')[0]}, "
          f"mailbox {'configured' if config.imap else 'none'})")
    return 0
