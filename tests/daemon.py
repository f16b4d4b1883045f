"""Run the real `mailbridge run` as a child process, for integration tests and benchmarks.

Public API: `write_config(directory, dovecot, smtp, **overrides) -> Path`, `Daemon`, and
`run_service(service, scenario)` for a service in the test's own process.
Imports no pytest, so `benchmarks/` can use it too.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

from mailbridge.daemon.service import Service
from mailbridge.store.db import Store
from tests.servers import Dovecot, SmtpPeer, free_port, wait_for

REPO = Path(__file__).resolve().parent.parent


def write_config(directory: Path, dovecot: Dovecot, smtp: SmtpPeer, *, imap_tls: str = "none",
                 extra_imap: str = "", extra_smtp: str = "", extra_rules: str = "",
                 extra_sla: str = "", extra: str = "", store_url: str | None = None,
                 extra_store: str = "", copy_sent: bool = False, extra_http: str = "") -> Path:
    """A complete mailbridge config for the two test servers; returns its path.

    The store is a SQLite file in `directory` unless `store_url` names another. Copies of
    sent mail in the Sent folder are off unless `copy_sent`: the watched Sent folder would
    record each copy, and most tests count the messages recorded."""
    directory.mkdir(parents=True, exist_ok=True)
    store_url = store_url or f"sqlite:///{directory}/mailbridge.sqlite3"
    path = directory / "mailbridge.toml"
    path.write_text(f"""
[support]
address = "support@example.com"
aliases = ["help@example.com"]
name = "Example Support"
timezone = "Europe/Berlin"

[[agents]]
name = "Dana Whitfield"
email = "dana@example.com"

[[agents]]
name = "Sam Okafor"
email = "sam@example.com"

[sla]
first_response = "4h"
{extra_sla}

[rules]
{extra_rules}

[imap]
host = "{dovecot.host}"
port = {dovecot.tls_port if imap_tls == "implicit" else dovecot.port}
tls = "{imap_tls}"
username = "{dovecot.username}"
password_file = "{dovecot.password_file}"
read_timeout = "20s"
copy_sent = {str(copy_sent).lower()}
{extra_imap}

[smtp]
host = "{smtp.host}"
port = {smtp.port}
tls = "none"
retry_initial = "1s"
retry_max = "2s"
{extra_smtp}

[store]
url = "{store_url}"
{extra_store}

[http]
listen = "127.0.0.1:{free_port()}"
{extra_http}

[daemon]
state_dir = "{directory}"
shutdown_timeout = "5s"
{extra}
""", encoding="utf-8")
    return path


class Daemon:
    """`python -m mailbridge run --config PATH` as a child process, logging to a file."""

    def __init__(self, config: Path, *, env: dict[str, str] | None = None,
                 source: Path = REPO) -> None:
        self.config = config
        self.env = env or {}
        self.source = source
        """The source tree whose `mailbridge` package runs (another checkout, for A/B)."""
        self.log_path = config.parent / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None
        text = config.read_text(encoding="utf-8")
        self.listen = text.split('listen = "', 1)[1].split('"', 1)[0]
        self.store_url = text.split('url = "', 1)[1].split('"', 1)[0]

    def start(self, timeout: float = 20.0) -> Daemon:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mailbridge", "run", "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.source,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        wait_for(self.healthy, timeout=timeout,
                 message=lambda: f"daemon not healthy; log:\n{self.log()}")
        return self

    def healthy(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"daemon exited early; log:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"http://{self.listen}/healthz", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{self.listen}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample from /metrics (0.0 when absent)."""
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            base, _, rest = key.partition("{")
            found = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if base == name and found == wanted:
                return float(value)
        return 0.0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send `sig` and wait for the exit; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self.process = None
        return code

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") \
            if self.log_path.exists() else ""

    def store(self) -> Store:
        """The daemon's store, opened read-write from the test (SQLite allows both)."""
        return Store.open(self.store_url)

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.stop()


def maildir_deliver(dovecot: Dovecot, raw: bytes, name: str, folder: str = "") -> Path:
    """Deliver `raw` into the INBOX Maildir (or an existing `folder`'s) directly, as an MDA
    does (Dovecot may be down), making the INBOX's tmp, new and cur first if nobody opened it
    yet (a daemon healthy and stopped before its watcher got there)."""
    owner = dovecot.mail_dir.stat()
    root = dovecot.mail_dir / f".{folder}" if folder else dovecot.mail_dir  # Maildir++
    for part in ("tmp", "new", "cur"):
        if not (root / part).is_dir():
            (root / part).mkdir(parents=True, exist_ok=True)
            os.chown(root / part, owner.st_uid, owner.st_gid)
    path = root / "new" / name
    tmp = root / "tmp" / name
    tmp.write_bytes(raw)
    os.chown(tmp, owner.st_uid, owner.st_gid)
    tmp.rename(path)
    return path


def run_service(service: Service, scenario: Callable[[Service], Awaitable[None]]) -> None:
    """Start `service` on a new event loop in this process, run `scenario`, always shut down."""
    async def main() -> None:
        await service.startup()
        try:
            await scenario(service)
        finally:
            service.request_stop()
            await service.shutdown()

    asyncio.run(main())
