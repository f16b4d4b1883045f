"""What a reload applies and what it names as needing a restart, key by key as the file has
them (`mailbridge.daemon.reload.restart_keys`)."""

from __future__ import annotations

from pathlib import Path

from mailbridge.config import Config, load_config
from mailbridge.daemon.reload import restart_keys
from tests.configs import MINIMAL
from tests.servers import make_tls_files

CREDS = {"imap-password": "imap-secret\n", "relay-upstream": "up-secret\n",
         "other-upstream": "other-secret\n", "imap-other": "new-secret\n"}


def load(tmp_path: Path, extra: str = "", *, tls_dir: str = "tls", **replace: str) -> Config:
    """The file below, with `extra` at its end and each key of `replace` replaced."""
    tls = make_tls_files(tmp_path / tls_dir)
    for name, secret in CREDS.items():
        (tmp_path / name).write_text(secret)
    text = f"""{MINIMAL}
[imap]
host = "imap.example.net"
username = "support"
password_file = "imap-password"

[smtp]
host = "smtp.example.net"

[relay]
enabled = true
certificate = "{tls.cert_pem_path}"
key = "{tls.key_pem_path}"
upstream_host = "smtp.example.net"
upstream_username = "support"
upstream_password_file = "relay-upstream"

[store]
url = "sqlite:///{tmp_path}/one.sqlite3"

[daemon]
state_dir = "{tmp_path}"
{extra}"""
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "mailbridge.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def test_decision_settings_apply_and_need_no_restart(tmp_path: Path) -> None:
    """Agents, policies, rules, the relay's certificate and the log level are not named."""
    old = load(tmp_path)
    new = load(tmp_path, '[rules]\nsender_cap = 5\n[sla]\nfirst_response = "2h"\n',
               tls_dir="other-tls", **{"Dana Whitfield": "Dana Reyes",
                                       'state_dir = "': 'log_level = "debug"\nstate_dir = "'})
    assert new.relay.certificate != old.relay.certificate
    assert restart_keys(old, new) == []


def test_connection_settings_are_named_as_the_file_writes_them(tmp_path: Path) -> None:
    """A new store url, IMAP host and password file, relay listen address and upstream port
    and password file: each named by its key in the file."""
    old = load(tmp_path)
    new = load(tmp_path, **{"one.sqlite3": "two.sqlite3", "imap.example.net": "imap2.example.net",
                            '"imap-password"': '"imap-other"',
                            'upstream_host = "smtp.example.net"':
                                'upstream_host = "smtp.example.net"\nupstream_port = 2525\n'
                                'listen = "127.0.0.1:1587"',
                            '"relay-upstream"': '"other-upstream"'})
    assert restart_keys(old, new) == [
        "[store] url", "[imap] host", "[imap] password_file", "[relay] listen",
        "[relay] upstream_port", "[relay] upstream_password_file"]


def test_a_section_that_appears_is_named_whole(tmp_path: Path) -> None:
    """[relay]'s upstream settings that appear at all are named upstream_*."""
    old = load(tmp_path, **{'upstream_host = "smtp.example.net"\nupstream_username = "support"\n'
                            'upstream_password_file = "relay-upstream"\n': "",
                            "enabled = true": "enabled = false"})
    new = load(tmp_path)
    assert restart_keys(old, new) == ["[relay] enabled", "[relay] upstream_*"]
