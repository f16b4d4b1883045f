"""`mailbridge oauth2-login`, run as a process against a token endpoint served by the test:
the device flow through pending and slow_down, declined and expired codes; the loopback
flow with the test as the browser, a forged redirect refused; an answer without a refresh
token; then the daemon's token source refreshing with the file written. And check-config
naming the command while the file is missing."""

from __future__ import annotations

import os
import queue
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailbridge.cli import main
from mailbridge.config import load_config
from mailbridge.config.oauth2 import OAuth2Settings
from mailbridge.errors import ConfigError
from mailbridge.io.oauth2 import TokenSource
from mailbridge.io.oauth2_login import LoginError, loopback_login
from tests.configs import MINIMAL
from tests.oauth2_token_endpoint import TokenEndpoint

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCOPE = "mail.imap mail.smtp offline_access"
CLIENT_SECRET = "test-client-secret-7f3a"


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(lifetime=600.0, client_secret=CLIENT_SECRET).start()
    yield endpoint
    endpoint.stop()


def _config(tmp_path: Path, endpoint: TokenEndpoint, *, device: bool = True,
            loopback: bool = True) -> Path:
    (tmp_path / "oauth2-client-secret").write_text(CLIENT_SECRET + "\n")
    urls = (f'device_authorization_url = "{endpoint.device_url}"\n' if device else "") + \
        (f'authorization_url = "{endpoint.authorize_url}"\n' if loopback else "")
    path = tmp_path / "mailbridge.toml"
    path.write_text(f"""{MINIMAL}
[imap]
host = "127.0.0.1"
username = "support@example.com"
auth = "oauth2"

[smtp]
host = "127.0.0.1"
auth = "oauth2"

[oauth2]
provider = "custom"
token_url = "{endpoint.url}"
{urls}client_id = "{endpoint.client_id}"
client_secret_file = "oauth2-client-secret"
scope = "{SCOPE}"

[daemon]
state_dir = "{tmp_path / 'state'}"
""")
    return path


def _token_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "oauth2-refresh-token"


class _Login:
    """`mailbridge oauth2-login` as a child process, its output read line by line."""

    def __init__(self, config: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in (
            "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailbridge", "oauth2-login", "--config", str(config),
             *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        # Each pipe has one reader, its own thread: nothing else reads stdout or stderr.
        self._readers = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.out.append(line)
            self.lines.put(line)

    def _read_err(self) -> None:
        assert self.process.stderr is not None
        self.err.extend(self.process.stderr)

    def line_starting(self, prefix: str, timeout: float = 30.0) -> str:
        while True:
            line = self.lines.get(timeout=timeout)  # queue.Empty: the deadline passed
            if line.startswith(prefix):
                return line.strip()

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        for reader in self._readers:
            reader.join(timeout)
        return self.process.returncode, "".join(self.out), "".join(self.err)


def _no_secret_in(texts: list[str], endpoint: TokenEndpoint) -> None:
    secrets = [*endpoint.handed_out, *endpoint.issued(), endpoint.refresh_token,
               CLIENT_SECRET]
    for text in texts:
        for secret in secrets:
            assert secret not in text


def _refreshes_with_the_file(tmp_path: Path, config: Path, endpoint: TokenEndpoint) -> None:
    """The daemon's token source, built from the same configuration, logs in with it."""
    loaded = load_config(config, environ={})
    assert loaded.oauth2 is not None
    tokens = TokenSource.from_config(loaded.oauth2, state_dir=loaded.daemon.state_dir)
    token = tokens.access_token()
    assert endpoint.valid(token) and endpoint.refreshes == 1
    assert _token_file(tmp_path).read_text() == endpoint.refresh_token + "\n"  # rotated


# -- the device flow ---------------------------------------------------------------------------


def test_device_login_waits_out_pending_and_slow_down_then_writes_the_token(
        tmp_path: Path, endpoint: TokenEndpoint, caplog: pytest.LogCaptureFixture) -> None:
    """The code and where to enter it are shown; polls keep the interval, 5 s more after
    slow_down; the approved grant's refresh token is written, mode 0600, and refreshes."""
    endpoint.device_script = ["authorization_pending", "slow_down", "approved"]
    config = _config(tmp_path, endpoint)
    login = _Login(config)
    code, out, err = login.finish()
    assert code == 0, err
    assert "https://login.example.test/device" in out and "WDJB-MJHT" in out
    file = _token_file(tmp_path)
    assert file.read_text() == endpoint.refresh_token + "\n"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert f"{file}: wrote the refresh token" in out
    assert endpoint.device_requests[0]["scope"] == SCOPE
    first, second, third = endpoint.device_polls
    assert second - first >= 0.9  # the interval (1 s)
    assert third - second >= 5.9  # slow_down: 1 s + 5 s
    _refreshes_with_the_file(tmp_path, config, endpoint)
    _no_secret_in([out, err, caplog.text], endpoint)


def test_a_poll_lost_on_the_way_is_waited_out(tmp_path: Path, endpoint: TokenEndpoint) -> None:
    """A poll whose connection ends unanswered is tried again after a doubled interval
    (RFC 8628 3.5), and the sign-in still completes."""
    endpoint.device_script = ["drop", "approved"]
    code, _, err = _Login(_config(tmp_path, endpoint)).finish()
    assert code == 0, err
    first, second = endpoint.device_polls
    assert second - first >= 1.9  # 1 s doubled
    assert _token_file(tmp_path).read_text() == endpoint.refresh_token + "\n"


@pytest.mark.parametrize(("answer", "exit_code", "words"), [
    ("authorization_declined", 77, "declined"),  # Microsoft's name
    ("access_denied", 77, "declined"),  # RFC 8628's
    ("expired_token", 75, "expired"),
    ("invalid_scope", 1, "invalid_scope"),
])
def test_a_device_login_that_ends_without_approval_writes_nothing(
        tmp_path: Path, endpoint: TokenEndpoint, answer: str, exit_code: int,
        words: str) -> None:
    """Declined, expired or refused: one line saying so, its own exit code, no file."""
    endpoint.device_script = ["authorization_pending", answer]
    code, out, err = _Login(_config(tmp_path, endpoint)).finish()
    assert code == exit_code
    assert err.startswith("mailbridge oauth2-login: ") and words in err
    assert len(err.strip().splitlines()) == 1 and "nothing was written" in err
    assert not _token_file(tmp_path).exists()
    _no_secret_in([out, err], endpoint)


def test_an_answer_without_a_refresh_token_names_the_cause_and_keeps_the_old_file(
        tmp_path: Path, endpoint: TokenEndpoint) -> None:
    """Approved, but no refresh_token (offline access not asked for): exit 1, the likely
    cause named, and the file there before left as it was."""
    endpoint.omit_refresh_token = True
    file = _token_file(tmp_path)
    file.parent.mkdir()
    file.write_text("the-previous-grant\n")
    code, out, err = _Login(_config(tmp_path, endpoint)).finish()
    assert code == 1
    assert "no refresh_token" in err and "offline_access" in err
    assert file.read_text() == "the-previous-grant\n"
    _no_secret_in([out, err], endpoint)


# -- the loopback flow -------------------------------------------------------------------------


def test_loopback_login_with_the_test_as_the_browser(
        tmp_path: Path, endpoint: TokenEndpoint) -> None:
    """The printed address leads, through the provider's redirect, to the listener on
    127.0.0.1, which thanks the browser; the code is exchanged with its PKCE verifier and
    the client secret, and the refresh token is written, mode 0600."""
    config = _config(tmp_path, endpoint, device=False)  # loopback: the only flow it has
    login = _Login(config)
    url = login.line_starting(endpoint.authorize_url)
    back = login.line_starting("The browser is sent back to ")
    listener = back.split()[6]
    with pytest.raises(urllib.error.HTTPError) as stray:  # a browser asks for its icon
        urllib.request.urlopen(f"{listener}favicon.ico", timeout=10)
    assert stray.value.code == 404
    with urllib.request.urlopen(url, timeout=30) as page:  # follows the redirect back
        assert page.status == 200 and page.url.startswith(listener)
        assert "Signed in" in page.read().decode()
    code, out, err = login.finish()
    assert code == 0, err
    query = endpoint.authorize_queries[0]
    assert query["code_challenge_method"] == "S256" and query["scope"] == SCOPE
    assert query["redirect_uri"] == listener and len(query["state"]) >= 20
    assert endpoint.codes_redeemed == 1
    file = _token_file(tmp_path)
    assert file.read_text() == endpoint.refresh_token + "\n"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    _refreshes_with_the_file(tmp_path, config, endpoint)
    _no_secret_in([out, err], endpoint)


def test_loopback_refuses_a_redirect_with_another_state(
        tmp_path: Path, endpoint: TokenEndpoint) -> None:
    """A redirect to the listener that does not carry this login's state (forged, or from
    an older login) is refused, in the browser and with exit 1; no code is redeemed."""
    login = _Login(_config(tmp_path, endpoint), "--flow", "loopback")
    login.line_starting(endpoint.authorize_url)
    listener = login.line_starting("The browser is sent back to ").split()[6]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{listener}?code=attackers-code&state=forged", timeout=10)
    assert refused.value.code == 400
    assert "does not belong to the sign-in" in refused.value.read().decode()
    code, out, err = login.finish()
    assert code == 1 and "state" in err
    _no_secret_in([out, err], endpoint) and "nothing was written" in err
    assert endpoint.codes_redeemed == 0 and not _token_file(tmp_path).exists()


def test_loopback_login_declined_at_the_provider(
        tmp_path: Path, endpoint: TokenEndpoint) -> None:
    """The provider sends the browser back with access_denied: exit 77, nothing written."""
    endpoint.authorize_error = "access_denied"
    login = _Login(_config(tmp_path, endpoint), "--flow", "loopback")
    url = login.line_starting(endpoint.authorize_url)
    with pytest.raises(urllib.error.HTTPError) as page:
        urllib.request.urlopen(url, timeout=30)
    assert page.value.code == 403
    code, _, err = login.finish()
    assert code == 77 and "declined" in err
    assert not _token_file(tmp_path).exists()


# -- configuration -----------------------------------------------------------------------------


def test_check_config_names_the_login_while_the_token_file_is_missing_or_empty(
        tmp_path: Path, endpoint: TokenEndpoint, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing or empty refresh_token_file is one problem (exit 78) naming the file and
    `mailbridge oauth2-login --config FILE`; with a token the file is fine."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    config = _config(tmp_path, endpoint)
    file = _token_file(tmp_path)
    expected = f"run `mailbridge oauth2-login --config {config}`"
    assert main(["check-config", str(config)]) == 78
    err = capsys.readouterr().err
    assert f"  - [oauth2] refresh_token_file: {file} does not exist; {expected}" in err
    file.parent.mkdir()
    file.write_text("\n")
    assert main(["check-config", str(config)]) == 78
    assert f"{file} is empty; {expected}" in capsys.readouterr().err
    file.write_text("a-refresh-token\n")
    assert main(["check-config", str(config)]) == 0
    assert "ok" in capsys.readouterr().out
    assert endpoint.refreshes == 0 and endpoint.failures == 0  # never called


def test_login_endpoints_are_checked_like_the_token_url(tmp_path: Path) -> None:
    """Plain http only to the loopback; a preset refuses endpoints it knows itself."""
    path = tmp_path / "c.toml"
    path.write_text(f'{MINIMAL}\n[oauth2]\nprovider = "custom"\n'
                    'token_url = "https://login.example.com/token"\n'
                    'device_authorization_url = "http://login.example.com/device"\n'
                    'client_id = "x"\n')
    with pytest.raises(ConfigError) as bad:
        load_config(path)
    assert "plain http is allowed only to 127.0.0.1 or ::1" in str(bad.value)
    assert "device_authorization_url" in str(bad.value)
    path.write_text(f'{MINIMAL}\n[oauth2]\nprovider = "google"\nclient_id = "x"\n'
                    'authorization_url = "https://accounts.example.com/auth"\n')
    with pytest.raises(ConfigError) as preset:
        load_config(path)
    assert "authorization_url: the google preset knows its endpoints" in str(preset.value)


@pytest.mark.parametrize(("oauth2", "flow", "words"), [
    ('provider = "google"', "device", "does not grant the Gmail scope"),
    ('provider = "microsoft"', "loopback", "device flow"),
    ('provider = "custom"\ntoken_url = "https://login.example.com/token"', None,
     "device_authorization_url, authorization_url"),
])
def test_a_flow_the_provider_lacks_is_a_configuration_error(
        tmp_path: Path, oauth2: str, flow: str | None, words: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Google has no device flow for Gmail, mailbridge signs in to Microsoft with the
    device flow, a custom provider needs an endpoint: exit 78, saying so."""
    path = tmp_path / "c.toml"
    path.write_text(f'{MINIMAL}\n[oauth2]\n{oauth2}\nclient_id = "x"\n'
                    f'[daemon]\nstate_dir = "{tmp_path}"\n')
    assert main(["oauth2-login", "--config", str(path),
                 *(["--flow", flow] if flow else [])]) == 78
    assert words in capsys.readouterr().err
    assert not (tmp_path / "oauth2-refresh-token").exists()


def test_run_by_root_the_file_belongs_to_the_state_directorys_owner(
        tmp_path: Path, endpoint: TokenEndpoint) -> None:
    """`sudo mailbridge oauth2-login` leaves a file the daemon's user can read and replace."""
    if os.geteuid() != 0:
        pytest.skip("only root can give a file away")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    code, _, err = _Login(_config(tmp_path, endpoint)).finish()
    assert code == 0, err
    owner = _token_file(tmp_path).stat()
    assert (owner.st_uid, owner.st_gid) == (65534, 65534)
    assert stat.S_IMODE(owner.st_mode) == 0o600


def test_the_presets_sign_in_where_microsoft_and_google_expect(tmp_path: Path) -> None:
    """Microsoft: the device flow at the tenant's devicecode endpoint with the IMAP, SMTP
    and offline_access scopes. Google: the browser sent to accounts.google.com for the Gmail
    scope, offline, with consent (else no refresh token), PKCE S256 and a 127.0.0.1
    redirect; here declined in the browser, so nothing goes to Google's token endpoint."""
    microsoft = OAuth2Settings(provider="microsoft", tenant="contoso.onmicrosoft.com",
                               client_id="app")
    assert microsoft.flows == ("device",)
    assert microsoft.device_endpoint == \
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode"
    assert microsoft.scopes == "https://outlook.office.com/IMAP.AccessAsUser.All " \
        "https://outlook.office.com/SMTP.Send offline_access"
    google = OAuth2Settings(provider="google", client_id="app.apps.googleusercontent.com")
    assert google.flows == ("loopback",)
    said: queue.Queue[str] = queue.Queue()
    outcome: list[BaseException] = []

    def login() -> None:
        try:
            loopback_login(google, say=said.put, timeout=60)
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    thread = threading.Thread(target=login, daemon=True)
    thread.start()
    url = ""
    while not url.startswith("https://"):
        url = said.get(timeout=30)
    address = urllib.parse.urlsplit(url)
    assert f"{address.scheme}://{address.netloc}{address.path}" == \
        "https://accounts.google.com/o/oauth2/v2/auth"
    query = dict(urllib.parse.parse_qsl(address.query))
    assert query["scope"] == "https://mail.google.com/"
    assert (query["access_type"], query["prompt"]) == ("offline", "consent")
    assert (query["response_type"], query["code_challenge_method"]) == ("code", "S256")
    assert query["redirect_uri"].startswith("http://127.0.0.1:")
    back = f"{query['redirect_uri']}?error=access_denied&state={query['state']}"
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(back, timeout=10)
    thread.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], LoginError)
    assert outcome[0].outcome == "denied"
