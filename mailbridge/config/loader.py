"""Loading the configuration file: TOML in, validated `Config` out, or every problem at once.

Public API: `load_config(path, *, environ=None) -> Config`, `demo_config(state_dir) -> Config`.

Loading takes three steps: tomllib parses; `_prepare` settles what depends on the environment
or on other keys (passwords and their files, the state directory, the operator's template
folder, derived defaults); pydantic validates the rest (a language may be one of that
folder's), and `mailbridge.config.problems.describe` turns its errors into the
operator's words.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mailbridge.config.agents import (
    agent_problems,
    describe_error,
)
from mailbridge.config.branding import prepare_images
from mailbridge.config.oauth2 import oauth2_problems, prepare_oauth2
from mailbridge.config.problems import rank, unknown
from mailbridge.config.relay import prepare_relay
from mailbridge.config.secrets import (
    os_reason,
    prepare_ca_file,
    prepare_http_auth,
    prepare_password,
    resolve,
)
from mailbridge.config.sections import SECTIONS, Config, default_state_dir
from mailbridge.config.sla import (
    reference_problems,
)
from mailbridge.config.values import (
    ADDRESS_PATTERN,
    template_context,
)
from mailbridge.errors import ConfigError

# -- loading -----------------------------------------------------------------------------------


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None,
                secrets: bool = True) -> Config:
    """Read and validate the file at `path`; raise ConfigError listing every problem.

    `environ` (default: os.environ) supplies $CREDENTIALS_DIRECTORY and $STATE_DIRECTORY.
    `secrets=False` is for commands that log in nowhere (`replay`): no password, token,
    key or certificate file is opened, none is missing, and every secret is empty.
    """
    env = os.environ if environ is None else environ
    file = Path(path)
    raw = _read_toml(file)
    problems: list[str] = []
    data = _prepare(raw, file.absolute(), env, problems, read=secrets)
    problems += reference_problems(data.get("calendars"), data.get("policies"), data.get("sla"))
    problems += agent_problems(data.get("agents"), data.get("policies"))
    problems += oauth2_problems(data)
    try:
        config = Config.model_validate(data, context=template_context(_templates_dir(data)))
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            problems += describe_error(error, SECTIONS)
    if problems:
        ordered = sorted(dict.fromkeys(problems), key=lambda problem: rank(problem, SECTIONS))
        raise ConfigError(str(path), ordered)
    return config


def demo_config(state_dir: Path) -> Config:
    """The settings of `mailbridge demo`: no mail server, two agents, SQLite in `state_dir`."""
    return Config.model_validate({
        "support": {"address": "support@example.com", "name": "Example Support",
                    "timezone": "Europe/Berlin"},
        "store": {"url": f"sqlite:///{state_dir / 'mailbridge.sqlite3'}"},
        "agents": [{"name": "Dana Whitfield", "email": "dana@example.com"},
                   {"name": "Sam Okafor", "email": "sam@example.com"}],
        "daemon": {"state_dir": state_dir},
    })


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(str(file), [f"cannot read {file}: {os_reason(exc)}"]) from exc
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(str(file), [f"line {line}: not UTF-8 text"]) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.fullmatch(r"(.*) \(at (line \d+, column \d+|end of document)\)", str(exc))
        what, where = (match[1], match[2]) if match else (str(exc), "TOML syntax")
        raise ConfigError(str(file), [f"{where}: {what[:1].lower()}{what[1:]}"]) from exc


def _prepare(
    raw: dict[str, Any], file: Path, env: Mapping[str, str], problems: list[str], *, read: bool
) -> dict[str, Any]:
    """Resolve passwords, paths and the defaults that depend on `env` or on other keys."""
    data, base = dict(raw), file.parent
    if "path" in data:  # Config.path is where the file is, not a key in it
        problems.append(unknown(("path",), data.pop("path"), SECTIONS))
    data["path"] = file
    state_dir = _prepare_state_dir(data, base, env)
    _prepare_templates(data, base, problems)
    prepare_images(data, base, problems)
    store = _table(data, "store", create=True)
    if store is not None and "url" not in store:
        store["url"] = f"sqlite:///{(state_dir or default_state_dir(env)) / 'mailbridge.sqlite3'}"
    for section in ("imap", "smtp"):
        table = _table(data, section)
        if table is not None:
            prepare_password(section, table, base, env, problems, read=read)
            prepare_ca_file(section, table, base, problems, read=read)
    http = _table(data, "http")
    if http is not None:
        prepare_http_auth(http, base, env, problems, read=read)
    prepare_relay(data, base, env, problems, read=read)
    prepare_oauth2(data, base, env, state_dir, problems, read=read)
    _oauth2_usernames(data)
    smtp, support = _table(data, "smtp"), data.get("support")
    if smtp is not None and "helo" not in smtp and isinstance(support, dict):
        address = support.get("address")
        if isinstance(address, str) and ADDRESS_PATTERN.fullmatch(address):
            smtp["helo"] = address.rpartition("@")[2].lower()
    return data


def _oauth2_usernames(data: dict[str, Any]) -> None:
    """With auth = "oauth2", [smtp] username and [relay] upstream_username default to
    [imap] username: the grant is that mailbox's."""
    imap = data.get("imap")
    username = imap.get("username") if isinstance(imap, dict) else None
    if username is None:
        return
    for section, auth, user in (("smtp", "auth", "username"),
                                ("relay", "upstream_auth", "upstream_username")):
        table = data.get(section)
        if isinstance(table, dict) and table.get(auth) == "oauth2" and user not in table:
            table[user] = username


def _table(data: dict[str, Any], name: str, *, create: bool = False) -> dict[str, Any] | None:
    """A private copy of the table `name`, or None when it is absent or not a table."""
    value = data.get(name, {} if create else None)
    if not isinstance(value, dict):
        return None
    copy = data[name] = dict(value)
    return copy


def _prepare_state_dir(data: dict[str, Any], base: Path, env: Mapping[str, str]) -> Path | None:
    """Fill in [daemon] state_dir (relative to the file's directory); return it when valid."""
    daemon = _table(data, "daemon", create=True)
    if daemon is None:
        return None
    if "state_dir" not in daemon:
        daemon["state_dir"] = default_state_dir(env)
    elif isinstance(daemon["state_dir"], str):
        daemon["state_dir"] = resolve(daemon["state_dir"], base)
    state_dir = daemon["state_dir"]
    return state_dir if isinstance(state_dir, Path) else None


def _prepare_templates(data: dict[str, Any], base: Path, problems: list[str]) -> None:
    """Resolve [templates] dir (relative to the file's directory); it must be a readable folder."""
    templates = _table(data, "templates")
    if templates is None or not isinstance(templates.get("dir"), str):
        return
    if not templates["dir"]:
        problems.append('[templates] dir: expected a folder, got ""')
        return
    folder = templates["dir"] = resolve(templates["dir"], base)
    if not folder.exists():
        problems.append(f"[templates] dir: no folder {folder}; create it and copy into it the "
                        "templates to change, as en/ack.txt.j2, or remove the key")
    elif not folder.is_dir():
        problems.append(f"[templates] dir: {folder} is a file; name the folder that holds "
                        "the language folders (en/, de/, ...)")
    elif not os.access(folder, os.R_OK | os.X_OK):
        problems.append(f"[templates] dir: cannot read {folder}: permission denied")


def _templates_dir(data: dict[str, Any]) -> Path | None:
    """The [templates] dir `_prepare` resolved, if any."""
    templates = data.get("templates")
    folder = templates.get("dir") if isinstance(templates, dict) else None
    return folder if isinstance(folder, Path) else None
