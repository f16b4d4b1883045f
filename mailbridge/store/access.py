"""Whether a `[store] url` can be used, and what to tell the operator when it cannot.

Public API: `sqlite_file(url)`, `make_directory(url)`, `check_location(url, write=...)`,
`unusable(url, exc)`, `transient(url, exc)`, `require_schema(url, found, upgrading=...)`,
`problems(url)`,
`describe(url, reason)`, `driver_reason(exc)`.

SQLAlchemy's and the drivers' exceptions stop here: what the commands see is a
`StoreError`, one line that names `[store] url` (password masked) and the reason, exit 78,
or 73 (EX_CANTCREAT) where the SQLite file's folder cannot be created; or, where the
server did not answer yet (`transient`), a `StoreUnavailableError` that `run` waits out.
`Store.open` uses these; check-config calls `problems`, which changes nothing on disk or in
the database.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from mailbridge.config.values import mask_url
from mailbridge.errors import EX_CANTCREAT, StoreError
from mailbridge.store.engine import engine_for
from mailbridge.store.migrations import LATEST, current_version

NO_STORE = "there is no mailbridge store there yet: start `mailbridge run` once to create it"

CHECK_TIMEOUT = 5
"""Seconds check-config waits for a PostgreSQL server to answer."""


def describe(url: str, reason: str) -> str:
    """`[store] url "URL": reason`, with the password masked."""
    return f'[store] url "{mask_url(url)}": {reason}'


def driver_reason(exc: DBAPIError) -> str:
    """The driver's first line, without the statement and its parameters (they hold PII)."""
    text = str(exc.orig) if exc.orig is not None else type(exc).__name__
    return (text.strip().splitlines() or [type(exc).__name__])[0][:200]


_BUSY_SERVER = ("starting up", "shutting down", "in recovery mode", "too many clients",
                "too many connections", "not yet accepting connections")
"""What a PostgreSQL server says when it answers but asks to be tried again later."""


def transient(url: str, exc: DBAPIError) -> bool:
    """Whether `exc`, met opening the store at `url`, may pass by itself: PostgreSQL did not
    answer (refused, timed out, its name not resolvable yet at boot) or is starting up or
    full. A server that answered and refused (no such role or database, a wrong password)
    and every SQLite failure are the operator's to mend."""
    if sqlite_file(url) is not None or url.startswith("sqlite"):
        return False
    first = driver_reason(exc)
    if "FATAL:" not in first:
        return True
    return any(phrase in first for phrase in _BUSY_SERVER)


def unusable(url: str, exc: DBAPIError | ArgumentError | ValueError) -> StoreError:
    """The `StoreError` for a failure to parse, connect to or read the store at `url`."""
    if isinstance(exc, DBAPIError):
        reason = driver_reason(exc)
    else:
        reason = f"not a URL SQLAlchemy can use ({(str(exc).splitlines() or [''])[0]})"
    path = sqlite_file(url)
    if path is not None and reason == "file is not a database":
        reason = f"{path} is not a SQLite database"
    return StoreError(describe(url, reason))


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite store; None for PostgreSQL and for an in-memory database."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    name = parsed.database or ""
    if name in ("", ":memory:") or name.startswith("file:"):
        return None
    return Path(name)


def make_directory(url: str) -> None:
    """Create the folder of a SQLite store, and any missing parents, mode 0700.

    Raises `StoreError` with exit 73 where it cannot be created.
    """
    path = sqlite_file(url)
    if path is None:
        return
    missing = []
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile by someone else; a file there fails the next step
        except OSError as exc:
            raise StoreError(describe(url, f"cannot create the folder {folder}: "
                                           f"{exc.strerror or exc}"), EX_CANTCREAT) from exc


def check_location(url: str, *, write: bool) -> str | None:
    """Why the SQLite file of `url` cannot be opened (for writing when `write`), or None.

    Asks the file system first, for a clearer reason than SQLite's "unable to open database
    file". Nothing for PostgreSQL: only a connection tells.
    """
    path = sqlite_file(url)
    if path is None:
        return None
    folder = path.absolute().parent
    if path.is_dir():
        return f"{path} is a folder, not a SQLite file"
    if path.exists():
        if not os.access(path, os.R_OK | (os.W_OK if write else 0)):
            return f"{path} is not {'writable' if write else 'readable'} by this user"
        if write and not os.access(folder, os.W_OK | os.X_OK):
            return (f"the folder {folder} is not writable by this user (SQLite keeps "
                    f"{path.name}-wal and {path.name}-shm beside the file)")
        return None
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot create {path}: {existing} is not a folder"
    if existing == folder:
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"cannot create {path}: the folder {folder} is not writable by this user"
    elif not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot create the folder {folder}: {existing} is not writable by this user"
    return None


def require_schema(url: str, found: int, *, upgrading: bool) -> None:
    """Refuse a store whose schema version `found` this code cannot work on.

    Newer than the code: always (upgrade mailbridge). Older or none: unless `upgrading`
    (`run`, which migrates); the other commands read as they are and never migrate.
    """
    if found > LATEST:
        raise StoreError(describe(url, f"the store is at schema version {found}, this "
                                       f"mailbridge knows up to {LATEST}: upgrade mailbridge"))
    if upgrading or found == LATEST:
        return
    if found == 0:
        raise StoreError(describe(url, NO_STORE))
    raise StoreError(describe(url, f"the store is at schema version {found}, this mailbridge "
                                   f"needs {LATEST}: start `mailbridge run` once to upgrade it"))


def problems(url: str) -> list[str]:
    """check-config's view of `url`: whether `run` could open and migrate it, as lines
    naming `[store] url`; creates no folder or file and changes no database."""
    if not url.startswith(("sqlite", "postgresql")):
        return []  # the config's own validation has said so already
    reason = check_location(url, write=True)
    if reason is not None:
        return [describe(url, reason)]
    path = sqlite_file(url)
    if path is not None and not path.exists():
        return []  # `run` creates it
    if path is None and url.startswith("sqlite"):
        return []  # in memory
    try:
        engine = _inspection_engine(url, path)
    except (ArgumentError, ValueError) as exc:
        return [str(unusable(url, exc))]
    try:
        with engine.connect() as conn:
            found = current_version(conn)
        require_schema(url, found, upgrading=True)
    except (DBAPIError, ArgumentError, ValueError) as exc:
        return [str(unusable(url, exc))]
    except StoreError as exc:
        return [str(exc)]
    finally:
        engine.dispose()
    return []


def _inspection_engine(url: str, path: Path | None) -> Engine:
    """An engine that reads `url` without changing it: a SQLite file opened read-only,
    or PostgreSQL with a connect timeout."""
    if path is None:
        return engine_for(url, connect_timeout=CHECK_TIMEOUT)
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    return create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))
