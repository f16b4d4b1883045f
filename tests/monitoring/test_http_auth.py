"""/metrics behind a bearer token or basic auth, from files named in [http]; /healthz open."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from mailbridge.config import load_config
from mailbridge.errors import ConfigError
from mailbridge.io.http import HttpAuth, HttpServer, http_auth
from tests import configs

MINIMAL = configs.MINIMAL + """
[http]
listen = "0.0.0.0:9464"
"""


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def _get(port: int, path: str, authorization: str | None = None) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = f"Authorization: {authorization}\r\n" if authorization is not None else ""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


def _serve(auth: HttpAuth, requests: list[tuple[str, str | None]]) -> list[bytes]:
    async def scenario() -> list[bytes]:
        registry = CollectorRegistry()
        Counter("mailbridge_demo", "A counter.", registry=registry).inc()
        server = HttpServer("127.0.0.1", 0, registry, lambda: None, auth=auth)
        await server.start()
        try:
            return [await _get(server.port, path, header) for path, header in requests]
        finally:
            await server.close()

    return asyncio.run(scenario())


def test_bearer_token_is_required_for_metrics_only() -> None:
    """Without the right bearer token /metrics answers 401 with a challenge; /healthz is open."""
    none, wrong, basic, right, lower, health = _serve(HttpAuth(bearer_token="s3cret-token"), [
        ("/metrics", None), ("/metrics", "Bearer s3cret-tokem"),
        ("/metrics", _basic("x", "s3cret-token")), ("/metrics", "Bearer s3cret-token"),
        ("/metrics", "bearer  s3cret-token"), ("/healthz", None)])
    for refused in (none, wrong, basic):
        assert refused.startswith(b"HTTP/1.1 401 Unauthorized")
        assert b'WWW-Authenticate: Bearer realm="mailbridge"' in refused
        assert b"mailbridge_demo_total" not in refused
    for allowed in (right, lower):
        assert allowed.startswith(b"HTTP/1.1 200") and b"mailbridge_demo_total 1.0" in allowed
    assert health.startswith(b"HTTP/1.1 200") and health.endswith(b"ok\n")


def test_basic_auth_checks_user_and_password() -> None:
    """Basic auth needs both the user and the password; malformed headers are refused."""
    auth = HttpAuth(basic_user="prometheus", basic_password="pa:ss wörd")
    replies = _serve(auth, [
        ("/metrics", _basic("prometheus", "pa:ss wörd")),
        ("/metrics", _basic("prometheus", "pa:ss word")),
        ("/metrics", _basic("Prometheus", "pa:ss wörd")),
        ("/metrics", "Basic !!!not-base64"),
        ("/metrics", "Basic " + base64.b64encode(b"prometheus").decode()),
        ("/metrics", "Bearer pa:ss wörd"),
        ("/metrics", None)])
    assert replies[0].startswith(b"HTTP/1.1 200")
    for refused in replies[1:]:
        assert refused.startswith(b"HTTP/1.1 401")
        assert b'WWW-Authenticate: Basic realm="mailbridge"' in refused


def test_repr_shows_no_secret() -> None:
    """The credentials never show in a repr (or a log line that prints one)."""
    assert "s3cret" not in repr(HttpAuth(bearer_token="s3cret"))
    assert "s3cret" not in repr(HttpAuth(basic_user="u", basic_password="s3cret"))


def _load(tmp_path: Path, extra: str, **environ: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "mailbridge.toml"
    path.write_text(MINIMAL + extra, encoding="utf-8")
    environ.setdefault("STATE_DIRECTORY", str(tmp_path / "state"))
    return load_config(path, environ=environ)


def _problems(tmp_path: Path, extra: str, **environ: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, extra, **environ)
    return caught.value.problems


def test_tokens_and_passwords_come_from_files(tmp_path: Path) -> None:
    """The token file is read next to the config, or from $CREDENTIALS_DIRECTORY."""
    (tmp_path / "token").write_text("tok-123\nignored second line\n")
    config = _load(tmp_path, 'bearer_token_file = "token"\n')
    auth = http_auth(config.http)
    assert auth is not None and auth.bearer_token == "tok-123"
    assert "tok-123" not in repr(config)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "metrics-password").write_text("pw-456\n")
    config = _load(tmp_path, 'basic_auth_user = "prometheus"\n'
                             'basic_auth_password_file = "metrics-password"\n',
                   CREDENTIALS_DIRECTORY=str(creds))
    auth = http_auth(config.http)
    assert auth is not None and (auth.basic_user, auth.basic_password) == ("prometheus", "pw-456")
    assert http_auth(_load(tmp_path, "").http) is None


def test_auth_settings_are_validated(tmp_path: Path) -> None:
    """Each misuse is reported with its key and what to do."""
    (tmp_path / "token").write_text("tok\n")
    (tmp_path / "empty").write_text("\n")
    assert _problems(tmp_path, 'bearer_token = "inline"\n') == [
        '[http] bearer_token: a secret never belongs in this file; put it in a file and set '
        'bearer_token_file = "/etc/mailbridge/bearer_token"']
    assert _problems(tmp_path, 'bearer_token_file = "token"\nbasic_auth_user = "p"\n'
                               'basic_auth_password_file = "token"\n') == [
        "[http] bearer_token_file, basic_auth_user: set one way for scrapers to authenticate, "
        "not both"]
    [missing] = _problems(tmp_path, 'basic_auth_user = "prometheus"\n')
    assert missing.startswith("[http] basic_auth_password_file: basic_auth_user is set")
    [no_user] = _problems(tmp_path, 'basic_auth_password_file = "token"\n')
    assert no_user.startswith("[http] basic_auth_user: a password file is set but no user")
    [empty] = _problems(tmp_path, 'bearer_token_file = "empty"\n')
    assert empty.endswith("is empty; it must hold the token")
    [unreadable] = _problems(tmp_path, 'bearer_token_file = "nope"\n')
    assert unreadable.startswith("[http] bearer_token_file: cannot read")
    [colon] = _problems(tmp_path, 'basic_auth_user = "a:b"\nbasic_auth_password_file = "token"\n')
    assert colon.startswith("[http] basic_auth_user:") and "colon" in colon


def test_push_credentials_come_from_a_file_and_are_checked(tmp_path: Path) -> None:
    """[http] push_username and push_password_file: read like the other secrets, apart from
    the /metrics credentials, both or neither, and only of characters a URL takes as is."""
    (tmp_path / "push-password").write_text("a1-B2_c3.d4~\n")
    (tmp_path / "bad-password").write_text("pa:ss@word\n")
    config = _load(tmp_path, 'push_username = "dovecot"\npush_password_file = "push-password"\n'
                             'bearer_token_file = "push-password"\n')
    assert config.http.push_username == "dovecot" and config.http.push_password is not None
    assert config.http.push_password.reveal() == "a1-B2_c3.d4~"
    assert "a1-B2" not in repr(config)
    assert _problems(tmp_path, 'push_password = "inline"\n') == [
        '[http] push_password: a secret never belongs in this file; put it in a file and set '
        'push_password_file = "/etc/mailbridge/push_password"']
    [no_password] = _problems(tmp_path, 'push_username = "dovecot"\n')
    assert no_password.startswith("[http] push_password_file: push_username is set but no")
    [no_user] = _problems(tmp_path, 'push_password_file = "push-password"\n')
    assert no_user.startswith("[http] push_username: a password file is set but no user")
    [unsafe] = _problems(tmp_path, 'push_username = "dovecot"\n'
                                   'push_password_file = "bad-password"\n')
    assert unsafe.startswith("[http] push_password_file: the password goes into the url")
    assert "pa:ss" not in unsafe
    [user] = _problems(tmp_path, 'push_username = "dove cot"\n'
                                 'push_password_file = "push-password"\n')
    assert user.startswith('[http] push_username: "dove cot" goes into the url')
