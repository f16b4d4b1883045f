"""[relay] and the agents' relay credentials: defaults, files read at load, and problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbridge.config import Config, load_config
from mailbridge.config.passwords import hash_password, verify_password
from mailbridge.errors import ConfigError
from tests.servers import make_tls_files

HASH = hash_password("dana-relay-pw", n=2**10)


def config_text(tmp_path: Path, *, agent: str = "", relay: str = "") -> str:
    tls = make_tls_files(tmp_path / "tls")
    return f"""
[support]
address = "support@Example.com"
name = "Example Support"

[[agents]]
name = "Dana Whitfield"
email = "dana@example.com"
{agent}

[relay]
enabled = true
certificate = "{tls.cert_pem_path}"
key = "{tls.key_pem_path}"
upstream_host = "smtp.example.net"
{relay}
"""


def load(tmp_path: Path, text: str, **environ: str) -> Config:
    path = tmp_path / "mailbridge.toml"
    path.write_text(text, encoding="utf-8")
    environ.setdefault("STATE_DIRECTORY", str(tmp_path / "state"))
    return load_config(path, environ=environ)


def problems(tmp_path: Path, text: str, **environ: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, **environ)
    return caught.value.problems


def test_relay_is_off_by_default(tmp_path: Path) -> None:
    """Without [relay] nothing listens, and no certificate is needed."""
    text = config_text(tmp_path).split("[relay]")[0]
    relay = load(tmp_path, text).relay
    assert not relay.enabled and relay.listen == "127.0.0.1:587" and relay.tls == "starttls"


def test_enabled_relay_defaults(tmp_path: Path) -> None:
    """Hostname is the support domain; the upstream port follows upstream_tls."""
    relay = load(tmp_path, config_text(tmp_path, relay='upstream_tls = "implicit"')).relay
    assert relay.enabled and relay.hostname == "example.com"
    assert (relay.host, relay.port) == ("127.0.0.1", 587)
    assert (relay.upstream_port, relay.upstream_verify_tls) == (465, True)
    assert relay.certificate is not None and relay.certificate.is_absolute()


def test_agent_credentials_hash_and_file(tmp_path: Path) -> None:
    """password_hash is kept as written; password_file is read from $CREDENTIALS_DIRECTORY."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "relay-sam").write_text("sam-relay-pw\n")
    (creds / "upstream").write_text("upstream-pw\n")
    text = config_text(tmp_path, agent=f'password_hash = "{HASH}"', relay=(
        'upstream_username = "relay@example.com"\nupstream_password_file = "upstream"')) + \
        '\n[[agents]]\nname = "Sam Okafor"\nemail = "sam@example.com"\n' \
        'password_file = "relay-sam"\n'
    config = load(tmp_path, text, CREDENTIALS_DIRECTORY=str(creds))
    dana, sam = config.agents
    assert dana.password_hash is not None and verify_password("dana-relay-pw", dana.password_hash)
    assert sam.password_file is not None
    assert sam.password_file.secret.reveal() == "sam-relay-pw"
    assert sam.password_file.path == creds / "relay-sam"
    secret = config.relay.upstream_password_file
    assert secret is not None and secret.secret.reveal() == "upstream-pw"
    shown = repr(config)
    assert "sam-relay-pw" not in shown and "upstream-pw" not in shown


def test_enabled_relay_needs_certificate_key_and_upstream(tmp_path: Path) -> None:
    """Each missing key of an enabled relay is its own problem, with an example."""
    text = config_text(tmp_path)
    for line in ("certificate = ", "key = ", "upstream_host = "):
        text = "\n".join(t for t in text.splitlines() if not t.startswith(line))
    found = problems(tmp_path, text)
    assert [p.split(":")[0] for p in found] == [
        "[relay] certificate", "[relay] key", "[relay] upstream_host"]
    assert all("an enabled relay needs it" in p for p in found)


def test_unreadable_or_mismatched_certificate(tmp_path: Path) -> None:
    """A missing key file, or a key that is not the certificate's, is named."""
    text = config_text(tmp_path)
    missing = problems(tmp_path, text.replace("server.key", "nope.key"))
    assert missing[0].startswith("[relay] key: cannot read ") and "nope.key" in missing[0]
    other = make_tls_files(tmp_path / "other")
    mixed = problems(tmp_path, text.replace(str(tmp_path / "tls" / "server.key"),
                                            str(other.key_pem_path)))
    assert mixed[0].startswith("[relay] certificate, key: not a usable PEM certificate")


@pytest.mark.parametrize(("agent", "relay", "problem"), [
    ('password_hash = "hunter2"', "",
     "[[agents]] #1 password_hash: expected the output of `mailbridge hash-password`"),
    (f'password_hash = "{HASH}"\npassword_file = "x"', "",
     "[[agents]] #1 password_hash, password_file: set one of them, not both"),
    ('password_file = "missing-file"', "", "[[agents]] #1 password_file: cannot read "),
    ("", 'upstream_username = "relay@example.com"',
     "[relay] upstream_password_file: upstream_username is set but no password"),
    ("", 'tls = "none"', '[relay] tls: expected one of "starttls" or "implicit", got "none"'),
    ("", 'listen = "587"', '[relay] listen: expected "host:port"'),
    ("", "upstream_port = 0", "[relay] upstream_port: must be at least 1"),
    ("", 'upstream_pasword_file = "x"', '[relay] upstream_pasword_file: unknown key'),
])
def test_relay_problems_name_the_key(tmp_path: Path, agent: str, relay: str,
                                     problem: str) -> None:
    """Each problem names its section and key, and never shows a hash or password."""
    found = problems(tmp_path, config_text(tmp_path, agent=agent, relay=relay))
    assert any(p.startswith(problem) for p in found), found
    assert not any("hunter2" in p for p in found)


def test_disabled_relay_reads_no_certificate(tmp_path: Path) -> None:
    """With enabled = false, missing certificate files are not a problem."""
    text = config_text(tmp_path).replace("enabled = true", "enabled = false")
    assert not load(tmp_path, text.replace("server.key", "nope.key")).relay.enabled
