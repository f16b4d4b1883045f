"""Listening sockets handed over by systemd (socket activation), with the stdlib only.

Public API: `inherited_sockets(environ=os.environ, pid=None) -> dict[str, socket.socket]`,
`relay_socket(enabled=..., environ=os.environ, pid=None)`, `RELAY_NAMES`.

systemd passes the sockets of the units that trigger a service as file descriptors 3, 4, ...
and says so in `$LISTEN_PID` (the process they are for), `$LISTEN_FDS` (how many) and
`$LISTEN_FDNAMES` (their `FileDescriptorName=`s, colon-separated), as `sd_listen_fds(3)`
describes. This is how `systemd/mailbridge-relay.socket` gives the relay port 587, which the
hardened unit may not bind itself. The variables are removed once read, so that no child
process takes the sockets for its own; the descriptors are made close-on-exec.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping

from mailbridge.logs import fields

log = logging.getLogger(__name__)

LISTEN_FDS_START = 3
RELAY_NAMES = ("relay", "mailbridge-relay.socket")
"""The names the relay's socket may have: the socket unit's FileDescriptorName=, or systemd's
default, the unit's name."""
_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def inherited_sockets(environ: MutableMapping[str, str] | None = None,
                      pid: int | None = None) -> dict[str, socket.socket]:
    """The listening sockets systemd passed to this process, by name ("unknown" when it gave
    no names); {} when none were passed, or when they were meant for another process."""
    env = os.environ if environ is None else environ
    values = {name: env.pop(name, "") for name in _VARIABLES}
    if not values["LISTEN_FDS"]:
        return {}
    try:
        count, meant_for = int(values["LISTEN_FDS"]), int(values["LISTEN_PID"])
    except ValueError:
        log.warning("systemd %s", fields(event="listen_fds_ignored", reason="not numbers"))
        return {}
    if meant_for != (os.getpid() if pid is None else pid):
        return {}  # inherited from a parent that did not use them
    names = values["LISTEN_FDNAMES"].split(":") if values["LISTEN_FDNAMES"] else []
    found: dict[str, socket.socket] = {}
    for number in range(count):
        fd = LISTEN_FDS_START + number
        name = names[number] if number < len(names) else "unknown"
        try:
            os.set_inheritable(fd, False)
            found[name] = socket.socket(fileno=fd)
        except OSError as exc:  # not open, or not a socket
            log.warning("systemd %s", fields(event="listen_fd_unusable", fd=fd, name=name,
                                             error=exc.strerror or str(exc)))
    return found


def relay_socket(*, enabled: bool, environ: MutableMapping[str, str] | None = None,
                 pid: int | None = None) -> socket.socket | None:
    """The relay's listening socket, when systemd passed one: the one named so, or the only
    one unnamed. Any other (and the relay's while the relay is off) is closed, with a
    warning: nobody would answer on it."""
    sockets = inherited_sockets(environ, pid)
    names = [*RELAY_NAMES, *(["unknown"] if list(sockets) == ["unknown"] else [])]
    mine = next((sockets.pop(name) for name in names if name in sockets), None)
    if mine is not None and not enabled:
        sockets["relay"], mine = mine, None
    for name, sock in sockets.items():
        log.warning("systemd %s", fields(
            event="socket_unused", name=name,
            hint="[relay] enabled = true uses the relay's; other sockets are not for us"))
        sock.close()
    return mine
