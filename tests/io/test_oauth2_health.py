"""What a failing OAuth2 grant looks like to health and `status`, and how a new login mends
it: the token source's `problem()`, the degraded lines (`daemon.health`), and the new
refresh token file tried within seconds, against the test's rotating token endpoint."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailbridge.clock import FakeClock
from mailbridge.config import Config, load_config
from mailbridge.daemon.health import degraded
from mailbridge.io.backoff import Backoff
from mailbridge.io.oauth2 import FILE_CHECK, TokenError, TokenSource
from tests.configs import MINIMAL
from tests.oauth2_token_endpoint import TokenEndpoint

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(lifetime=600.0).start()
    yield endpoint
    endpoint.stop()


def _config(tmp_path: Path, endpoint: TokenEndpoint, *, smtp: bool = True) -> Config:
    path = tmp_path / "mailbridge.toml"
    smtp_section = '[smtp]\nhost = "127.0.0.1"\nauth = "oauth2"\n' if smtp else ""
    path.write_text(f"""{MINIMAL}
[imap]
host = "127.0.0.1"
username = "support@example.com"
auth = "oauth2"
sent_folders = ["Sent Items"]
{smtp_section}
[oauth2]
provider = "custom"
token_url = "{endpoint.url}"
client_id = "{endpoint.client_id}"
[daemon]
state_dir = "{tmp_path}"
""", encoding="utf-8")
    return load_config(path)


def _source(config: Config, clock: FakeClock) -> TokenSource:
    assert config.oauth2 is not None
    return TokenSource.from_config(config.oauth2, state_dir=config.daemon.state_dir,
                                   clock=clock, backoff=Backoff(initial=600.0, cap=600.0))


def _login(file: Path, refresh_token: str) -> None:
    """What `mailbridge oauth2-login` leaves: a new file renamed over the old one."""
    new = file.with_name(".login")
    new.write_text(refresh_token + "\n", encoding="utf-8")
    os.chmod(new, 0o600)
    os.replace(new, file)


def test_a_revoked_grant_is_degraded_with_the_login_to_run_and_a_new_login_mends_it(
        tmp_path: Path, endpoint: TokenEndpoint) -> None:
    """invalid_grant names the mailboxes and the sender and the command with the config
    file; the token file a new login writes is tried at the next look, not after the
    backoff, and health is clear again."""
    config = _config(tmp_path, endpoint)
    clock = FakeClock(T0)
    file = tmp_path / "oauth2-refresh-token"
    _login(file, endpoint.refresh_token)
    tokens = _source(config, clock)
    assert tokens.problem() is None and degraded(config, tokens) == []
    endpoint.revoke_grant()
    with pytest.raises(TokenError):
        tokens.access_token()
    problem = tokens.problem()
    assert problem is not None
    assert (problem.reason, problem.failures, problem.token_valid, problem.needs_login) == \
        ("invalid_grant", 1, False, True)
    assert problem.since == T0
    [line] = degraded(config, tokens)
    assert line.startswith("oauth2 (mailbox INBOX, mailbox Sent Items, sender): "
                           "the OAuth2 grant was refused (invalid_grant) since "
                           "2025-03-03 09:00:00 UTC")
    assert line.endswith(f"run `mailbridge oauth2-login --config {config.path}` again")
    assert endpoint.refresh_token not in line

    clock.advance(timedelta(seconds=1))
    assert tokens.next_refresh_in() == FILE_CHECK  # the backoff is 600 s; the file is looked at
    refreshes = endpoint.refreshes
    _login(file, endpoint.new_grant())
    assert tokens.next_refresh_in() == 0  # the new login's token, now
    tokens.access_token()
    assert endpoint.refreshes == refreshes + 1
    assert tokens.problem() is None and degraded(config, tokens) == []
    assert file.read_text().strip() == endpoint.refresh_token  # rotated and saved again


def test_an_unreachable_endpoint_degrades_only_once_the_token_held_expires(
        tmp_path: Path, endpoint: TokenEndpoint) -> None:
    """A failure that may pass is not degraded while the access token still works; it is
    once the token expired, with what to check rather than a new login."""
    config = _config(tmp_path, endpoint, smtp=False)
    clock = FakeClock(T0)
    _login(tmp_path / "oauth2-refresh-token", endpoint.refresh_token)
    tokens = _source(config, clock)
    tokens.access_token()
    endpoint.stop()  # the provider is unreachable
    clock.advance(timedelta(seconds=500))  # past the refresh point, before expiry (600 s)
    tokens.access_token()  # the failed refresh still hands out the valid token
    problem = tokens.problem()
    assert problem is not None and (problem.reason, problem.token_valid) == ("unreachable", True)
    assert degraded(config, tokens) == []
    clock.advance(timedelta(seconds=101))
    [line] = degraded(config, tokens)
    assert line.startswith("oauth2 (mailbox INBOX, mailbox Sent Items): the OAuth2 token "
                           "refresh fails "
                           "(unreachable) since 2025-03-03 09:08:20 UTC, 1 failed refresh(es); "
                           "logins with it fail: retrying with backoff")


def test_a_source_that_was_never_refused_is_not_degraded(tmp_path: Path,
                                                         endpoint: TokenEndpoint) -> None:
    """A grant that works, and a daemon without [oauth2], report nothing."""
    config = _config(tmp_path, endpoint)
    clock = FakeClock(T0)
    _login(tmp_path / "oauth2-refresh-token", endpoint.refresh_token)
    tokens = _source(config, clock)
    tokens.access_token()
    assert tokens.problem() is None
    assert degraded(config, tokens) == [] and degraded(config, None) == []


def test_a_late_refusal_of_a_stale_token_keeps_the_backoff(tmp_path: Path,
                                                         endpoint: TokenEndpoint) -> None:
    """Two logins started with the same token: the first refusal leads to one failed refresh;
    the second, later, refusal does not bring the next refresh forward."""
    config = _config(tmp_path, endpoint)
    clock = FakeClock(T0)
    _login(tmp_path / "oauth2-refresh-token", endpoint.refresh_token)
    tokens = _source(config, clock)
    token = tokens.access_token()
    endpoint.revoke_grant()
    tokens.refused(token)  # the first login
    with pytest.raises(TokenError):
        tokens.access_token()
    tokens.refused(token)  # the second login, refused later
    with pytest.raises(TokenError):
        tokens.access_token()
    assert endpoint.failures == 1 and tokens.next_refresh_in() == FILE_CHECK
