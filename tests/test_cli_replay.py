"""`mailbridge replay` over what people export: any file name, mbox only when it is one,
not-mail reported, the envelope an export lost, no secrets, no log lines, exit 66."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mailbridge.cli import main
from mailbridge.mail.exports import split_mbox
from tests.configs import MINIMAL
from tests.mails import customer_mail

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.toml"
NOW = "2026-11-23T09:00:00+01:00"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"

QUOTED_ORIGINAL = (
    b"From ana@example.org Mon Nov 23 07:58:01 2026\n"
    b"Return-Path: <ana@example.org>\n"
    b"From: Ana Souza <ana@example.org>\n"
    b"To: support@example.com\n"
    b"Subject: My order\n"
    b"Date: Mon, 23 Nov 2026 07:58:00 +0000\n"
    b"Message-ID: <order-1@example.org>\n"
    b"\n"
    b"Hello, my order did not arrive. Below what the shop wrote:\n"
    b"\n"
    b"From the shop, on Monday:\n"
    b"> Your parcel left our warehouse.\n"
    b"From shop@example.net Mon Nov 23 07:00:00 2026 they said it was sent.\n"
)
"""One message saved with its mbox "From " line; two body lines begin with "From " and
neither is a message boundary (no header field follows; no blank line before)."""


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials anywhere: replay must not need them."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))


def _replay_json(capsys: pytest.CaptureFixture[str], *paths: Path) -> list[dict[str, Any]]:
    code = main(["replay", "--config", str(EXAMPLE), "--json", "--now", NOW,
                 *map(str, paths)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return [r for r in map(json.loads, captured.out.splitlines()) if r["type"] == "message"]


def _named(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["source"].rsplit("/", 1)[1]: r for r in rows}


def test_files_of_any_name_are_read_and_what_is_not_mail_is_reported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """.msg, .txt, .raw and nameless mail is decided; PNG, gzip, empty and plain text files
    get a not_email line saying why, in JSON and in text."""
    folder = tmp_path / "export"
    folder.mkdir()
    for n, name in enumerate(["a.msg", "b.txt", "c.raw", "d"], start=1):
        (folder / name).write_bytes(customer_mail(n))
    (folder / "b.txt").write_bytes(b"\xef\xbb\xbf" + customer_mail(2))  # saved by Notepad
    (folder / "e.png").write_bytes(PNG)
    (folder / "f.eml").write_bytes(gzip.compress(customer_mail(9)))
    (folder / "g.eml").write_bytes(b"")
    (folder / "h.txt").write_text("Call Ana back on Monday about the refund.\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    rows = _named(_replay_json(capsys, folder))
    assert sorted(rows) == ["a.msg", "b.txt", "c.raw", "d", "e.png", "f.eml", "g.eml", "h.txt"]
    for name in ("a.msg", "b.txt", "c.raw", "d"):
        assert (rows[name]["action"], rows[name]["rule"]) == ("acknowledge", "new_thread")
    reasons = {name: rows[name]["reason"] for name in ("e.png", "f.eml", "g.eml", "h.txt")}
    assert all(rows[name]["rule"] == "not_email" for name in reasons)
    assert reasons == {"e.png": "binary content (a PNG image)",
                       "f.eml": "binary content (gzip data)", "g.eml": "empty file",
                       "h.txt": "no header block: it does not begin with mail header fields "
                                "such as From: and Subject:"}
    assert main(["replay", "--config", str(EXAMPLE), "--now", NOW, str(folder)]) == 0
    text = capsys.readouterr().out
    assert f"{folder / 'e.png'}  (not mail)  ignore  not_email: binary content (a PNG image)" \
        in text.splitlines()


def test_an_eml_with_a_from_line_is_one_message_and_an_mbox_splits_at_boundaries(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An .eml saved with its "From " line is one message, even where its body holds a whole
    message after an mbox "From " line; an mbox of any name splits at each message, and at
    no body line that merely begins with "From "."""
    eml = tmp_path / "order.eml"
    eml.write_bytes(QUOTED_ORIGINAL + b"\nThe shop's mail:\n\n"
                    b"From shop@example.net  Mon Nov 23 07:00:00 2026\n"
                    b"From: Shop <shop@example.net>\nSubject: Your parcel\n\nIt left.\n")
    box = tmp_path / "last-month"  # an mbox without a .mbox name
    second = customer_mail(2, addr="bo@example.net")
    box.write_bytes(QUOTED_ORIGINAL + b"\n" + b"From bo@example.net Tue Nov 24 10:00:00 2026\n"
                    + second + b"\n>From the archive, quoted by an mboxrd writer\n")
    rows = _replay_json(capsys, eml, box)
    assert [(Path(r["source"]).name, r["action"], r["rule"]) for r in rows] == [
        ("order.eml", "acknowledge", "new_thread"),
        ("last-month#1", "ignore", "duplicate"),
        ("last-month#2", "acknowledge", "new_thread"),
    ]
    first, later = split_mbox(box.read_bytes())
    assert first == QUOTED_ORIGINAL.split(b"\n", 1)[1]
    assert later.endswith(b"\nFrom the archive, quoted by an mboxrd writer\n")


def test_the_obsolete_from_field_is_no_mbox_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A message whose first line is `From  : Name <addr>` is one message, not an mbox."""
    raw = (b"From  : John Doe <jdoe@example.org>\r\nTo    : support@example.com\r\n"
           b"Subject     : Saying Hello\r\nDate  : Fri, 21 Nov 1997 09:55:06 -0600\r\n"
           b"Message-ID  : <1234@local.machine.example>\r\n\r\nHello.\r\n")
    (tmp_path / "obsolete").write_bytes(raw)
    rows = _replay_json(capsys, tmp_path / "obsolete")
    assert [(Path(r["source"]).name, r["to"]) for r in rows] == [
        ("obsolete", "jdoe@example.org")]
    assert "obsolete header syntax: white space before the colon of From" in rows[0]["defects"]


def test_without_return_path_the_from_address_is_the_envelope(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A message without a Return-Path field is acknowledged to its From address; an explicit
    `Return-Path: <>` stays a null sender."""
    lost = customer_mail(1, addr="ana@example.org").replace(
        b"Return-Path: <ana@example.org>\n", b"")
    assert b"Return-Path" not in lost
    null = customer_mail(2, addr="bo@example.net").replace(
        b"Return-Path: <bo@example.net>", b"Return-Path: <>")
    (tmp_path / "1.eml").write_bytes(lost)
    (tmp_path / "2.eml").write_bytes(null)
    rows = _named(_replay_json(capsys, tmp_path))
    assert (rows["1.eml"]["action"], rows["1.eml"]["to"]) == ("acknowledge", "ana@example.org")
    assert (rows["2.eml"]["action"], rows["2.eml"]["rule"]) == ("ignore", "null_return_path")


def test_replay_reads_no_secret_file_and_check_config_still_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Password, OAuth2, relay key and metrics token files that are not there stop check-config,
    not replay, which logs in nowhere."""
    config = tmp_path / "mailbridge.toml"
    config.write_text(MINIMAL + """
[imap]
host = "127.0.0.1"
username = "support"
password_file = "imap-password"

[smtp]
host = "127.0.0.1"
username = "support"
password_file = "smtp-password"

[http]
bearer_token_file = "metrics-token"

[relay]
enabled = true
certificate = "relay.pem"
key = "relay.key"
upstream_host = "127.0.0.1"
upstream_username = "relay"
upstream_password_file = "upstream-password"

[oauth2]
provider = "google"
client_id = "desk"
client_secret_file = "oauth2-client-secret"
""")
    (tmp_path / "1.eml").write_bytes(customer_mail(1))
    assert main(["check-config", str(config)]) == 78
    err = capsys.readouterr().err
    for name in ("imap-password", "smtp-password", "metrics-token", "relay.pem",
                 "upstream-password", "oauth2-client-secret"):
        assert name in err
    assert main(["replay", "--config", str(config), str(tmp_path / "1.eml")]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "acknowledge  new_thread" in captured.out


def _dated(n: int, date: str) -> bytes:
    return (f"Return-Path: <c{n}@example.org>\nFrom: C {n} <c{n}@example.org>\n"
            f"To: support@example.com\nSubject: Question {n}\nDate: {date}\n"
            f"Message-ID: <old-{n}@example.org>\n\nHello?\n").encode()


def test_old_mail_gives_the_report_alone(tmp_path: Path) -> None:
    """Over last month's mail, whose deadlines passed, the command prints its report (the
    breach in it) and no log line on stderr."""
    (tmp_path / "1.eml").write_bytes(_dated(1, "Mon, 26 Oct 2026 09:00:00 +0000"))
    (tmp_path / "2.eml").write_bytes(_dated(2, "Fri, 20 Nov 2026 09:00:00 +0000"))
    done = subprocess.run(
        [sys.executable, "-m", "mailbridge", "replay", "--config", str(EXAMPLE),
         str(tmp_path)], capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "STATE_DIRECTORY": str(tmp_path / "state")}, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    report = done.stdout.split("\n\n", 1)[1]
    assert "first_response" in report  # the first thread's breach, in the report


def test_a_missing_path_exits_66_with_one_line_naming_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path that is not there: exit 66 (EX_NOINPUT), one line on stderr naming it."""
    (tmp_path / "1.eml").write_bytes(customer_mail(1))
    code = main(["replay", "--config", str(EXAMPLE), str(tmp_path / "1.eml"),
                 str(tmp_path / "nope")])
    captured = capsys.readouterr()
    assert code == 66
    assert captured.err == f"mailbridge: replay: no such file or folder: {tmp_path / 'nope'}\n"
    assert captured.out == ""
