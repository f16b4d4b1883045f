"""`mailbridge demo`: the daemon on its embedded defaults, with no mail server.

Public API: `sample_messages(now)`, `ConsoleTransport`, `run_demo(state_dir, out, once)`.

It starts the real service (SQLite store, outbox sender, /metrics) with a
transport that prints each acknowledgement instead of sending it, feeds it a
few sample customer emails through the local ingest path, and keeps running
until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import threading
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import TextIO

from mailbridge import logs
from mailbridge.config import Config, demo_config
from mailbridge.daemon.ingest import Outcome, Source
from mailbridge.daemon.service import Service

DEMO_MAILBOX = "demo"


def _mail(sender: str, subject: str, body: str, when: datetime,
          **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "Example Support <support@example.com>"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].rstrip(">"))
    msg["Return-Path"] = "<" + sender.rpartition("<")[2].rstrip(">") + ">"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


def sample_messages(now: datetime) -> list[tuple[str, bytes]]:
    """A short, realistic morning at a support desk."""
    first = _mail("Ana Souza <ana.souza@example.org>", "Invoice 2291 charged twice",
                  "Hello, my card was charged twice for invoice 2291. Can you refund one?",
                  now)
    follow = _mail("Ana Souza <ana.souza@example.org>", "Re: Invoice 2291 charged twice",
                   "Sorry, forgot to attach the card statement. Here it is.",
                   now + timedelta(seconds=20),
                   In_Reply_To=str(first["Message-ID"]), References=str(first["Message-ID"]))
    ooo = _mail("Piet de Vries <piet@example.net>", "Automatic reply: out of office",
                "I am out of the office until Monday.", now + timedelta(seconds=40),
                Auto_Submitted="auto-replied")
    second = _mail("Jürgen Groß <jgross@example.de>", "Export to CSV fails with error 500",
                   "Since this morning the CSV export stops with an internal server error.",
                   now + timedelta(seconds=60))
    return [(f"sample-{i}.eml", m.as_bytes()) for i, m in
            enumerate((first, follow, ooo, second), start=1)]


class ConsoleTransport:
    """Prints each acknowledgement as the customer would see it, instead of sending it."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.sent = 0

    def send(self, envelope_from: str, recipient: str, data: bytes) -> None:
        msg = BytesParser(policy=default).parsebytes(data)
        text = msg.get_body(preferencelist=("plain",))
        body = text.get_content() if text is not None else ""
        with self.lock:
            self.sent += 1
            print("\n  ── acknowledgement that would reach the customer ──", file=self.out)
            for name in ("From", "To", "Subject", "Auto-Submitted", "In-Reply-To"):
                print(f"  {name}: {msg.get(name, '')}", file=self.out)
            print("", file=self.out)
            for line in body.strip().splitlines():
                print(f"  │ {line}", file=self.out)
            print("", file=self.out, flush=True)

    def close(self) -> None:
        return None


def _print_outcome(out: TextIO, outcome: Outcome) -> None:
    action = "acknowledge" if outcome.verdict.reply else "ignore"
    line = f"→ {outcome.source.describe()}: {action} ({outcome.verdict.rule}: " \
           f"{outcome.verdict.detail})"
    if outcome.agent is not None and outcome.due is not None:
        line += f"; agent {outcome.agent.name}, due {outcome.due:%Y-%m-%d %H:%M} UTC"
    print(line, file=out, flush=True)


async def _feed(service: Service, config: Config, out: TextIO, once: bool) -> None:
    now = service.clock.now()
    for label, raw in sample_messages(now):
        await asyncio.sleep(1.0)  # paced so a person can follow along
        print(f"\n✉  customer mail arrives: {label}", file=out, flush=True)
        await asyncio.to_thread(service.ingest_raw, raw, Source(DEMO_MAILBOX, label=label))
    await asyncio.sleep(0.5)
    print("\nAll samples processed. Press Ctrl-C to stop.", file=out, flush=True)
    if once:
        service.request_stop()


async def _run(config: Config, out: TextIO, once: bool) -> int:
    service = Service(config, transport=ConsoleTransport(out),
                      on_outcome=lambda outcome: _print_outcome(out, outcome))
    serve = asyncio.create_task(service.serve())
    started = asyncio.create_task(service.started.wait())
    await asyncio.wait([serve, started], return_when=asyncio.FIRST_COMPLETED)
    if serve.done():
        started.cancel()
        return await serve
    assert service.http is not None
    print(f"mailbridge demo: store {config.store.url}", file=out)
    print(f"metrics: http://{config.http.host}:{service.http.port}/metrics  "
          f"health: http://{config.http.host}:{service.http.port}/healthz", file=out, flush=True)
    feeder = asyncio.create_task(_feed(service, config, out, once))
    code = await serve
    feeder.cancel()
    return code


def run_demo(state_dir: Path, out: TextIO, *, once: bool = False,
             listen: str | None = None) -> int:
    config = demo_config(state_dir)
    if listen is not None:
        config = config.model_copy(update={"http": config.http.model_copy(
            update={"listen": listen})})
    return asyncio.run(_run(config, out, once))


def _port_free(listen: str) -> bool:
    host, _, port = listen.rpartition(":")
    with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as sock:
        try:
            sock.bind((host.strip("[]"), int(port)))
        except OSError:
            return False
    return True


def command(args: argparse.Namespace) -> int:
    logs.setup("warning")
    listen = args.listen or "127.0.0.1:9464"
    if args.listen is None and not _port_free(listen):
        listen = "127.0.0.1:0"  # 9464 is taken: any free port will do for a demo
    if args.state_dir is not None:
        args.state_dir.mkdir(parents=True, exist_ok=True)
        return run_demo(args.state_dir, sys.stdout, once=args.once, listen=listen)
    with tempfile.TemporaryDirectory(prefix="mailbridge-demo-") as tmp:
        return run_demo(Path(tmp), sys.stdout, once=args.once, listen=listen)
