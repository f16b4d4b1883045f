"""The `mailbridge` command: its argument parser, and one module per command.

Public API: `main(argv) -> int`. Exit codes follow sysexits: 0 fine, 64 usage,
78 configuration error (systemd's unit does not restart on 78).

Each command is a module here with `command(args) -> int` (`run`, `check_config`, `demo`,
`replay`, `threads`, `status`, `hash_password`), imported only when it runs, so that
`check-config` does not load the daemon. The cli is the top layer: it may import every
other package of mailbridge; nothing imports it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from mailbridge import __version__
from mailbridge.errors import EX_CONFIG, ConfigError, MailbridgeError

EX_USAGE = 64


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(EX_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mailbridge", description=(
        "Acknowledge every new support email within a second, signed by a named agent, "
        "and track it against its response deadline."))
    parser.add_argument("--version", action="version", version=f"mailbridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="watch the mailbox and acknowledge new mail")
    run.add_argument("--config", required=True, type=Path, help="the TOML configuration file")
    check = sub.add_parser("check-config", help="validate a configuration file, then exit")
    check.add_argument("file", type=Path)
    demo = sub.add_parser("demo", help="try mailbridge locally, with no mail server")
    demo.add_argument("--state-dir", type=Path, help="keep the demo store here (default: temp)")
    demo.add_argument("--listen", help="where to serve /metrics (default 127.0.0.1:9464)")
    demo.add_argument("--once", action="store_true", help="stop after the sample mail")
    replay = sub.add_parser("replay", help="show what would happen to saved mail; sends nothing")
    replay.add_argument("--config", required=True, type=Path)
    replay.add_argument("--now", type=_iso_time, help="fix the clock (ISO-8601, with offset)")
    replay.add_argument("--json", action="store_true", help="one JSON object per line")
    replay.add_argument("paths", nargs="+", type=Path, help=".eml files, folders, Maildirs, mbox")
    threads = sub.add_parser("threads", help="open threads, most urgent first")
    threads.add_argument("--config", required=True, type=Path)
    threads.add_argument("--state", action="append",
                         choices=["awaiting_agent", "awaiting_customer", "resolved"],
                         help="only these states (repeatable; default: the open ones)")
    threads.add_argument("--json", action="store_true", help="one JSON object per line")
    status = sub.add_parser("status", help=(
        "the instances sharing the store and the mailboxes each watches, last IMAP sync, "
        "outbox depth, next deadline (exit 3 if a mailbox has no live watcher)"))
    status.add_argument("--config", required=True, type=Path)
    status.add_argument("--json", action="store_true", help="one JSON object")
    sub.add_parser("hash-password", help=(
        "print the password_hash of an agent's relay password (asked for without echo on a "
        "terminal, else read from the first line of standard input)"))
    return parser


def _iso_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a UTC offset, e.g. {text}+00:00")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        module = importlib.import_module(f"mailbridge.cli.{args.command.replace('-', '_')}")
        code: int = module.command(args)
        return code
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EX_CONFIG
    except MailbridgeError as exc:
        print(f"mailbridge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
