"""The store as the commands meet it: the default state folder is made (mode 0700) by the
commands that open the store; a `[store] url` that cannot be used is one line naming it
(password masked), exit 78, or 73 where the folder cannot be made, in check-config too;
only `run` migrates, and every command refuses a schema newer than the code."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from mailbridge.cli import main
from mailbridge.store.db import Store
from mailbridge.store.engine import engine_for
from mailbridge.store.migrations import LATEST
from tests.configs import MAILBOX, MINIMAL
from tests.servers import free_port

REPO = Path(__file__).resolve().parent.parent
READERS = ("threads", "status", "backup")


def _config(directory: Path, url: str | None) -> Path:
    path = directory / "mailbridge.toml"
    store = f'\n[store]\nurl = "{url}"\n' if url is not None else ""
    path.write_text(MINIMAL + MAILBOX + store, encoding="utf-8")
    return path


def _argv(command: str, config: Path, directory: Path) -> list[str]:
    argv = [command, "--config", str(config)]
    return [*argv, str(directory / "copy.sqlite3")] if command == "backup" else argv


def _run(config: Path, *, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """`mailbridge run` as a process: it must end by itself, before dialling any server."""
    return subprocess.run([*prefix, sys.executable, "-m", "mailbridge", "run", "--config",
                           str(config)], capture_output=True, text=True, timeout=60, cwd=REPO,
                          check=False)


def _one_line(err: str, *wanted: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "sqlalchemy" not in err.lower(), err
    for part in wanted:
        assert part in lines[0], lines[0]
    return lines[0]


def _pg_url(admin_url: str, *, user: str = "", password: str = "", port: int | None = None,
            database: str = "postgres") -> str:
    base = admin_url.rpartition("/")[0]
    scheme, _, rest = base.partition("://")
    host = rest.rpartition("@")[2]
    if port is not None:
        host = f"{host.rpartition(':')[0]}:{port}"
    login = f"{user}:{password}@" if user else rest.rpartition("@")[0] + "@"
    return f"{scheme}://{login}{host}/{database}"


# -- the default state folder -------------------------------------------------------------


def test_the_default_state_folder_is_made_by_commands_that_open_the_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Without [store] url or [daemon] state_dir the store lives in $STATE_DIRECTORY:
    check-config makes nothing there; `threads` makes the folder (0700) and says that
    `run` creates the store; `run` does, and `threads` reads it."""
    state = tmp_path / "state" / "deeper"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    config = _config(tmp_path, None)

    assert main(["check-config", str(config)]) == 0
    assert not state.parent.exists(), "a config check makes no folder"
    capsys.readouterr()

    assert main(["threads", "--config", str(config)]) == 78
    _one_line(capsys.readouterr().err, "[store] url", str(state / "mailbridge.sqlite3"),
              "start `mailbridge run` once to create it")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert not (state / "mailbridge.sqlite3").exists(), "a reader creates no store"

    Store.open(f"sqlite:///{state / 'mailbridge.sqlite3'}").close()  # as `run` opens it
    assert main(["threads", "--config", str(config)]) == 0
    assert "no threads" in capsys.readouterr().out


def test_run_makes_the_store_folder_with_mode_0700(tmp_path: Path) -> None:
    """`run` (its store: `Store.open`) makes every missing folder on the way, mode 0700."""
    path = tmp_path / "a" / "b" / "mailbridge.sqlite3"
    Store.open(f"sqlite:///{path}").close()
    assert path.is_file()
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


# -- a [store] url that cannot be used -----------------------------------------------------


@pytest.fixture
def junk_file(tmp_path: Path) -> Path:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is no database, " * 100)
    return path


def test_a_folder_that_cannot_be_made_is_one_line_and_73(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A store under a plain file: `run`, `threads`, `status` and `backup` exit 73 (EX_CANTCREAT)
    and check-config 78, each with one line naming [store] url and the folder."""
    (tmp_path / "plain").write_text("not a folder")
    config = _config(tmp_path, f"sqlite:///{tmp_path}/plain/state/mailbridge.sqlite3")
    for command in READERS:
        assert main(_argv(command, config, tmp_path)) == 73, command
        _one_line(capsys.readouterr().err, "[store] url", "cannot create the folder",
                  f"{tmp_path}/plain/state")
    assert main(["check-config", str(config)]) == 78
    err = capsys.readouterr().err
    assert f"[store] url \"sqlite:///{tmp_path}/plain/state/mailbridge.sqlite3\": cannot " \
           f"create {tmp_path}/plain/state/mailbridge.sqlite3: {tmp_path}/plain is not a " \
           "folder" in err
    done = _run(config)
    assert done.returncode == 73, done.stderr
    _one_line(done.stderr, "[store] url", "cannot create the folder")


def test_a_file_that_is_not_a_database_is_one_line_and_78(
        tmp_path: Path, junk_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, f"sqlite:///{junk_file}")
    for command in (*READERS, "check-config"):
        argv = ["check-config", str(config)] if command == "check-config" else \
            _argv(command, config, tmp_path)
        assert main(argv) == 78, command
        err = capsys.readouterr().err
        assert f"[store] url \"sqlite:///{junk_file}\": {junk_file} is not a SQLite database" \
            in err, err
        if command != "check-config":
            _one_line(err)
    done = _run(config)
    assert done.returncode == 78
    _one_line(done.stderr, "is not a SQLite database")
    assert junk_file.read_bytes().startswith(b"this is no database"), "left as it was"


@pytest.mark.parametrize("case", ["refused", "role", "database"])
def test_a_postgresql_store_that_cannot_be_reached_is_one_line_and_78(
        case: str, tmp_path: Path, _postgres_server: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Nobody listening, a login it refuses, a database it does not have: one line with
    the server's reason and the password masked, from every command and check-config.
    Nobody listening may pass by itself: the commands exit 75 (try again), check-config
    still names it, and `run` waits for the server (tests/io/test_store_outage_start.py)."""
    url, reason = {
        "refused": (_pg_url(_postgres_server, user="mb", password="s3cret-pw",
                            port=free_port()), "Connection refused"),
        "role": (_pg_url(_postgres_server, user="nosuchrole", password="s3cret-pw"),
                 'role "nosuchrole" does not exist'),
        "database": (_pg_url(_postgres_server, database="nosuchdb"),
                     'database "nosuchdb" does not exist'),
    }[case]
    config = _config(tmp_path, url)
    for command in ("threads", "status", "check-config"):
        argv = ["check-config", str(config)] if command == "check-config" else \
            _argv(command, config, tmp_path)
        expected = 75 if case == "refused" and command != "check-config" else 78
        assert main(argv) == expected, command
        err = capsys.readouterr().err
        assert "[store] url" in err and reason in err, err
        assert "s3cret-pw" not in err
        assert "Traceback" not in err
    if case == "refused":
        return
    done = _run(config)
    assert done.returncode == 78, done.stderr
    line = _one_line(done.stderr, "[store] url", reason)
    assert "s3cret-pw" not in done.stderr + done.stdout
    if case != "database":
        assert ":***@" in line


UNPRIVILEGED = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
"""Root without its capabilities: the file modes bind it as any user (the tests run as root)."""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="drops root's capabilities with setpriv")
def test_an_unwritable_store_is_one_line_and_78(tmp_path: Path) -> None:
    """A store file (or its folder) the daemon's user may not write: `run` and check-config
    say so in one line instead of SQLite's "attempt to write a readonly database"."""
    store = tmp_path / "store"
    Store.open(f"sqlite:///{store}/mailbridge.sqlite3").close()
    store.chmod(0o755)
    for path in (store, *store.iterdir()):
        os.chown(path, 65534, 65534)  # nobody's: root without capabilities may only read
    config = _config(tmp_path, f"sqlite:///{store}/mailbridge.sqlite3")
    done = _run(config, prefix=UNPRIVILEGED)
    assert done.returncode == 78, done.stderr
    _one_line(done.stderr, "[store] url", "mailbridge.sqlite3 is not writable by this user")
    check = subprocess.run([*UNPRIVILEGED, sys.executable, "-m", "mailbridge", "check-config",
                            str(config)], capture_output=True, text=True, timeout=60,
                           cwd=REPO, check=False)
    assert check.returncode == 78
    assert "mailbridge.sqlite3 is not writable by this user" in check.stderr

    fresh = _config(tmp_path, f"sqlite:///{store}/other.sqlite3")
    done = _run(fresh, prefix=UNPRIVILEGED)
    assert done.returncode == 78, done.stderr
    _one_line(done.stderr, f"cannot create {store}/other.sqlite3: the folder {store} is not "
              "writable by this user")


# -- schema versions -----------------------------------------------------------------------


def _set_version(url: str, version: int) -> None:
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO schema_version VALUES (:v, 'from the future', 'later')"),
                     {"v": version})
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.sqlite3"
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_a_store_newer_than_the_code_is_refused_by_every_command(
        any_store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A store a newer mailbridge has migrated: `run` does not run on it and the readers do
    not read it; each names both versions, and nothing is migrated back or forth."""
    Store.open(any_store_url).close()
    _set_version(any_store_url, LATEST + 2)
    config = _config(tmp_path, any_store_url)
    wanted = (f"the store is at schema version {LATEST + 2}, this mailbridge knows up to "
              f"{LATEST}: upgrade mailbridge")
    for command in ("threads", "status"):
        assert main(_argv(command, config, tmp_path)) == 78, command
        _one_line(capsys.readouterr().err, "[store] url", wanted)
    assert main(["check-config", str(config)]) == 78
    assert wanted in capsys.readouterr().err
    done = _run(config)
    assert done.returncode == 78, done.stderr
    _one_line(done.stderr, "[store] url", wanted)
    if any_store_url.startswith("sqlite"):
        assert main(_argv("backup", config, tmp_path)) == 78
        _one_line(capsys.readouterr().err, wanted)
        assert not (tmp_path / "copy.sqlite3").exists()
    engine = engine_for(any_store_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT MAX(version) FROM schema_version")).scalar() == \
            LATEST + 2
    engine.dispose()


def test_readers_neither_create_nor_upgrade_a_store(
        any_store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty database, then one a version behind: `threads` and `status` refuse and leave
    it as it was, telling the operator to start `run` once; `run` would upgrade it."""
    config = _config(tmp_path, any_store_url)
    for command in ("threads", "status"):
        assert main(_argv(command, config, tmp_path)) == 78
        _one_line(capsys.readouterr().err, "start `mailbridge run` once to create it")
    if any_store_url.startswith("sqlite"):
        assert not Path(any_store_url.removeprefix("sqlite:///")).exists()
    else:
        engine = engine_for(any_store_url)
        with engine.connect() as conn:
            assert inspect(conn).get_table_names() == [], "no table was created"
        engine.dispose()

    Store.open(any_store_url).close()
    engine = engine_for(any_store_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM schema_version WHERE version = :v"), {"v": LATEST})
    engine.dispose()
    for command in ("threads", "status"):
        assert main(_argv(command, config, tmp_path)) == 78
        _one_line(capsys.readouterr().err, f"the store is at schema version {LATEST - 1}, "
                  f"this mailbridge needs {LATEST}: start `mailbridge run` once to upgrade it")
    assert main(["check-config", str(config)]) == 0, "run would upgrade it: fine"
    engine = engine_for(any_store_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT MAX(version) FROM schema_version")).scalar() == \
            LATEST - 1, "no reader migrated it"
    engine.dispose()
