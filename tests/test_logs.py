"""Log records on a terminal or file (timestamped text or JSON) and in journald.

journald's native protocol is tested against a unix datagram socket of the test's own in a
temporary directory, read the way journald reads it: one datagram per entry, `KEY=value` or
`KEY` + 64-bit length + bytes, and a sealed memfd for an entry too big for one datagram.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import re
import select
import socket
import struct
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailbridge import logs
from mailbridge.logs import fields
from tests.daemon import Daemon, write_config
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer, wait_for

STAMP = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"
LINE = re.compile(rf"({STAMP}) (debug|info|warning|error|critical) \S+ ")

SEALED = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL

Attach = Callable[[logging.Handler], logging.Logger]


@pytest.fixture
def attach() -> Iterator[Attach]:
    """A logger of the test's own that writes through the handler given, and only there."""
    logger = logging.getLogger("mailbridge.test_logs")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)

    def use(handler: logging.Handler) -> logging.Logger:
        logger.handlers[:] = [handler]
        return logger

    yield use
    for handler in logger.handlers:
        handler.close()
    logger.handlers[:] = []


def failing(log: logging.Logger, msg: str, *args: object) -> None:
    """Log `msg` with the traceback of a ValueError raised two calls deep."""
    def inner() -> None:
        raise ValueError("boom")

    try:
        inner()
    except ValueError:
        log.exception(msg, *args)


# -- outside journald -------------------------------------------------------------------------


def test_every_line_starts_with_its_utc_time_in_milliseconds(attach: Attach) -> None:
    out = io.StringIO()
    log = attach(logs.handler(stream=out))
    before = datetime.now(UTC)
    log.info("ack %s", fields(event="sent", thread="K7Q2MX", kind="ack"))
    log.warning("relay %s", fields(event="login_locked", peer="192.0.2.7"))
    log.error("plain message from a library: %d retries", 3)  # stamped the same way
    after = datetime.now(UTC)

    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    for line in lines:
        match = LINE.match(line)
        assert match, line
        stamp = datetime.strptime(match[1], "%Y-%m-%dT%H:%M:%S.%f%z")
        assert before - timedelta(milliseconds=1) <= stamp <= after, line
    assert lines[0].endswith(" info mailbridge.test_logs ack event=sent thread=K7Q2MX kind=ack")
    assert lines[2].endswith("error mailbridge.test_logs plain message from a library: 3 retries")


def test_the_timestamp_is_rfc3339_utc_whatever_the_local_zone() -> None:
    """A record's time as UTC with milliseconds: `2026-12-07T08:15:02.123Z`."""
    created = datetime(2026, 12, 7, 8, 15, 2, 123000, tzinfo=UTC).timestamp()
    record = logging.makeLogRecord({"name": "mailbridge.x", "levelno": logging.INFO,
                                    "levelname": "INFO", "msg": "service %s",
                                    "args": (fields(event="ready"),),
                                    "created": created, "msecs": 123.0})
    out = io.StringIO()
    handler = logs.handler(stream=out)
    handler.handle(record)
    assert out.getvalue() == "2026-12-07T08:15:02.123Z info mailbridge.x service event=ready\n"


def test_a_traceback_follows_its_stamped_record(attach: Attach) -> None:
    out = io.StringIO()
    log = attach(logs.handler(stream=out))
    failing(log, "ack %s", fields(event="send_error", thread="K7Q2MX"))
    first, *rest = out.getvalue().splitlines()
    assert LINE.match(first) and first.endswith("ack event=send_error thread=K7Q2MX")
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: boom"


def test_json_lines_parse_and_carry_the_fields_as_values(attach: Attach) -> None:
    out = io.StringIO()
    log = attach(logs.handler(stream=out, log_format="json"))
    log.info("ack %s", fields(event="sent", thread="K7Q2MX", attempt=2, took_s=0.25,
                              hint=None, detail='a "quoted" = value', ratio=float("nan"),
                              due_in=timedelta(seconds=3)))
    log.warning("a library's own message about %s", "something")
    failing(log, "ack %s", fields(event="send_error", thread="K7Q2MX", level="x"))

    sent, library, error = (json.loads(line) for line in out.getvalue().splitlines())
    assert sent == {"time": sent["time"], "level": "info", "logger": "mailbridge.test_logs",
                    "topic": "ack", "event": "sent", "thread": "K7Q2MX", "attempt": 2,
                    "took_s": 0.25, "detail": 'a "quoted" = value', "ratio": "nan",
                    "due_in": "0:00:03"}
    assert re.fullmatch(STAMP, sent["time"])
    assert library["event"] == "a library's own message about something"
    assert library["level"] == "warning" and "topic" not in library
    assert error["level"] == "error" and error["event"] == "send_error"
    assert error["field_level"] == "x", "a field never overwrites the record's own keys"
    assert error["traceback"].startswith("Traceback (most recent call last):\n")
    assert error["traceback"].endswith("ValueError: boom")


def test_fields_read_as_logfmt_and_keep_their_values() -> None:
    text = fields(event="sent", thread="K7Q2MX", hint=None, n=3, why="two words")
    assert text == 'event=sent thread=K7Q2MX n=3 why="two words"'
    assert text.values == {"event": "sent", "thread": "K7Q2MX", "n": 3, "why": "two words"}


# -- which stream is journald's ---------------------------------------------------------------


def test_journal_stream_must_name_the_very_stream(tmp_path: Path) -> None:
    """$JOURNAL_STREAM counts only when it is this stream's device:inode."""
    with (tmp_path / "out.log").open("w") as out:
        st = os.fstat(out.fileno())
        assert logs.under_journald(out, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not logs.under_journald(out, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not logs.under_journald(out, {"JOURNAL_STREAM": "8:12345"})
        assert not logs.under_journald(out, {"JOURNAL_STREAM": ""})
        assert not logs.under_journald(out, {})
    assert not logs.under_journald(io.StringIO(), {"JOURNAL_STREAM": "8:12345"})


# -- journald's native protocol ---------------------------------------------------------------


def parse_entry(data: bytes) -> dict[str, str]:
    """One journal entry as journald reads it; every field must appear once."""
    entry: dict[str, str] = {}
    while data:
        end = data.index(b"\n")
        head = data[:end]
        if b"=" in head:
            key, _, value = head.partition(b"=")
            data = data[end + 1:]
        else:
            key = head
            (size,) = struct.unpack("<Q", data[end + 1:end + 9])
            value = data[end + 9:end + 9 + size]
            assert data[end + 9 + size:end + 10 + size] == b"\n", "value ends in a newline"
            data = data[end + 10 + size:]
        assert key.decode() not in entry, key
        entry[key.decode()] = value.decode()
    return entry


class Journal:
    """A stand-in for journald: a unix datagram socket that reads native-protocol entries."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(5)
        self.via_memfd = 0

    def receive(self) -> tuple[dict[str, str], bytes]:
        """The next entry, parsed and raw (read from its memfd when it came in one)."""
        data, ancillary, flags, _ = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(4))
        assert not flags & socket.MSG_TRUNC
        fds = [int.from_bytes(d[:4], "little", signed=True)
               for level, kind, d in ancillary
               if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)]
        if fds:
            assert data == b"" and len(fds) == 1, "an fd comes alone"
            assert fcntl.fcntl(fds[0], fcntl.F_GET_SEALS) & SEALED == SEALED, "fully sealed"
            with open(fds[0], "rb") as memfd:
                memfd.seek(0)  # journald maps it; the offset is where the sender stopped
                data = memfd.read()
            self.via_memfd += 1
        return parse_entry(data), data

    def pending(self) -> bool:
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        self.sock.close()
        os.unlink(self.path)


@pytest.fixture
def journal() -> Iterator[Journal]:
    # A unix socket path must stay under 108 bytes; the system's temp directory is short.
    with tempfile.TemporaryDirectory(prefix="mbj") as directory:
        stand_in = Journal(os.path.join(directory, "socket"))
        yield stand_in
        stand_in.sock.close()


def test_a_traceback_is_one_entry_at_error_priority(attach: Attach, journal: Journal) -> None:
    out = io.StringIO()
    log = attach(logs.handler(stream=out, journal=True, journal_socket=journal.path))
    log.info("ack %s", fields(event="sent", thread="K7Q2MX"))
    failing(log, "ack %s", fields(event="send_error", thread="K7Q2MX"))

    info, raw = journal.receive()
    assert raw.startswith(b"MESSAGE=info mailbridge.test_logs ack event=sent thread=K7Q2MX\n")
    assert (info["PRIORITY"], info["SYSLOG_IDENTIFIER"], info["LOGGER"]) == (
        "6", "mailbridge", "mailbridge.test_logs")
    error, _ = journal.receive()
    assert error["PRIORITY"] == "3"
    head, *trace = error["MESSAGE"].split("\n")
    assert head == "error mailbridge.test_logs ack event=send_error thread=K7Q2MX"
    assert trace[0] == "Traceback (most recent call last):"
    assert any("in inner" in line for line in trace) and trace[-1] == "ValueError: boom"
    assert error["CODE_FUNC"] == "failing" and error["CODE_FILE"] == __file__
    assert not journal.pending(), "one datagram per record"
    assert out.getvalue() == "", "nothing went to stdout"


def test_json_under_journald_is_the_entry_message(attach: Attach, journal: Journal) -> None:
    log = attach(logs.handler(log_format="json", journal=True, journal_socket=journal.path))
    failing(log, "ack %s", fields(event="send_error", thread="K7Q2MX"))
    entry, _ = journal.receive()
    assert entry["PRIORITY"] == "3"
    record = json.loads(entry["MESSAGE"])
    assert (record["event"], record["thread"]) == ("send_error", "K7Q2MX")
    assert record["traceback"].endswith("ValueError: boom")


def test_an_entry_too_big_for_a_datagram_travels_in_a_memfd(
        attach: Attach, journal: Journal) -> None:
    wmem_max = int(Path("/proc/sys/net/core/wmem_max").read_text())
    big = "x" * 70 + "\n"
    lines = 2 * max(wmem_max, 8 << 20) // len(big) + 1  # more than any send buffer holds
    log = attach(logs.handler(journal=True, journal_socket=journal.path))
    log.warning("%s", big * lines)
    entry, _ = journal.receive()
    assert journal.via_memfd == 1
    assert entry["PRIORITY"] == "4"
    assert entry["MESSAGE"] == "warning mailbridge.test_logs " + big * lines


@pytest.mark.parametrize("socket_state", ["missing", "not listening"])
def test_without_the_socket_every_line_keeps_its_priority(
        attach: Attach, tmp_path: Path, socket_state: str) -> None:
    """The stream fallback marks each line of a record, so no line drops to info."""
    path = tmp_path / "journal.socket"
    if socket_state == "not listening":
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as gone:
            gone.bind(str(path))  # the file stays, nobody reads it: ECONNREFUSED
    out = io.StringIO()
    log = attach(logs.handler(stream=out, journal=True, journal_socket=str(path)))
    failing(log, "ack %s", fields(event="send_error", thread="K7Q2MX"))
    log.info("two\nlines")

    lines = out.getvalue().splitlines()
    assert lines[0] == "<3>error mailbridge.test_logs ack event=send_error thread=K7Q2MX"
    assert lines[1] == "<3>Traceback (most recent call last):"
    assert lines[-3] == "<3>ValueError: boom"
    assert all(line.startswith("<3>") for line in lines[:-2])
    assert lines[-2:] == ["<6>info mailbridge.test_logs two", "<6>lines"]
    assert not any(re.search(STAMP, line) for line in lines), "the journal keeps the time"


def test_a_journald_that_goes_away_leaves_records_on_stdout(
        attach: Attach, journal: Journal) -> None:
    out = io.StringIO()
    log = attach(logs.handler(stream=out, journal=True, journal_socket=journal.path))
    log.warning("instance %s", fields(event="presumed_dead"))
    assert journal.receive()[0]["MESSAGE"].endswith("event=presumed_dead")
    journal.close()
    log.warning("instance %s", fields(event="reaped"))
    assert out.getvalue() == "<4>warning mailbridge.test_logs instance event=reaped\n"


# -- the daemon -------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_daemon_writes_json_lines_with_times(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """`log_format = "json"`: every line the daemon writes is a JSON record with its time,
    and an inherited $JOURNAL_STREAM that names another file does not count."""
    config = write_config(tmp_path / "mb", dovecot, smtp_peer, extra='log_format = "json"')
    with Daemon(config, env={"JOURNAL_STREAM": "8:12345"}) as daemon:
        dovecot.append(customer_mail(1, name="Ana Souza", addr="ana@example.org",
                                     subject="Invoice 2291 charged twice"))
        smtp_peer.wait_for_count(1, timeout=10)
        wait_for(lambda: '"event": "sent"' in daemon.log(), timeout=10, message=daemon.log)
    text = daemon.log()
    records = [json.loads(line) for line in text.splitlines()]
    assert all(re.fullmatch(STAMP, r["time"]) for r in records)
    events = {(r["topic"], r["event"]) for r in records if "topic" in r}
    assert {("service", "ready"), ("ack", "sent"), ("service", "stopped")} <= events
    [sent] = [r for r in records if r.get("topic") == "ack"]
    assert sent["level"] == "info" and re.fullmatch(r"[A-Z2-9]{6}", sent["thread"])
    assert "ana@example.org" not in text and "Invoice" not in text, "no PII at info"
