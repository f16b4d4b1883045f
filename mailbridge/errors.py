"""The one exception tree of mailbridge.

    MailbridgeError
    ├── ConfigError      file and problems; printed without a traceback, exit 78
    ├── TemplateError    template name and line
    ├── StoreError       [store] url cannot be used, or its schema does not fit this code;
    │                    one line, exit 78 (73 where the SQLite file's folder cannot be made)
    ├── BackupError      `mailbridge backup` cannot write its copy, or the copy is damaged
    ├── NoInputError     a file or folder to read is not there (`replay`); exit 66
    ├── RefusedError     an agent's submission refused for `problems` they can mend (a
    │                    wrong command); nothing of it is recorded or sent
    ├── TransientError   retried with backoff: IMAP drop, SMTP 4xx, database busy
    │   └── StoreUnavailableError  the database is down, restarting or cut us off
    └── PermanentError   recorded, never retried: SMTP 5xx, unparseable mail
        └── DeliveryUnknownError  the connection went after the end of DATA: the
                                  server may have the message; never sent again

Adapters in `mailbridge.io` translate library errors into these with
`raise ... from exc`; nothing above `io/` catches library exceptions.
"""

from __future__ import annotations

EX_CONFIG = 78
"""sysexits.h EX_CONFIG: the configuration is wrong; systemd must not restart."""
EX_CANTCREAT = 73
"""sysexits.h EX_CANTCREAT: a file or folder the user named cannot be created."""
EX_NOINPUT = 66
"""sysexits.h EX_NOINPUT: an input file or folder does not exist or cannot be read."""
EX_DATAERR = 65
"""sysexits.h EX_DATAERR: the data read was wrong (a backup that fails its check)."""
EX_IOERR = 74
"""sysexits.h EX_IOERR: reading or writing a file failed."""
EX_TEMPFAIL = 75
"""sysexits.h EX_TEMPFAIL: a server did not answer; the same command may work later."""


class MailbridgeError(Exception):
    """Base of every error mailbridge raises on purpose."""


class ConfigError(MailbridgeError):
    """A configuration file cannot be used; `problems` lists every reason at once."""

    def __init__(self, file: str, problems: list[str]) -> None:
        self.file = file
        self.problems = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"{self.file}: {count} {noun}"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


class TemplateError(MailbridgeError):
    """A template cannot be loaded or rendered."""


class StoreError(MailbridgeError):
    """The store cannot be used as it is: `[store] url` names no usable database, or its
    schema is not the one this code knows. The message is one line that names the url
    (password masked) and the reason; `exit_code` is what the command exits with."""

    def __init__(self, message: str, exit_code: int = EX_CONFIG) -> None:
        self.exit_code = exit_code
        super().__init__(message)


class BackupError(MailbridgeError):
    """A backup could not be written (exit 73 where DEST cannot be created or exists,
    74 when writing fails) or its copy failed `PRAGMA integrity_check` (65); nothing is
    left at DEST then."""

    def __init__(self, message: str, exit_code: int) -> None:
        self.exit_code = exit_code
        super().__init__(message)


class NoInputError(MailbridgeError):
    """An input the user named is not there; the message names it, exit 66."""

    exit_code = EX_NOINPUT


class RefusedError(MailbridgeError):
    """A relayed message refused as a whole; `problems` says why, one line each."""

    def __init__(self, problems: tuple[str, ...]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class TransientError(MailbridgeError):
    """A failure that is expected to pass: retry with backoff."""


class StoreUnavailableError(TransientError):
    """The database could not be reached or dropped the connection; nothing was committed
    that the caller did not see committed, so the work can be done again."""


class PermanentError(MailbridgeError):
    """A failure that will not pass by retrying: record it and move on."""


class DeliveryUnknownError(PermanentError):
    """The server may or may not have accepted the message: the connection timed out or
    closed after the final "." of DATA, before its reply. Sending it again could give the
    customer two copies, so the item is recorded `unknown` and never retried."""
