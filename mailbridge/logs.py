"""Logging: one line per outcome, `key=value` fields, to stdout for journald.

Public API: `setup(level)`, `fields(**kv) -> str`.

Info and above carry ids, counts, durations and outcomes only; addresses,
names and subjects are for debug level, and credentials for no level at all.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

_SYSLOG_PREFIX = {
    logging.DEBUG: "<7>",
    logging.INFO: "<6>",
    logging.WARNING: "<4>",
    logging.ERROR: "<3>",
    logging.CRITICAL: "<2>",
}


def _quote(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\r\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


_ADDRESS = re.compile(r"[^\s<>\"'(),;:]+@[^\s<>\"'(),;:]+")


def redact(text: str) -> str:
    """Hide email addresses in text that came from a server, such as an SMTP reply."""
    return _ADDRESS.sub("<address>", text)


def fields(**kv: object) -> str:
    """Render keyword fields as logfmt: `a=1 b="two words"`; None values are left out."""
    return " ".join(f"{key}={_quote(value)}" for key, value in kv.items() if value is not None)


class _Formatter(logging.Formatter):
    def __init__(self, *, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        prefix = _SYSLOG_PREFIX.get(record.levelno, "<6>") if self.journal else ""
        line = f"{prefix}{record.levelname.lower()} {record.name} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup(level: str = "info", *, stream: TextIO | None = None, journal: bool = False) -> None:
    """Send every log record to `stream` (stdout) in the mailbridge line format."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(_Formatter(journal=journal))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries log peers and commands at info; we log outcomes ourselves.
    for noisy in ("mail.log", "imapclient", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
