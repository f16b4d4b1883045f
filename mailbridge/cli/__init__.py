"""The `mailbridge` command: its argument parser, and one module per command.

Public API: `main(argv) -> int`. Exit codes follow sysexits: 0 fine, 64 usage,
78 configuration error (systemd's unit does not restart on 78), 66 an input file or folder
that is not there, 73 a file or folder that cannot be created, 75 a store whose server does
not answer (try again later); 141 when whoever read the output went away (`| head -1`),
quietly.

Each command is a module here with `command(args) -> int` (`run`, `check_config`, `demo`,
`replay`, `threads`, `forget`, `status`, `backup`, `hash_password`, `oauth2_login`),
imported only when it runs, so that `check-config` does not load the daemon. The cli is the
top layer: it may import every other package of mailbridge; nothing imports it.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from mailbridge import __version__
from mailbridge.errors import (
    EX_CONFIG,
    EX_TEMPFAIL,
    BackupError,
    ConfigError,
    MailbridgeError,
    NoInputError,
    StoreError,
    TransientError,
)

EX_USAGE = 64
EX_PIPE = 128 + 13
"""As a shell reports a command ended by SIGPIPE."""


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
    where = check.add_mutually_exclusive_group(required=True)
    where.add_argument("file", nargs="?", type=Path, help="the TOML configuration file")
    where.add_argument("--config", dest="config_option", type=Path,
                       help="the same, written as for the other commands")
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
    forget = sub.add_parser("forget", help=(
        "erase one customer's personal data from the store (GDPR art. 17), also while the "
        "daemon runs; their threads' timings stay, anonymous"))
    forget.add_argument("--config", required=True, type=Path)
    forget.add_argument("address", metavar="ADDRESS",
                        help="the customer's email address (any case)")
    status = sub.add_parser("status", help=(
        "the instances sharing the store and the mailboxes each watches, last IMAP sync, "
        "outbox depth, next deadline (exit 3 if a mailbox has no live watcher)"))
    status.add_argument("--config", required=True, type=Path)
    status.add_argument("--json", action="store_true", help="one JSON object")
    backup = sub.add_parser("backup", help=(
        "write a consistent copy of the SQLite store, even while the daemon runs, and check "
        "it (on PostgreSQL: use pg_dump)"))
    backup.add_argument("--config", required=True, type=Path)
    backup.add_argument("--force", action="store_true", help="replace DEST if it exists")
    backup.add_argument("dest", metavar="DEST", type=Path, help="the file to write")
    login = sub.add_parser("oauth2-login", help=(
        "sign in once to the [oauth2] provider (Microsoft: a code entered in any browser; "
        "Google: a browser sent back to this machine) and write refresh_token_file"))
    login.add_argument("--config", required=True, type=Path)
    login.add_argument("--flow", choices=["device", "loopback"],
                       help="how to sign in (default: the provider's own)")
    login.add_argument("--port", type=int, default=0,
                       help="loopback: the port to listen on for the browser (default: any)")
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
    if args.command == "check-config":
        args.file = args.file or args.config_option
    try:
        # The daemon's imports (SQLAlchemy, pydantic, jinja2 ...) make objects that live as
        # long as it does. Collecting while importing found nothing to free and took 7 % of
        # its start-up CPU; frozen, no collection walks them again. Other commands are over
        # in seconds, and may run inside a caller's process (the tests): left as they are.
        daemon = args.command == "run"
        if daemon:
            gc.disable()
        try:
            module = importlib.import_module(f"mailbridge.cli.{args.command.replace('-', '_')}")
        finally:
            if daemon:
                gc.freeze()
                gc.enable()
        code: int = module.command(args)
        return code
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EX_CONFIG
    except (StoreError, BackupError, NoInputError) as exc:
        print(f"mailbridge: {exc}", file=sys.stderr)
        return exc.exit_code
    except TransientError as exc:  # the store's server did not answer: try again later
        print(f"mailbridge: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except MailbridgeError as exc:
        print(f"mailbridge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The reader went away (`mailbridge threads | head -1`): end quietly, as `yes` does,
        # and keep Python from reporting the pipe once more when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_PIPE
