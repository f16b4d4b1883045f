"""What works but not as it should: the daemon's degraded parts, for /healthz, systemd's
status line and `mailbridge status`.

Public API: `degraded(config, tokens, watchers=()) -> list[str]`,
`grant_advice(problem, config_file)`.

Down and degraded are kept apart on purpose. A part that is down (a bug: it waits to
restart) makes /healthz answer 503 and stops the watchdog pings, so that systemd restarts a
daemon whose part stays down (`service.Service.health`). A degraded part is one that a
restart cannot mend: an OAuth2 grant the provider refused (revoked, expired, a password
change) stays refused after any number of restarts, and a restart loop would only hammer
the token endpoint and log the same error; so can a mailbox whose server refuses the login
(a wrong password, an app without the IMAP permission) or throttles us. So the daemon stays
up, retries with backoff,
/healthz answers 200 with a body that starts "degraded:" and names each affected part and
what to do, the watchdog keeps being fed, and the alert MailbridgeOAuth2RefreshFailing
(monitoring/) pages. A new `mailbridge oauth2-login` mends it without a restart: the token
source tries the new refresh token file within seconds (`mailbridge.io.oauth2`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mailbridge.config import Config
from mailbridge.io.imap_watcher import ImapWatcher
from mailbridge.io.oauth2 import GrantProblem, TokenSource

LOGIN_HINT = "run `mailbridge oauth2-login --config {file}` again"
CLIENT_HINT = ("check [oauth2] client_id, client_secret_file and scope in {file} against the "
               "app registration")
RETRY_HINT = "retrying with backoff; check the network and the provider's status"
SAVE_HINT = "make the refresh_token_file's directory writable; the new token is held in memory"
_HINTS = {"invalid_client": CLIENT_HINT, "unauthorized_client": CLIENT_HINT,
          "invalid_scope": CLIENT_HINT, "invalid_request": CLIENT_HINT,
          "unsupported_grant_type": CLIENT_HINT, "save_failed": SAVE_HINT}


def grant_advice(problem: GrantProblem, config_file: Path | None) -> str:
    """What went wrong with the grant and what to do, in one line without secrets."""
    file = str(config_file) if config_file is not None else "FILE"
    if problem.needs_login:
        what = "the OAuth2 grant was refused" if problem.reason == "invalid_grant" \
            else "there is no OAuth2 refresh token"
        hint = LOGIN_HINT
    else:
        what = "the OAuth2 token refresh fails"
        hint = _HINTS.get(problem.reason, RETRY_HINT)
    since = problem.since.strftime("%Y-%m-%d %H:%M:%S UTC")
    valid = "; the access token held still works until it expires" if problem.token_valid \
        else "; logins with it fail"
    return (f"{what} ({problem.reason}) since {since}, {problem.failures} failed "
            f"refresh(es){valid}: {hint.format(file=file)}")


def oauth2_parts(config: Config) -> list[str]:
    """The parts that log in with the [oauth2] grant: each watched mailbox, the sender, the
    relay's upstream."""
    parts = []
    imap = config.imap
    if imap is not None and imap.auth == "oauth2":
        parts += [f"mailbox {name}" for name in (imap.mailbox, *imap.sent_names)]
    if config.smtp is not None and config.smtp.auth == "oauth2":
        parts.append("sender")
    upstream = config.relay.upstream if config.relay.enabled else None
    if upstream is not None and upstream.auth == "oauth2":
        parts.append("relay upstream")
    return parts


def degraded(config: Config, tokens: TokenSource | None,
             watchers: Sequence[ImapWatcher] = ()) -> list[str]:
    """One line per degraded part (group); empty while nothing is degraded.

    A grant that needs a new login is degraded from its first refusal (even while the
    access token held still works: the operator has until it expires); a failure that may
    pass (the endpoint unreachable) only once no valid access token is left. A watcher is
    degraded while its server refuses its login or throttles it (`ImapWatcher.problem`)."""
    lines = [f"mailbox {w.mailbox}: {w.problem}" for w in watchers if w.problem]
    problem = tokens.problem() if tokens is not None else None
    if problem is None or (problem.token_valid and not problem.needs_login
                           and problem.reason != "save_failed"):
        return lines
    parts = ", ".join(oauth2_parts(config)) or "oauth2"
    return [f"oauth2 ({parts}): {grant_advice(problem, config.path)}", *lines]
