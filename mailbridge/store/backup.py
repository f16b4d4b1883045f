"""A consistent copy of a SQLite store, taken while the daemon goes on writing to it.

Public API: `Copy`, `backup(store, dest, overwrite=False) -> Copy`,
`pg_dump_command(url, dest) -> str`.

A file copy of a store in WAL mode can be torn: the database file and its -wal file are
two files, written and checkpointed while `cp` reads them. SQLite's online backup API
instead copies every page as one read transaction sees it, WAL frames included: the
snapshot of what was committed when it began, while writers go on (in WAL mode a reader
blocks no writer), and nothing of a transaction still open. The copy is written beside
DEST under a temporary name (mode 0600: it holds customers' mail), made one self-contained
file (journal_mode DELETE), checked with `PRAGMA integrity_check`, counted, synced and only
then renamed to DEST; a failure leaves nothing at DEST.

PostgreSQL has its own tools: `pg_dump_command` says how to call pg_dump for a url.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from mailbridge.errors import EX_CANTCREAT, EX_DATAERR, EX_IOERR, BackupError
from mailbridge.store import access
from mailbridge.store.db import Store


@dataclass(frozen=True)
class Copy:
    """A backup written: where, its size in bytes, and what it holds."""

    path: Path
    size: int
    schema_version: int
    messages: int
    threads: int
    outbox: int


def backup(store: Store, dest: Path, *, overwrite: bool = False) -> Copy:
    """Copy the SQLite `store` to the file `dest` and check the copy; return what it holds.

    Raises `BackupError`: DEST exists (unless `overwrite`), is a folder or its folder is
    missing or not writable (73); writing failed (74); the copy is damaged (65).
    """
    if access.sqlite_file(str(store.engine.url)) is None:
        raise ValueError("only a SQLite file store is backed up this way")
    dest = dest.absolute()
    if dest.is_dir():
        raise BackupError(f"{dest} is a folder: name the file to write", EX_CANTCREAT)
    if not overwrite and (dest.exists() or dest.is_symlink()):
        raise BackupError(f"{dest} exists already", EX_CANTCREAT)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    except OSError as exc:
        raise BackupError(f"cannot create {dest}: {exc.strerror or exc}", EX_CANTCREAT) \
            from exc
    os.close(fd)
    partial = Path(name)
    try:
        copy = _write(store, partial)
        _sync(partial)
        _put_in_place(partial, dest, overwrite=overwrite)
    except BaseException:
        for leftover in (partial, partial.with_name(partial.name + "-journal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        raise
    _sync(dest.parent)
    return Copy(dest, dest.stat().st_size, *copy)


def _write(store: Store, partial: Path) -> tuple[int, int, int, int]:
    """Fill `partial` with the store's pages and check it: (schema version, messages,
    threads, outbox items)."""
    try:
        target = sqlite3.connect(partial, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot write {partial}: {exc}", EX_IOERR) from exc
    try:
        with store.engine.connect() as conn:
            source = conn.connection.driver_connection
            assert isinstance(source, sqlite3.Connection)
            # All pages in one step: one read transaction, so one snapshot. Steps of a few
            # pages would start over whenever the daemon commits between two of them.
            source.backup(target, pages=-1)
        target.execute("PRAGMA journal_mode=DELETE")  # one file, without -wal and -shm
        found = [row[0] for row in target.execute("PRAGMA integrity_check(20)")]
        if found != ["ok"]:
            raise BackupError(f"the copy fails PRAGMA integrity_check: {'; '.join(found)}",
                              EX_DATAERR)
        version = target.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        counts = [target.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                  for table in ("messages", "threads", "outbox")]
        return int(version), counts[0], counts[1], counts[2]
    except sqlite3.Error as exc:
        raise BackupError(f"cannot write {partial}: {exc}", EX_IOERR) from exc
    finally:
        target.close()


def _put_in_place(partial: Path, dest: Path, *, overwrite: bool) -> None:
    """Rename the checked copy to DEST: replacing it when `overwrite`, else only if DEST
    is still absent (a hard link fails rather than replace)."""
    try:
        if overwrite:
            os.replace(partial, dest)
            return
        try:
            os.link(partial, dest)
        except FileExistsError as exc:
            raise BackupError(f"{dest} exists already", EX_CANTCREAT) from exc
        except OSError:  # a file system without hard links
            if dest.exists():
                raise BackupError(f"{dest} exists already", EX_CANTCREAT) from None
            os.replace(partial, dest)
            return
        partial.unlink()
    except OSError as exc:
        raise BackupError(f"cannot write {dest}: {exc.strerror or exc}", EX_IOERR) from exc


def _sync(path: Path) -> None:
    """fsync a file or a folder (the rename), so that the copy survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pg_dump_command(url: str, dest: str = "DEST") -> str:
    """A pg_dump command line that backs up the PostgreSQL database of `url` to `dest`;
    the password is left out (pg_dump asks for it, or reads ~/.pgpass or $PGPASSWORD)."""
    parsed = make_url(url)
    target = URL.create("postgresql", username=parsed.username, host=parsed.host,
                        port=parsed.port, database=parsed.database, query=parsed.query
                        ).render_as_string(hide_password=False)
    return f"pg_dump --format=custom --file={shlex.quote(dest)} {shlex.quote(target)}"
