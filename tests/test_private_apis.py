"""The dependencies' private APIs that mailbridge leans on are still there.

pyproject.toml caps these dependencies at the tested minor release. When a new release is
allowed, these tests say at once which internal moved, instead of an ack path failing in an
unrelated-looking way.
"""

from __future__ import annotations

import imaplib
import inspect
import smtplib
import socket
import threading
from collections.abc import Iterator

import pytest
from imapclient import IMAPClient
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.dialects import sqlite

from mailbridge.io.imap_client import WatchClient
from mailbridge.store.direct import Direct

_TABLE = Table("t", MetaData(), Column("id", Integer, primary_key=True),
               Column("name", String), Column("state", String, default="pending"))


def test_sqlalchemy_compiler_exposes_what_store_direct_reads() -> None:
    """store/direct.py reads positiontup, binds and insert_prefetch from a compiled INSERT."""
    compiled = insert(_TABLE).compile(dialect=sqlite.dialect(), column_keys=["id", "name"])
    missing = [name for name in ("positiontup", "binds", "insert_prefetch")
               if not hasattr(compiled, name)]
    assert not missing, f"SQLAlchemy's SQLCompiler lost {missing}: store/direct.py needs them"
    assert list(compiled.positiontup or ()) == ["id", "name", "state"]
    assert [column.key for column in compiled.insert_prefetch] == ["state"]
    assert compiled.binds["state"].type.dialect_impl(sqlite.dialect()) is not None


def test_direct_prepares_insert_defaults_and_select_results() -> None:
    """Direct turns those internals into SQL, parameters with defaults, and result converters."""
    direct = Direct(sqlite.dialect())
    prepared = direct.prepare(insert(_TABLE), ["id", "name"])
    assert prepared.names == ("id", "name", "state")
    assert prepared.parameters({"id": 1, "name": "x"}) == (1, "x", "pending")
    chosen = direct.prepare(select(_TABLE.c.name).where(_TABLE.c.id == 1))
    assert len(chosen.results) == 1


@pytest.fixture
def imap_greeter() -> Iterator[int]:
    """A loopback peer that greets like an IMAP server and says OK to every command."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n")
            for line in lines:  # until the client closes
                tag, _, command = line.decode().partition(" ")
                if command.upper().startswith("CAPABILITY"):
                    conn.sendall(b"* CAPABILITY IMAP4rev1 IDLE\r\n")
                conn.sendall(f"{tag} OK done\r\n".encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    server.close()
    thread.join(timeout=5)


def test_imapclient_internals_the_watcher_uses(imap_greeter: int) -> None:
    """The watcher overrides IMAPClient._poll_socket and reads IMAPClient._imap's buffer and
    untagged responses."""
    assert "_poll_socket" in vars(IMAPClient), \
        "IMAPClient._poll_socket moved: io/imap_client.py's WatchClient overrides it"
    params = list(inspect.signature(IMAPClient._poll_socket).parameters)
    assert params[:3] == ["self", "sock", "timeout"], params
    client = WatchClient("127.0.0.1", port=imap_greeter, ssl=False, timeout=5)
    try:
        inner = client._imap
        assert isinstance(inner, imaplib.IMAP4), "IMAPClient._imap is no longer imaplib's"
        assert isinstance(inner.untagged_responses, dict)
        assert hasattr(inner.file, "peek"), "imaplib's reader is no longer buffered"
    finally:
        client.shutdown()


def test_imapclient_internals_the_watchers_fetch_uses() -> None:
    """WatchClient.fetch is IMAPClient.fetch step for step with another response reader: the
    helpers and imaplib internals it calls are still there (tests/io/test_imap_fetch.py
    compares the two against a real Dovecot)."""
    from imapclient import imapclient, util
    missing = [name for name, owner in (("join_message_ids", imapclient),
                                        ("seq_to_parenstr_upper", imapclient),
                                        ("to_ints", util), ("_checkok", IMAPClient),
                                        ("_command", imaplib.IMAP4),
                                        ("_command_complete", imaplib.IMAP4),
                                        ("_untagged_response", imaplib.IMAP4))
               if not hasattr(owner, name)]
    assert not missing, f"io/imap_client.py's WatchClient.fetch needs {missing}"
    fetch = inspect.getsource(IMAPClient.fetch)
    assert "parse_fetch_response(data, self.normalise_times, self.use_uid)" in fetch, \
        "IMAPClient.fetch changed: compare io/imap_client.py's WatchClient.fetch with it"


def test_smtplib_attributes_the_pipelined_send_uses() -> None:
    """The pipelined send switches smtplib's command_encoding for SMTPUTF8, as sendmail does."""
    conn = smtplib.SMTP()
    assert conn.command_encoding == "ascii"
    assert smtplib.quoteaddr("a@example.com") == "<a@example.com>"
