"""PostgreSQL for tests and benchmarks: throw-away databases on the machine's server, and a
private cluster that a test may stop and restart.

Public API: `ADMIN_URL`, `server_answers()`, `scratch_database(prefix) -> url` (a context
manager), `drop_orphans()`, `PrivateCluster`. Imports no pytest, like ``tests/servers.py``.

The machine-wide server (socket and 127.0.0.1:5432, trust auth) is shared with other test
runs, so a test never restarts it: each test gets a database of its own, named after the
test process (``mbt_<pid>_<random>``) and dropped afterwards; databases of test processes
that died without dropping theirs are dropped by the next run. A test that needs to restart
PostgreSQL (the fault suite) starts a `PrivateCluster` of its own with ``initdb``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

from tests.servers import LOOPBACK, free_port, wait_for

ADMIN_URL = os.environ.get("MAILBRIDGE_TEST_POSTGRES",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
"""A superuser connection to a maintenance database of the server the tests may use."""

INSTALL_HINT = ("run the project's test command, `./scripts/test`, which installs and starts "
                "PostgreSQL, or point $MAILBRIDGE_TEST_POSTGRES at a server (superuser URL)")

_SCRATCH = re.compile(r"^mbt_(\d+)_[0-9a-f]+$")


def server_answers(url: str = ADMIN_URL) -> bool:
    """Tell whether the server at `url` accepts a connection right now."""
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def database_url(name: str, admin_url: str = ADMIN_URL) -> str:
    """`admin_url` with its database replaced by `name`."""
    base, _, _db = admin_url.rpartition("/")
    return f"{base}/{name}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drop_orphans(admin_url: str = ADMIN_URL) -> list[str]:
    """Drop the scratch databases of test processes that are gone; return their names."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        names = [row[0] for row in conn.execute("SELECT datname FROM pg_database")]
        dropped = []
        for name in names:
            match = _SCRATCH.match(name)
            if match and not _pid_alive(int(match.group(1))):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                dropped.append(name)
    return dropped


@contextlib.contextmanager
def scratch_database(admin_url: str = ADMIN_URL) -> Iterator[str]:
    """Create an empty database, yield its URL, and drop it (with any connections) after."""
    name = f"mbt_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(name, admin_url)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _bin_dir() -> Path:
    """The directory of initdb/postgres/pg_ctl of the newest installed PostgreSQL."""
    root = Path("/usr/lib/postgresql")
    versions = sorted((p for p in root.glob("*") if (p / "bin" / "initdb").exists()),
                      key=lambda p: int(p.name) if p.name.isdigit() else 0)
    if not versions:
        raise RuntimeError(f"no PostgreSQL server binaries under {root}; {INSTALL_HINT}")
    return versions[-1] / "bin"


class PrivateCluster:
    """A PostgreSQL cluster of our own in `directory`, on a free loopback port, trust auth.

    It runs as the ``postgres`` system user when the tests run as root (PostgreSQL refuses
    root), so `stop()`/`start()` are a real server restart that touches nothing shared.
    """

    def __init__(self, directory: Path | None = None) -> None:
        # Not under a test's tmp_path: the server user must be able to reach it.
        self.directory = Path(directory or tempfile.mkdtemp(prefix="mb-postgres-", dir="/tmp"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.log_path = self.directory / "postgres.log"
        self._bin = _bin_dir()
        self._as_root = os.geteuid() == 0

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    def url(self, database: str = "mailbridge") -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{database}"

    def _command(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if self._as_root else list(args)

    def init(self) -> PrivateCluster:
        """Create the cluster and a `mailbridge` database, and start it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            shutil.chown(self.directory, "postgres", "postgres")
        done = subprocess.run(self._command(str(self._bin / "initdb"), "-D", str(self.data),
                                            "-U", "postgres", "-A", "trust", "--no-sync",
                                            "-E", "UTF8", "--locale=C.UTF-8"),
                              capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.decode(errors='replace')}")
        (self.directory / "owner.pid").write_text(str(os.getpid()))
        self.start()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE mailbridge")
        return self

    @classmethod
    def remove_orphans(cls) -> list[Path]:
        """Stop and delete the clusters of test processes that died without doing so."""
        removed = []
        for directory in Path("/tmp").glob("mb-postgres-*"):
            try:
                owner = int((directory / "owner.pid").read_text())
            except (OSError, ValueError):
                continue
            if _pid_alive(owner):
                continue
            cluster = cls(directory)
            with contextlib.suppress(RuntimeError):
                cluster.stop()
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
        return removed

    def start(self, timeout: float = 20.0) -> None:
        options = (f"-p {self.port} -h {LOOPBACK} -k {self.directory} -c fsync=off "
                   "-c max_connections=200")
        self._pg_ctl("start", "-w", "-t", str(int(timeout)), "-l", str(self.log_path),
                     "-o", options)
        wait_for(lambda: server_answers(self.admin_url), timeout=timeout, interval=0.1,
                 message=lambda: f"private PostgreSQL did not start:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """A fast shutdown: active transactions are rolled back and clients cut off."""
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-w", "-t", str(int(timeout)), "-m", "fast")

    def _pg_ctl(self, *args: str) -> None:
        done = subprocess.run(self._command(str(self._bin / "pg_ctl"), "-D", str(self.data),
                                            *args),
                              capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl {args[0]} failed: {done.stderr.decode(errors='replace')}"
                               f"\n{self.log_tail()}")

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "<no log>"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
