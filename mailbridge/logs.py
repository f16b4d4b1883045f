"""Logging: one record per outcome with `key=value` fields, to stdout or to the journal.

Public API: `setup(level, *, log_format, journal, ...)`, `set_level(level)`,
`handler(...) -> logging.Handler`, `under_journald(stream, environ) -> bool`,
`fields(**kv) -> Fields`, `redact(text) -> str`, `JOURNAL_SOCKET`.

Where the records go:

- **A terminal, a file or a pipe** (no `$JOURNAL_STREAM`, or one that names another file):
  each record is a line on stdout that starts with its time (RFC 3339, UTC, milliseconds);
  a traceback's lines follow the record's line.
- **journald** (stdout is the stream systemd named in `$JOURNAL_STREAM`): each record is
  one journal entry sent over journald's native protocol, at its priority, with the whole
  traceback inside its MESSAGE, so `journalctl -p err` shows all of it. The journal keeps
  the time. When the journal socket cannot be used, the record goes to stdout as before,
  with the `<N>` priority prefix on each of its lines.
- `log_format="json"` makes each record one JSON object: time, level, logger, the message's
  words before its `fields()` as topic, event and the other fields as values, and traceback
  after an exception; a library's record has its message as event. Under journald that
  object is the entry's MESSAGE, for pipelines that parse it.

Info and above carry ids, counts, durations and outcomes only; addresses,
names and subjects are for debug level, and credentials for no level at all.
"""

from __future__ import annotations

import array
import errno
import fcntl
import json
import logging
import math
import os
import re
import socket
import struct
import sys
import time
from collections.abc import Mapping
from typing import Literal, TextIO

LogFormat = Literal["text", "json"]

JOURNAL_SOCKET = "/run/systemd/journal/socket"
"""Where journald listens for its native protocol (`systemd.journal-fields(7)`)."""

IDENTIFIER = "mailbridge"

_PRIORITY = {  # syslog(3) priorities; NOTSET and custom levels round down to the next
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def _priority(levelno: int) -> int:
    return next((p for level, p in _PRIORITY.items() if levelno >= level), 7)


_NEEDS_QUOTES = re.compile(r'[ "=\n\r\t]')


def _quote(value: object) -> str:
    text = str(value)
    if text == "" or _NEEDS_QUOTES.search(text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


_ADDRESS = re.compile(r"[^\s<>\"'(),;:]+@[^\s<>\"'(),;:]+")


def redact(text: str) -> str:
    """Hide email addresses in text that came from a server, such as an SMTP reply."""
    return _ADDRESS.sub("<address>", text)


class Fields(str):
    """Keyword fields rendered as logfmt text, keeping the values for the JSON format."""

    values: dict[str, object]

    def __new__(cls, values: Mapping[str, object]) -> Fields:
        kept = {key: value for key, value in values.items() if value is not None}
        self = super().__new__(cls, " ".join(f"{k}={_quote(v)}" for k, v in kept.items()))
        self.values = kept
        return self


def fields(**kv: object) -> Fields:
    """Render keyword fields as logfmt: `a=1 b="two words"`; None values are left out."""
    return Fields(kv)


def under_journald(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether `stream` is the connection to the journal that systemd names in $JOURNAL_STREAM.

    systemd sets `$JOURNAL_STREAM` to `device:inode` of that connection; a stream with
    another device or inode (a shell redirection, a child with its own stdout) is not the
    journal even though the variable was inherited (`systemd.exec(5)`)."""
    expected = environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # closed, or no file behind it (StringIO)
        return False
    return expected == f"{stat.st_dev}:{stat.st_ino}"


def _timestamp(record: logging.LogRecord) -> str:
    """`2026-12-07T08:15:02.123Z`: RFC 3339, UTC, milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) \
        + f".{int(record.msecs):03d}Z"


def _json_value(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or Infinity
    return value if isinstance(value, bool | int | float | str) else str(value)


class _Formatter(logging.Formatter):
    """One record as text (`level logger message`) or as one JSON object.

    `timestamp` starts the text with the record's time; `prefix` puts the syslog `<N>`
    priority in front of every line, for journald's stream transport."""

    def __init__(self, log_format: LogFormat, *, timestamp: bool, prefix: bool) -> None:
        super().__init__()
        self.log_format = log_format
        self.timestamp = timestamp
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        text = self._json(record) if self.log_format == "json" else self._text(record)
        if self.prefix:
            mark = f"<{_priority(record.levelno)}>"
            text = "\n".join(mark + line for line in text.split("\n"))
        return text

    def _text(self, record: logging.LogRecord) -> str:
        stamp = _timestamp(record) + " " if self.timestamp else ""
        line = f"{stamp}{record.levelname.lower()} {record.name} {record.getMessage()}"
        trace = self._traceback(record)
        return f"{line}\n{trace}" if trace else line

    def _json(self, record: logging.LogRecord) -> str:
        topic, values = _split(record)
        entry: dict[str, object] = {"time": _timestamp(record),
                                    "level": record.levelname.lower(), "logger": record.name}
        if "event" not in values:
            entry["event"] = topic
        elif topic:
            entry["topic"] = topic
        for key, value in values.items():
            entry[f"field_{key}" if key in entry or key == "traceback" else key] = \
                _json_value(value)
        if trace := self._traceback(record):
            entry["traceback"] = trace
        return json.dumps(entry)

    def _traceback(self, record: logging.LogRecord) -> str:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        parts = [record.exc_text or "", self.formatStack(record.stack_info or "")]
        return "\n".join(part for part in parts if part)


def _split(record: logging.LogRecord) -> tuple[str, dict[str, object]]:
    """The record's message without its `fields()`, and the fields' values.

    `log.info("ack %s", fields(event="sent"))` gives `("ack", {"event": "sent"})`; a
    library's record without fields gives its whole message and no values."""
    args = record.args if isinstance(record.args, tuple) else ()
    found = [arg for arg in args if isinstance(arg, Fields)]
    if not found:
        return record.getMessage(), {}
    rest = tuple("" if isinstance(arg, Fields) else arg for arg in args)
    text = str(record.msg) % rest if rest else str(record.msg)
    return " ".join(text.split()), {k: v for arg in found for k, v in arg.values.items()}


def _journal_field(key: str, value: str) -> bytes:
    """`KEY=value\\n`, or for a value with a newline `KEY\\n` + 64-bit LE length + value +
    `\\n` (systemd's JOURNAL_NATIVE_PROTOCOL)."""
    data = value.encode("utf-8", "backslashreplace")
    if b"\n" in data:
        return key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return key.encode() + b"=" + data + b"\n"


class _JournalHandler(logging.Handler):
    """Each record as one datagram on journald's native socket.

    Like `sd_journal_sendv()`, the socket is addressed on every send (it survives a
    journald restart), and an entry too big for one datagram travels in a sealed memfd.
    A record that cannot be sent goes to `fallback` instead."""

    def __init__(self, path: str, formatter: logging.Formatter,
                 fallback: logging.Handler) -> None:
        super().__init__()
        self.path = path
        self.setFormatter(formatter)
        self.fallback = fallback
        self.sock: socket.socket | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._send(self._entry(record))
        except OSError:
            self.fallback.handle(record)
        except Exception:
            self.handleError(record)

    def _entry(self, record: logging.LogRecord) -> bytes:
        return b"".join(_journal_field(key, value) for key, value in (
            ("MESSAGE", self.format(record)),
            ("PRIORITY", str(_priority(record.levelno))),
            ("SYSLOG_IDENTIFIER", IDENTIFIER),
            ("LOGGER", record.name),
            ("CODE_FILE", record.pathname),
            ("CODE_LINE", str(record.lineno)),
            ("CODE_FUNC", record.funcName),
        ))

    def _send(self, entry: bytes) -> None:
        if self.sock is None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # journald's own advice: a big send buffer delays blocking (capped by the kernel).
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        try:
            self.sock.sendto(entry, self.path)
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
            self._send_memfd(entry)

    def _send_memfd(self, entry: bytes) -> None:
        assert self.sock is not None
        fd = os.memfd_create("mailbridge-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            with open(fd, "wb", closefd=False) as memfd:
                memfd.write(entry)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                        | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
            self.sock.sendmsg(
                [], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))],
                0, self.path)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.fallback.close()
        super().close()


def handler(*, log_format: LogFormat = "text", stream: TextIO | None = None,
            journal: bool = False, journal_socket: str = JOURNAL_SOCKET) -> logging.Handler:
    """The handler that writes records to `stream` (stdout), or to the journal.

    With `journal` the records go to `journal_socket` over journald's native protocol, and
    to `stream` with a `<N>` priority on every line when the socket cannot be used."""
    out = stream or sys.stdout
    if not journal:
        plain = logging.StreamHandler(out)
        plain.setFormatter(_Formatter(log_format, timestamp=True, prefix=False))
        return plain
    fallback = logging.StreamHandler(out)
    fallback.setFormatter(_Formatter(log_format, timestamp=False, prefix=True))
    return _JournalHandler(journal_socket,
                           _Formatter(log_format, timestamp=False, prefix=False), fallback)


def setup(level: str = "info", *, log_format: LogFormat = "text", stream: TextIO | None = None,
          journal: bool = False, journal_socket: str = JOURNAL_SOCKET) -> None:
    """Send every log record through `handler(...)`, replacing the root logger's handlers."""
    root = logging.getLogger()
    root.handlers[:] = [handler(log_format=log_format, stream=stream, journal=journal,
                                journal_socket=journal_socket)]
    # No format of ours shows the process or thread: records need not look them up (the
    # logging HOWTO's "Optimization"), a fifth of the cost of a line.
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    set_level(level)


def set_level(level: str) -> None:
    """Log records at `level` and above ("debug" ... "error"); libraries from warning."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    # Libraries log peers and commands at info; we log outcomes ourselves.
    for noisy in ("mail.log", "imapclient", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
