"""The command line: check-config, run's refusals, replay and the demo."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mailbridge.cli import main
from tests.mails import VOUCHED, customer_mail, reply_to

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.toml"


@pytest.fixture
def credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "imap-password").write_text("imap-secret\n")
    (creds / "smtp-password").write_text("smtp-secret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    return creds


def test_check_config_accepts_the_shipped_example(
        credentials: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`check-config config.example.toml` exits 0 and says it is fine."""
    assert main(["check-config", str(EXAMPLE)]) == 0
    assert "ok" in capsys.readouterr().out


def test_bad_config_lists_every_problem_and_exits_78(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad file gives one line per problem, naming file and key, and exit code 78."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[support]\naddress = "support@example.com"\nname = "S"\n'
                   'timezone = "Mars/Olympus"\n[sla]\nfirst_response = "soon"\n')
    for command in (["check-config", str(bad)], ["run", "--config", str(bad)]):
        assert main(command) == 78
        err = capsys.readouterr().err
        assert err.startswith(f"{bad}: 3 problems")
        assert "[support] timezone" in err and "[sla] first_response" in err
        assert "[[agents]]" in err


@pytest.mark.parametrize("command", [["run", "--config"], ["check-config"]])
def test_run_without_a_mailbox_points_to_the_demo(
        command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`run` on a config without [imap] and [smtp] refuses with exit 78 and says why;
    check-config says so first."""
    cfg = tmp_path / "minimal.toml"
    cfg.write_text('[support]\naddress = "support@example.com"\nname = "S"\n'
                   '[[agents]]\nname = "Dana"\nemail = "dana@example.com"\n'
                   f'[daemon]\nstate_dir = "{tmp_path}"\n')
    assert main([*command, str(cfg)]) == 78
    err = capsys.readouterr().err
    assert "[imap]" in err and "mailbridge demo" in err and "[smtp]" in err


def test_replay_json_over_a_folder_gives_the_expected_decisions(
        tmp_path: Path, credentials: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`replay --json` prints one decision per message, in order, sending nothing."""
    folder = tmp_path / "mail"
    folder.mkdir()
    first = customer_mail(1, addr="ana@example.org", subject="Refund")
    (folder / "01-question.eml").write_bytes(first)
    (folder / "02-follow-up.eml").write_bytes(reply_to(first))
    (folder / "03-ooo.eml").write_bytes(customer_mail(2, Auto_Submitted="auto-replied"))
    (folder / "04-other.eml").write_bytes(customer_mail(3, addr="bo@example.net"))
    (folder / "notes.txt").write_text("not mail")
    code = main(["replay", "--config", str(EXAMPLE), "--json",
                 "--now", "2026-11-23T09:00:00+01:00", str(folder)])
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    lines = [r for r in records if r["type"] == "message"]
    threads = [r for r in records if r["type"] == "thread"]
    policies = [r for r in records if r["type"] == "policy"]
    assert [r["type"] for r in records] == ["message"] * 5 + ["thread"] * 2 + ["policy"]
    assert (lines[4]["source"].rsplit("/", 1)[1], lines[4]["rule"]) == ("notes.txt", "not_email")
    lines = lines[:4]
    assert {t["thread"] for t in threads} == {lines[0]["thread"], lines[3]["thread"]}
    assert all(t["first_response_met"] is None and t["breaches"] == [] for t in threads)
    assert policies == [{"type": "policy", "policy": "default", "threads": 2, "answered": 0,
                         "first_response_met": 0, "first_response_missed": 0,
                         "attainment": None}]
    assert [(r["source"].rsplit("/", 1)[1], r["action"], r["rule"]) for r in lines] == [
        ("01-question.eml", "acknowledge", "new_thread"),
        ("02-follow-up.eml", "ignore", "follow_up"),
        ("03-ooo.eml", "ignore", "auto_submitted"),
        ("04-other.eml", "acknowledge", "new_thread"),
    ]
    first_line, follow_up = lines[0], lines[1]
    assert set(first_line) == {"type", "source", "message_id", "action", "reason", "rule",
                               "thread", "agent", "due", "to", "queue_ahead", "assignment",
                               "language", "faq", "defects"}
    assert first_line["assignment"]["reason"] == (
        "least loaded on shift (0 open, round robin among 2)")
    assert first_line["language"] == {"language": "en", "reason": "the support default"}
    assert first_line["faq"] == [] and follow_up["assignment"] is None
    assert first_line["type"] == "message"
    assert first_line["to"] == "ana@example.org" and follow_up["to"] is None
    assert follow_up["thread"] == first_line["thread"]
    assert first_line["due"] == "2026-11-23T12:00:00+00:00"  # 4h after --now
    assert {lines[0]["agent"], lines[3]["agent"]} == {"Dana Whitfield", "Sam Okafor"}


def test_replay_reads_mbox_and_maildir(
        tmp_path: Path, credentials: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """mbox files and Maildirs are read message by message."""
    import mailbox

    box = mailbox.mbox(tmp_path / "export.mbox")
    for n in (1, 2):
        box.add(customer_mail(n))
    box.flush()
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    maildir.add(customer_mail(3))
    code = main(["replay", "--config", str(EXAMPLE), str(tmp_path / "export.mbox"),
                 str(tmp_path / "Maildir")])
    assert code == 0
    out = capsys.readouterr().out.split("\n\n")[0].splitlines()
    assert len(out) == 3 and all("acknowledge" in line for line in out)
    assert "export.mbox#1" in out[0] and "export.mbox#2" in out[1]


def test_replay_of_a_missing_path_is_a_clear_error(
        tmp_path: Path, credentials: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path that does not exist is named, with a non-zero exit."""
    assert main(["replay", "--config", str(EXAMPLE), str(tmp_path / "nope")]) != 0
    assert "nope" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_shows_acks_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """`mailbridge demo` prints the acks as they happen and exits 0 on SIGINT."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailbridge", "demo", "--listen", "127.0.0.1:0",
         "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "All samples processed" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(seen) + rest
    assert proc.returncode == 0, output
    assert "/metrics" in output
    assert output.count("acknowledgement that would reach the customer") == 2
    assert "Subject: Re: Invoice 2291 charged twice [#" in output
    assert "Dana Whitfield" in output and "Sam Okafor" in output
    assert "auto_submitted" in output and "follow_up" in output


def _units(tmp_path: Path) -> tuple[str, Path, Path]:
    """systemd-analyze, and the shipped service (running this venv's mailbridge) and relay
    socket, copied into `tmp_path`."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: run ./scripts/test, which installs it"
    exe = shutil.which("mailbridge") or str(Path(sys.executable).parent / "mailbridge")
    unit = (REPO / "systemd" / "mailbridge.service").read_text()
    assert "ExecStart=/usr/bin/mailbridge " in unit
    service = tmp_path / "mailbridge.service"
    service.write_text(unit.replace("ExecStart=/usr/bin/mailbridge ", f"ExecStart={exe} "))
    socket_unit = tmp_path / "mailbridge-relay.socket"
    socket_unit.write_text((REPO / "systemd" / "mailbridge-relay.socket").read_text())
    return analyze, service, socket_unit


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """The shipped service and relay socket verify without a single warning."""
    analyze, service, socket_unit = _units(tmp_path)
    unit = service.read_text()
    assert "RestartPreventExitStatus=64 73 78" in unit and "LoadCredential=" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    sockets = socket_unit.read_text()
    assert "ListenStream=587" in sockets and "Service=mailbridge.service" in sockets
    assert "FileDescriptorName=relay" in sockets
    for unit_file in (service, socket_unit):
        result = subprocess.run([analyze, "verify", "--man=no", str(unit_file)],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == "", result.stderr


def test_a_missing_credential_does_not_fail_the_start(tmp_path: Path) -> None:
    """Each LoadCredential= has a SetCredential= default, which systemd uses instead of
    failing the start when the file is missing (systemd.exec(5)); the config loader reads that
    blank default as no password (tests/test_config.py)."""
    _analyze, service, _socket = _units(tmp_path)
    lines = service.read_text().splitlines()
    loaded = [line.split("=", 1)[1].split(":")[0] for line in lines
              if line.startswith("LoadCredential=")]
    defaults = [line.split("=", 1)[1] for line in lines if line.startswith("SetCredential=")]
    assert loaded == ["imap-password", "smtp-password"]
    assert defaults == [f"{name}:\\n" for name in loaded]


def test_systemd_security_exposure_stays_low(tmp_path: Path) -> None:
    """`systemd-analyze security` rates the hardened unit at most 2.0 ("OK")."""
    analyze, service, _socket = _units(tmp_path)
    result = subprocess.run([analyze, "security", "--offline=yes", str(service)],
                            capture_output=True, text=True, check=False)
    found = re.search(r"Overall exposure level for mailbridge\.service: ([0-9.]+)",
                      result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found[1]) <= 2.0, result.stdout
    assert "Invalid syntax" not in result.stderr, result.stderr


def _mail(name: str, addr: str, subject: str, date: str, **headers: str) -> bytes:
    head = "".join(f"{k.replace('_', '-')}: {v}\n" for k, v in headers.items())
    return (f"Return-Path: <{addr}>\nFrom: {name} <{addr}>\nTo: support@example.com\n"
            f"Subject: {subject}\nDate: {date}\nMessage-ID: <{subject.rsplit(maxsplit=1)[-1]}@x>\n"
            f"{head}\nHello\n").encode()


def test_replay_reports_last_months_sla(
        tmp_path: Path, credentials: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Over an export with agent replies, replay gives first-response times and attainment."""
    folder = tmp_path / "export"
    folder.mkdir()
    mails = [
        _mail("Ana", "ana@example.org", "Question q1", "Mon, 02 Nov 2026 09:00:00 +0000"),
        _mail("Dana Whitfield", "dana@example.com", "Re: Question q1-answer",
              "Mon, 02 Nov 2026 10:30:00 +0000", In_Reply_To="<q1@x>",
              Authentication_Results=VOUCHED),
        _mail("Bo", "bo@example.net", "Other q2", "Mon, 02 Nov 2026 11:00:00 +0000"),
        _mail("Sam Okafor", "sam@example.com", "Re: Other q2-answer",
              "Mon, 02 Nov 2026 17:00:00 +0000", In_Reply_To="<q2@x>",
              Authentication_Results=VOUCHED),
        _mail("Cy", "cy@example.net", "Never answered q3", "Tue, 03 Nov 2026 08:00:00 +0000"),
        _mail("Dy", "dy@example.net", "Late news q4", "Wed, 04 Nov 2026 08:00:00 +0000"),
    ]
    for n, raw in enumerate(mails, start=1):
        (folder / f"{n:02}.eml").write_bytes(raw)
    assert main(["replay", "--config", str(EXAMPLE), "--json", str(folder)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rules = [r["rule"] for r in records if r["type"] == "message"]
    assert rules == ["new_thread", "agent_reply", "new_thread", "agent_reply", "new_thread",
                     "new_thread"]
    threads = {t["first_response_due"][:16]: t for t in records if t["type"] == "thread"}
    q1, q2 = threads["2026-11-02T13:00"], threads["2026-11-02T15:00"]
    q3 = threads["2026-11-03T12:00"]
    assert (q1["first_response_seconds"], q1["first_response_met"]) == (5400, True)
    assert (q2["first_response_seconds"], q2["first_response_met"]) == (21600, False)
    assert q3["first_response_met"] is None and q3["breaches"] == ["first_response"]
    [policy] = [r for r in records if r["type"] == "policy"]
    assert policy["first_response_met"] == 1 and policy["first_response_missed"] == 2
    assert policy["attainment"] == round(1 / 3, 4)
