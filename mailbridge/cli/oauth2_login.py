"""`mailbridge oauth2-login --config FILE`: sign in once and write [oauth2] refresh_token_file.

Public API: `command(args) -> int`. The flow is the provider's first: the device
authorization grant for Microsoft (and a custom provider with device_authorization_url), a
browser redirected to a listener on 127.0.0.1 for Google (and a custom provider with
authorization_url only); `--flow device|loopback` picks another the provider has, `--port`
the listener's port (to forward it over ssh). The file is written as the daemon rewrites
it, a new file renamed over the old, mode 0600; run as root, it gets the owner of the
state directory. What to open and the code to enter go to stdout, the outcome to stderr
when it failed; no token ever.

Exit codes: 0 written; 1 the provider refused (an error answer, no refresh token, a
redirect that is not this login's); 73 the file cannot be written; 75 the code or the wait
expired, or the provider was unreachable (run it again); 77 the sign-in was declined;
78 the configuration is wrong or lacks what the flow needs; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

from mailbridge.config import load_config
from mailbridge.config.oauth2 import OAuth2Settings
from mailbridge.errors import EX_CANTCREAT, EX_CONFIG, EX_TEMPFAIL, ConfigError
from mailbridge.io.oauth2_login import LoginError, device_login, keep_grant, loopback_login

EX_NOPERM = 77
EXIT_CODES = {"denied": EX_NOPERM, "expired": EX_TEMPFAIL, "unreachable": EX_TEMPFAIL,
              "save_failed": EX_CANTCREAT, "refused": 1, "no_refresh_token": 1}


def command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    settings = config.oauth2
    if settings is None:
        raise ConfigError(str(args.config), [
            '[oauth2]: missing section; oauth2-login signs in to the grant it describes: add '
            '[oauth2] with provider = "microsoft" (or "google") and client_id = "..."'])
    flow = args.flow or (settings.flows[0] if settings.flows else None)
    if flow is None or flow not in settings.flows:
        print(f"{args.config}: {_no_flow(settings, flow)}", file=sys.stderr)
        return EX_CONFIG
    file = settings.refresh_token_path(config.daemon.state_dir)
    replacing = file.exists()
    try:
        if flow == "device":
            answer = device_login(settings, say=_say)
        else:
            answer = loopback_login(settings, say=_say, port=args.port)
        keep_grant(settings, answer, file)
    except LoginError as exc:
        print(f"mailbridge oauth2-login: {exc}", file=sys.stderr)
        return EXIT_CODES[exc.outcome]
    except KeyboardInterrupt:
        print("mailbridge oauth2-login: interrupted; nothing was written", file=sys.stderr)
        return 130
    print(f"{file}: {'replaced' if replacing else 'wrote'} the refresh token (mode 0600). "
          "A running mailbridge uses it at its next refresh; else start it.", flush=True)
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def _no_flow(settings: OAuth2Settings, flow: str | None) -> str:
    """Why `flow` (None: any) cannot sign in with this provider, and what to do."""
    if settings.provider == "google":
        return ("--flow device: Google's device flow does not grant the Gmail scope; leave "
                "out --flow to sign in through a browser (the loopback flow)")
    if settings.provider == "microsoft":
        return ("--flow loopback: mailbridge signs in to Microsoft with the device flow; "
                "leave out --flow")
    if flow is None:
        return ("[oauth2] device_authorization_url, authorization_url: oauth2-login needs "
                "one of them for a custom provider; add device_authorization_url = "
                '"https://login.example.com/oauth2/device" (or authorization_url for a '
                "browser on this machine)")
    key = "device_authorization_url" if flow == "device" else "authorization_url"
    return f"[oauth2] {key}: --flow {flow} needs it; add it, or leave out --flow"
