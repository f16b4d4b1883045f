"""Reloading the configuration on SIGHUP (`systemctl reload mailbridge`), between decisions.

Public API: `Reloaded`, `prepare(current, store, clock)`, `restart_keys(old, new)`,
`Reloader` (`request()`, `run(stopping, prepare, apply)`, `reload(...)`).

`prepare` re-reads the file the running configuration came from and checks it as `run` does
(every problem of the file, `mailbridge.daemon.checks.run_problems`, the relay's certificate
and key). From it, it builds what decisions are made with: a new `Ingestor` (agents,
policies, calendars, FAQ, rules, threads, templates) and the relay's logins. Settings read
only at start keep their running values, and `restart_keys` names those that changed: the
store, the HTTP endpoint, [imap], [smtp], [relay] but for its certificate and key, and
[daemon] but for log_level and shutdown_timeout.

`Reloader` runs one reload at a time on the event loop: it tells systemd RELOADING=1 (with
MONOTONIC_USEC) and READY=1 when done, prepares in a worker thread, and hands the result to
`apply`, which the service runs on the loop. If the file has problems nothing changes: each
problem is logged with the file, and `mailbridge_config_last_reload_successful` is 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from mailbridge import logs
from mailbridge.clock import Clock
from mailbridge.config import Config, load_config
from mailbridge.core.policy import Policy
from mailbridge.daemon.checks import run_problems
from mailbridge.daemon.ingest import Ingestor
from mailbridge.daemon.notify import sd_notify
from mailbridge.daemon.waiting import sleep_until
from mailbridge.errors import ConfigError
from mailbridge.io.relay import Credentials, server_context
from mailbridge.logs import fields
from mailbridge.metrics.families import Metrics
from mailbridge.store.db import Store

log = logging.getLogger(__name__)

RESTART_SECTIONS = ("store", "http", "imap", "smtp", "relay", "daemon")
"""Read once at start: a change to them waits for the next start, except `APPLIED`."""
APPLIED = {"relay": frozenset({"certificate", "key"}),
           "daemon": frozenset({"log_level", "shutdown_timeout"})}
"""Keys of `RESTART_SECTIONS` that a reload does apply."""
_SECRET_KEYS = {"password": "password_file", "bearer_token": "bearer_token_file",
                "basic_auth_password": "basic_auth_password_file"}
"""Settings filled from a file: the key the operator writes."""


@dataclass(frozen=True)
class Reloaded:
    """A configuration ready to take over, and what of the file still waits for a restart."""

    config: Config
    """The file's settings, with those of `restart_keys` kept as they run."""
    ingestor: Ingestor
    credentials: Credentials
    restart_keys: tuple[str, ...]

    @property
    def policies(self) -> tuple[Policy, ...]:
        policies = self.ingestor.deadlines.policies
        return (policies.default, *policies.policies)


def _changed(section: str, before: Any, after: Any) -> list[str]:
    """The keys of one table whose values differ, named as the file writes them."""
    if before == after:
        return []
    if not isinstance(before, BaseModel) or not isinstance(after, BaseModel):
        return [f"[{section}]"]
    # [relay] gathers its upstream_* keys into `upstream`: (field, its field) -> file key.
    gathered = {value: key for key, value in getattr(type(before), "FILE_KEYS", {}).items()}
    keys = []
    for name in type(before).model_fields:
        old, new = getattr(before, name), getattr(after, name)
        if old == new or name in APPLIED.get(section, ()):
            continue
        if isinstance(old, BaseModel) and isinstance(new, BaseModel):
            keys += [gathered.get((name, sub), f"{name}.{sub}")
                     for sub in type(old).model_fields if getattr(old, sub) != getattr(new, sub)]
        elif any(field == name for field, _sub in gathered):
            keys.append(f"{name}_*")  # all of them appeared or went
        else:
            keys.append(_SECRET_KEYS.get(name, name))
    return [f"[{section}] {key}" for key in dict.fromkeys(keys)]


def restart_keys(old: Config, new: Config) -> list[str]:
    """The settings of `new` that differ from `old` and take effect only at the next start."""
    return [key for section in RESTART_SECTIONS
            for key in _changed(section, getattr(old, section), getattr(new, section))]


def _effective(old: Config, new: Config) -> Config:
    """`new`, with what only a start applies kept as it runs in `old`."""
    kept: dict[str, Any] = {section: getattr(old, section) for section in RESTART_SECTIONS}
    kept["relay"] = old.relay.model_copy(update={"certificate": new.relay.certificate,
                                                 "key": new.relay.key})
    kept["daemon"] = old.daemon.model_copy(update={
        key: getattr(new.daemon, key) for key in APPLIED["daemon"]})
    return new.model_copy(update=kept)


def prepare(current: Config, store: Store, clock: Clock, *,
            as_running: Callable[[Config], Config] | None = None) -> Reloaded:
    """Read and check the running configuration's file again and build what it decides with;
    raise `ConfigError` listing every problem. Blocking: run it in a worker thread.

    `as_running` puts back what the running configuration settled at start from the file's
    value (the Sent folders `"auto"` found), so that an unchanged key is not a change."""
    if current.path is None:
        raise ConfigError("(no file)", ["this configuration was not read from a file"])
    new = load_config(current.path)
    if as_running is not None:
        new = as_running(new)
    problems = run_problems(new, clock.now())
    relay = new.relay
    if current.relay.enabled and relay.certificate is not None and relay.key is not None:
        try:
            server_context(relay.certificate, relay.key)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            problems.append(f"[relay] certificate, key: cannot be loaded: {exc}")
    if problems:
        raise ConfigError(str(current.path), problems)
    config = _effective(current, new)
    return Reloaded(config, Ingestor.create(config, store, clock),
                    Credentials.from_config(config), tuple(restart_keys(current, new)))


class Reloader:
    """Reloads on request, one at a time, on the event loop."""

    def __init__(self, metrics: Metrics, clock: Clock, policies: tuple[Policy, ...]) -> None:
        self.metrics = metrics
        self.clock = clock
        self.policies = policies
        """Those of the configuration in use, whose metric series a reload replaces."""
        self._wanted = asyncio.Event()

    def request(self) -> None:
        """Reload soon (SIGHUP); several requests while one runs make one more reload."""
        self._wanted.set()

    async def run(self, stopping: asyncio.Event, prepare: Callable[[], Reloaded],
                  apply: Callable[[Reloaded], None]) -> None:
        """Reload whenever requested, until `stopping` is set."""
        while True:
            await sleep_until(self._wanted, stopping, None)
            if stopping.is_set():
                return
            self._wanted.clear()
            await self.reload(prepare, apply)

    async def reload(self, prepare: Callable[[], Reloaded],
                     apply: Callable[[Reloaded], None]) -> bool:
        """One reload: True when the file's configuration is now the one in use."""
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec}")
        try:
            reloaded = await asyncio.to_thread(prepare)
            apply(reloaded)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("config %s", fields(event="reload_refused", file=exc.file,
                                              problem=problem))
            self.metrics.config_refused()
            return False
        except Exception:  # nothing of it applies; the running configuration stays
            log.exception("config %s", fields(event="reload_failed"))
            self.metrics.config_refused()
            return False
        finally:
            sd_notify("READY=1")
        config = reloaded.config
        self.metrics.replace_policies(self.policies, reloaded.policies)
        self.policies = reloaded.policies
        logs.set_level(config.daemon.log_level)
        if reloaded.restart_keys:
            log.warning("config %s", fields(
                event="needs_restart", keys=", ".join(reloaded.restart_keys),
                hint="these need a restart; until then they keep their running values"))
        self.metrics.config_loaded(self.clock.now())
        log.info("config %s", fields(event="reloaded", file=config.path,
                                     agents=len(config.agents), policies=len(self.policies)))
        return True
