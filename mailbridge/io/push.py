"""Pushes from the mail server: Dovecot's push_notification plugin (OX driver) at /push/dovecot.

Public API: `Push` and `parse_push(body)`, `PushReceiver(wake, *, metrics, auth=None)`,
called by `mailbridge.io.http.HttpServer` with each request to its `PUSH_PATH`; each push is
counted by outcome (`mailbridge.metrics.families.PUSH_OUTCOMES`): woken (a watcher looks
now), not_watched (no watcher of this instance has that user and folder), ignored_event
(not about new mail), unauthorized (wrong or no credentials), malformed (no user).

Dovecot's LMTP waits for the answer before it confirms the delivery, and logs an error for
anything but 2xx: the receiver answers at once (204) and, once the answer is sent, only
sets a flag, `wake(user, folder)`, which the daemon turns into a look at that mailbox by
its IMAP watcher. Nothing in the body is trusted or kept: IMAP stays the source of truth,
and a forged push costs one look at the mailbox. Older releases of the driver wrote a body
that is no JSON when the message had no From field (the string after "from" was closed
only when From was there); their first three fields, user, event and folder, are always
whole, and are read from that prefix.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from mailbridge.io.http import HttpAuth, Request, Response, Then
from mailbridge.logs import fields
from mailbridge.metrics.families import Metrics

log = logging.getLogger(__name__)

NEW_MAIL_EVENTS = frozenset({"messagenew", "messageappend"})
"""OX sends messageNew; scripts for the Lua driver often send MessageAppend as well."""

_STRING = rb'"((?:[^"\\]|\\.)*)"'
_DOVECOT_PREFIX = re.compile(rb'\s*\{\s*"user"\s*:\s*' + _STRING + rb'\s*,\s*"event"\s*:\s*'
                             + _STRING + rb'\s*,\s*"folder"\s*:\s*' + _STRING)

NO_CONTENT: Response = (204, "text/plain", b"", {})
Wake = Callable[[str, str], bool]
"""wake(user, folder): whether a watcher of that login and folder was asked to look."""


@dataclass(frozen=True)
class Push:
    user: str
    folder: str
    event: str


def parse_push(body: bytes) -> Push | None:
    """The user, folder and event of an OX push body, or None without a user."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return _dovecot_prefix(body)
    if not isinstance(data, dict):
        return None
    user, folder, event = data.get("user"), data.get("folder", "INBOX"), data.get("event", "")
    if not isinstance(user, str) or not user or not isinstance(folder, str) \
            or not isinstance(event, str):
        return None
    return Push(user, folder, event)


def _dovecot_prefix(body: bytes) -> Push | None:
    match = _DOVECOT_PREFIX.match(body)
    if match is None:
        return None
    try:
        user, event, folder = (json.loads(b'"' + part + b'"') for part in match.groups())
    except ValueError:
        return None
    return Push(user, folder, event) if user else None


class PushReceiver:
    """Answers each push at once; `wake` does the rest, without blocking, after the answer:
    the watcher it wakes must not hold up the answer LMTP waits for."""

    def __init__(self, wake: Wake, *, metrics: Metrics, auth: HttpAuth | None = None) -> None:
        self.wake = wake
        self.metrics = metrics
        self.auth = auth
        self._told: set[str] = set()

    def __call__(self, request: Request) -> tuple[Response, Then]:
        if request.method not in (b"PUT", b"POST"):
            return (405, "text/plain", b"PUT or POST a push here\n", {"Allow": "PUT, POST"}), None
        if self.auth is not None and not self.auth.allows(request.header(b"authorization")):
            self._count("unauthorized", hint="the user:pass@ in Dovecot's push_notification_"
                        "driver url does not match [http] push_username / push_password_file")
            return (401, "text/plain", b"unauthorized\n",
                    {"WWW-Authenticate": 'Basic realm="mailbridge push"'}), None
        push = parse_push(request.body)
        if push is None:
            self._count("malformed", hint="expected the JSON body of Dovecot's OX push driver")
            return (400, "text/plain", b"expected the JSON body of Dovecot's OX driver\n",
                    {}), None
        log.debug("push %s", fields(event="received", user=push.user, folder=push.folder,
                                    kind=push.event))
        if push.event and push.event.lower() not in NEW_MAIL_EVENTS:
            self._count("ignored_event")
            return NO_CONTENT, None
        return NO_CONTENT, functools.partial(self._wake, push)

    def _wake(self, push: Push) -> None:
        if self.wake(push.user, push.folder):
            self._count("woken")
        else:
            self._count("not_watched", folder=push.folder,
                        hint="no watcher here has the push's user and folder: check [imap] "
                        "username and mailbox (Dovecot pushes for INBOX only), and user= in "
                        "the http-notify METADATA with user_from_metadata")

    def _count(self, outcome: str, *, hint: str = "", folder: str | None = None) -> None:
        """Count the outcome; a failing one is logged the first time only (the metric counts
        the rest), since Dovecot pushes once per delivered message."""
        self.metrics.push_notifications.labels(outcome).inc()
        if hint and outcome not in self._told:
            self._told.add(outcome)
            log.warning("push %s", fields(event=outcome, folder=folder, hint=hint, once=True))
