"""`mailbridge backup --config FILE DEST`: a consistent, checked copy of the SQLite store,
taken while the daemon runs (`mailbridge.store.backup`); on PostgreSQL, how to use pg_dump.

Public API: `command(args) -> int`. Exit 0 with the copy's size and counts; 73 when DEST
exists (without --force) or cannot be created, 74 when writing fails, 65 when the copy
fails its integrity check, 64 for a store this command does not back up (PostgreSQL, in
memory), 78 for a store that cannot be opened or whose schema does not fit this code.
"""

from __future__ import annotations

import argparse
import sys

from mailbridge.cli import EX_USAGE
from mailbridge.config import load_config
from mailbridge.config.values import mask_url
from mailbridge.errors import EX_CANTCREAT
from mailbridge.store import access
from mailbridge.store.backup import backup, pg_dump_command
from mailbridge.store.db import Store


def command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    url = config.store.url
    if access.sqlite_file(url) is None:
        if url.startswith("postgresql"):
            print(f"mailbridge backup: the store is the PostgreSQL database {mask_url(url)}; "
                  "back it up with PostgreSQL's own tool, which copies it consistently "
                  f"while the daemon runs: {pg_dump_command(url, str(args.dest))}",
                  file=sys.stderr)
        else:
            print(f"mailbridge backup: the store {url} is in memory: nothing to back up",
                  file=sys.stderr)
        return EX_USAGE
    if not args.force and (args.dest.exists() or args.dest.is_symlink()):
        print(f"mailbridge backup: {args.dest} exists already: give --force to replace it",
              file=sys.stderr)
        return EX_CANTCREAT
    store = Store.open(url, migrate=False)
    try:
        copy = backup(store, args.dest, overwrite=args.force)
    finally:
        store.close()
    print(f"{copy.path}: {_size(copy.size)}, schema version {copy.schema_version}, "
          f"integrity ok; {copy.messages} messages, {copy.threads} threads, "
          f"{copy.outbox} outbox items")
    return 0


def _size(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KiB" if size >= 1024 else f"{size} bytes"
    if size < 1024 ** 3:
        return f"{size / 1024 ** 2:.1f} MiB"
    return f"{size / 1024 ** 3:.2f} GiB"
