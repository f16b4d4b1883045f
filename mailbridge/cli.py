"""The `mailbridge` command: run, demo, check-config, replay, threads, status, hash-password.

Public API: `main(argv) -> int`. Exit codes follow sysexits: 0 fine, 64 usage,
78 configuration error (systemd's unit does not restart on 78).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from mailbridge import __version__, logs
from mailbridge.config import Config, load_config
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


def _cmd_check(path: Path) -> int:
    config = load_config(path)
    print(f"{path}: ok ({len(config.agents)} agents, store {config.store.url.split(':')[0]}, "
          f"mailbox {'configured' if config.imap else 'none'})")
    return 0


def _cmd_run(path: Path) -> int:
    config = load_config(path)
    problems = []
    if config.imap is None:
        problems.append("[imap]: `run` needs an [imap] section to watch a mailbox "
                        "(to try mailbridge without a mail server, use `mailbridge demo`)")
    if config.smtp is None:
        problems.append("[smtp]: `run` needs an [smtp] section to send acknowledgements")
    if problems:
        raise ConfigError(str(path), problems)
    return _serve(config)


def _serve(config: Config) -> int:
    from mailbridge.service import Service

    logs.setup(config.daemon.log_level, journal="JOURNAL_STREAM" in os.environ)
    # The sender mostly waits on SMTP replies; after each it needs the GIL back from the
    # IMAP thread, which works without pause through a backlog. Python's default of 5 ms
    # per hand-over let acks trail the reading; 0.1 ms measured best (benchmarks/RESULTS.md).
    sys.setswitchinterval(0.0001)
    return asyncio.run(Service(config).serve())


def _port_free(listen: str) -> bool:
    host, _, port = listen.rpartition(":")
    with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as sock:
        try:
            sock.bind((host.strip("[]"), int(port)))
        except OSError:
            return False
    return True


def _cmd_demo(args: argparse.Namespace) -> int:
    from mailbridge.demo import run_demo

    logs.setup("warning")
    listen = args.listen or "127.0.0.1:9464"
    if args.listen is None and not _port_free(listen):
        listen = "127.0.0.1:0"  # 9464 is taken: any free port will do for a demo
    if args.state_dir is not None:
        args.state_dir.mkdir(parents=True, exist_ok=True)
        return run_demo(args.state_dir, sys.stdout, once=args.once, listen=listen)
    with tempfile.TemporaryDirectory(prefix="mailbridge-demo-") as tmp:
        return run_demo(Path(tmp), sys.stdout, once=args.once, listen=listen)


def _cmd_replay(args: argparse.Namespace) -> int:
    from mailbridge.replay import progress_stream, replay

    config = load_config(args.config)
    logs.setup("warning", stream=sys.stderr)
    replay(config, args.paths, now=args.now, out=sys.stdout, json_lines=args.json,
           progress=progress_stream())
    return 0


def _cmd_threads(args: argparse.Namespace) -> int:
    from mailbridge.clock import SystemClock
    from mailbridge.store.db import Store
    from mailbridge.threads_view import print_threads

    config = load_config(args.config)
    store = Store.open(config.store.url)
    try:
        states = args.state or ["awaiting_agent", "awaiting_customer"]
        print_threads(store, states=states, now=SystemClock().now(), out=sys.stdout,
                      json_lines=args.json)
    finally:
        store.close()
    return 0


def _cmd_hash_password() -> int:
    from mailbridge.passwords import hash_password

    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Relay password: ")
        if getpass.getpass("The same again: ") != password:
            print("mailbridge: the two passwords differ; nothing printed", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        print("mailbridge: the password is empty; nothing printed", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from mailbridge.clock import SystemClock
    from mailbridge.status import EXIT_UNWATCHED, gather, print_status
    from mailbridge.store.db import Store

    config = load_config(args.config)
    store = Store.open(config.store.url)
    try:
        status = gather(store, config, SystemClock().now())
    finally:
        store.close()
    print_status(status, sys.stdout, as_json=args.json)
    return EXIT_UNWATCHED if status.unwatched else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-config":
            return _cmd_check(args.file)
        if args.command == "run":
            return _cmd_run(args.config)
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "hash-password":
            return _cmd_hash_password()
        if args.command == "status":
            return _cmd_status(args)
        if args.command == "threads":
            return _cmd_threads(args)
        return _cmd_replay(args)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EX_CONFIG
    except MailbridgeError as exc:
        print(f"mailbridge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
