"""[relay] and the agents' relay credentials: defaults, files read at load, and problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbridge.config import Config, RelaySettings, SmtpPeerSettings, load_config
from mailbridge.config.passwords import hash_password, verify_password
from mailbridge.errors import ConfigError
from mailbridge.io.relay import upstream_transport
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
    assert relay.upstream is not None
    assert (relay.upstream.port, relay.upstream.verify_tls) == (465, True)
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
    upstream = config.relay.upstream
    assert upstream is not None and upstream.username == "relay@example.com"
    assert upstream.password is not None and upstream.password.reveal() == "upstream-pw"
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
    ("", 'upstream_tls = "tls"',
     '[relay] upstream_tls: expected one of "implicit", "starttls" or "none", got "tls"'),
    ("", 'upstream_verify_tls = "yes"',
     '[relay] upstream_verify_tls: expected true or false, got "yes"'),
    ("", 'upstream_username = " "\nupstream_password_file = "x"',
     "[relay] upstream_username: must not be empty"),
    ("", 'upstream_username = "relay"\nupstream_password_file = "missing-file"',
     "[relay] upstream_password_file: cannot read "),
    ("", "upstream_password_file = 7",
     "[relay] upstream_password_file: expected a file name, got 7"),
    ("", 'upstream_ca_file = "missing-ca.pem"', "[relay] upstream_ca_file: cannot read "),
    ("", 'upstream = { host = "smtp.example.net" }', "[relay] upstream: unknown key"),
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


def test_upstream_and_smtp_build_the_same_peer(tmp_path: Path) -> None:
    """The same keys under [smtp] and as [relay] upstream_* give equal SMTP peer settings."""
    (tmp_path / "peer-password").write_text("peer-pw\n")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    keys = {"host": '"smtp.example.net"', "port": "2525", "tls": '"implicit"',
            "username": '"relay@example.com"', "password_file": '"peer-password"',
            "verify_tls": "false", "ca_file": '"ca.pem"'}
    smtp = "\n[smtp]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items())
    relay = "".join(f"upstream_{key} = {value}\n" for key, value in keys.items()
                    if key != "host")
    config = load(tmp_path, config_text(tmp_path, relay=relay) + smtp)
    assert config.smtp is not None and config.relay.upstream is not None
    as_peer = {field: getattr(config.smtp, field) for field in SmtpPeerSettings.model_fields}
    assert as_peer == dict(config.relay.upstream)  # field by field; Secret compares values
    assert config.relay.upstream.password is not None
    assert config.relay.upstream.password.reveal() == "peer-pw"
    assert config.relay.upstream.ca_file == tmp_path / "ca.pem"


@pytest.mark.parametrize(("tls", "port"), [("implicit", 465), ("starttls", 587), ("none", 25)])
def test_upstream_port_follows_upstream_tls(tmp_path: Path, tls: str, port: int) -> None:
    """Without upstream_port, the port is the standard one for upstream_tls, as in [smtp]."""
    upstream = load(tmp_path, config_text(tmp_path, relay=f'upstream_tls = "{tls}"')).relay.upstream
    assert upstream is not None and (upstream.tls, upstream.port) == (tls, port)


def test_upstream_keys_without_upstream_host(tmp_path: Path) -> None:
    """A disabled relay may set upstream_* keys without upstream_host (config.example.toml
    does): there is no upstream, and the keys are still checked."""
    text = config_text(tmp_path).replace("enabled = true", "enabled = false")
    text = text.replace('upstream_host = "smtp.example.net"', 'upstream_tls = "starttls"')
    assert load(tmp_path, text).relay.upstream is None
    found = problems(tmp_path, text + "upstream_port = 0\n")
    assert found == ["[relay] upstream_port: must be at least 1, got 0"]


def test_unknown_relay_key_lists_the_upstream_keys(tmp_path: Path) -> None:
    """The allowed keys of [relay] are the ones the file writes, upstream_* included."""
    [found] = problems(tmp_path, config_text(tmp_path, relay='upstream_hots = "x"'))
    assert found == (
        "[relay] upstream_hots: unknown key (allowed: enabled, listen, tls, certificate, key, "
        "hostname, reply_to, upstream_host, upstream_port, upstream_tls, upstream_username, "
        'upstream_password_file, upstream_auth, upstream_verify_tls, upstream_ca_file); did '
        'you mean "upstream_host"?')
    text = config_text(tmp_path).replace("[support]", 'upstream_port = 25\n[support]')
    assert problems(tmp_path, text)[0].startswith(
        "upstream_port: unknown top-level key; keys go under [relay]")


def test_upstream_transport_greets_with_the_relay_hostname(tmp_path: Path) -> None:
    """The relay's transport sends to its upstream settings as they are, not a copy."""
    relay = load(tmp_path, config_text(tmp_path, relay='hostname = "relay.example.com"')).relay
    transport = upstream_transport(relay, local_hostname="example.com")
    assert transport.settings is relay.upstream
    assert transport.local_hostname == "relay.example.com"
    built = RelaySettings(upstream_host="smtp.example.net", upstream_tls="none")
    assert built.upstream == SmtpPeerSettings(host="smtp.example.net", tls="none", port=25)
    assert upstream_transport(built, local_hostname="example.com").local_hostname == \
        "example.com"


def test_reply_to_is_support_or_agent(tmp_path: Path) -> None:
    """[relay] reply_to defaults to "support"; "agent" is allowed, anything else named."""
    assert load(tmp_path, config_text(tmp_path)).relay.reply_to == "support"
    text = config_text(tmp_path, relay='reply_to = "agent"')
    assert load(tmp_path, text).relay.reply_to == "agent"
    [found] = problems(tmp_path, config_text(tmp_path, relay='reply_to = "customer"'))
    assert found.startswith("[relay] reply_to: ")
