"""/push/dovecot on a real socket: what is answered, what wakes a watcher, what is counted."""

from __future__ import annotations

import asyncio
import base64
import json

from prometheus_client import CollectorRegistry

from mailbridge.io.http import MAX_BODY, HttpAuth, HttpServer
from mailbridge.io.push import PushReceiver, parse_push
from mailbridge.io.wakeup import Wakeup
from mailbridge.metrics.families import PUSH_OUTCOMES, Metrics
from tests.io.test_http import _request as _send

OX_BODY = json.dumps({
    "user": "support@example.com", "event": "messageNew", "folder": "INBOX",
    "imap-uidvalidity": 1796628947, "imap-uid": 1, "from": "Ana <ana@example.org>",
    "subject": "Help", "snippet": "Hello", "unseen": 1}).encode()


def _put(body: bytes, *, method: str = "PUT", extra: str = "",
         length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return (f"{method} /push/dovecot HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {size}\r\n"
            f"{extra}\r\n").encode() + body


def _basic(user: str, password: str) -> str:
    return "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() \
        + "\r\n"


class Endpoint:
    """An HttpServer with a PushReceiver whose wake records what it was asked."""

    def __init__(self, *, auth: HttpAuth | None = None, watched: bool = True) -> None:
        self.registry = CollectorRegistry()
        self.woken: list[tuple[str, str]] = []
        self.watched = watched
        receiver = PushReceiver(self._wake, metrics=Metrics(self.registry, []), auth=auth)
        self.server = HttpServer("127.0.0.1", 0, self.registry, lambda: None, push=receiver)

    def _wake(self, user: str, folder: str) -> bool:
        self.woken.append((user, folder))
        return self.watched

    def count(self, outcome: str) -> float:
        value = self.registry.get_sample_value("mailbridge_push_notifications_total",
                                               {"outcome": outcome})
        return value or 0.0

    def exchange(self, *requests: bytes) -> list[bytes]:
        async def scenario() -> list[bytes]:
            await self.server.start()
            try:
                return [await _send(self.server.port, raw) for raw in requests]
            finally:
                await self.server.close()

        return asyncio.run(scenario())


def test_a_push_is_answered_204_and_wakes_its_mailbox() -> None:
    """PUT and POST with the OX driver's body get 204 without a body and wake (user, folder)."""
    endpoint = Endpoint()
    put, post = endpoint.exchange(_put(OX_BODY), _put(OX_BODY, method="POST"))
    for reply in (put, post):
        assert reply.startswith(b"HTTP/1.1 204 No Content\r\n")
        assert reply.endswith(b"\r\n\r\n") and b"Content-Length" not in reply
    assert endpoint.woken == [("support@example.com", "INBOX")] * 2
    assert endpoint.count("woken") == 2
    assert {o: endpoint.count(o) for o in PUSH_OUTCOMES if o != "woken"} == dict.fromkeys(
        ("not_watched", "ignored_event", "unauthorized", "malformed"), 0.0)


def test_wrong_credentials_get_401_and_wake_nothing() -> None:
    """With push credentials set, a missing or wrong Basic login is refused; the right one,
    whatever the metrics' credentials are, is let in."""
    endpoint = Endpoint(auth=HttpAuth(basic_user="dovecot", basic_password="s3cret"))
    none, wrong, other_user, right = endpoint.exchange(
        _put(OX_BODY), _put(OX_BODY, extra=_basic("dovecot", "s3cret2")),
        _put(OX_BODY, extra=_basic("prometheus", "s3cret")),
        _put(OX_BODY, extra=_basic("dovecot", "s3cret")))
    for refused in (none, wrong, other_user):
        assert refused.startswith(b"HTTP/1.1 401 Unauthorized")
        assert b'WWW-Authenticate: Basic realm="mailbridge push"' in refused
    assert right.startswith(b"HTTP/1.1 204")
    assert endpoint.woken == [("support@example.com", "INBOX")]
    assert (endpoint.count("unauthorized"), endpoint.count("woken")) == (3, 1)


def test_a_push_for_someone_else_is_answered_and_ignored() -> None:
    """An unwatched user or folder is answered 2xx (no error in Dovecot's log) and counted."""
    endpoint = Endpoint(watched=False)
    [reply] = endpoint.exchange(_put(OX_BODY.replace(b"support@", b"sales@")))
    assert reply.startswith(b"HTTP/1.1 204")
    assert endpoint.woken == [("sales@example.com", "INBOX")]
    assert endpoint.count("not_watched") == 1 and endpoint.count("woken") == 0


def test_bodies_that_are_not_a_push() -> None:
    """No user: 400 and counted as malformed; another event: 204 and ignored; no length:
    411; other methods: 405 naming the allowed ones."""
    endpoint = Endpoint()
    replies = endpoint.exchange(
        _put(b"not json"), _put(b'{"event":"messageNew"}'), _put(b"[1, 2]"),
        _put(b"[" * 100000), _put(OX_BODY.replace(b"messageNew", b"FlagsSet")),
        b"PUT /push/dovecot HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /push/dovecot HTTP/1.1\r\n\r\n")
    for malformed in replies[:4]:
        assert malformed.startswith(b"HTTP/1.1 400")
    assert replies[4].startswith(b"HTTP/1.1 204")
    assert replies[5].startswith(b"HTTP/1.1 411")
    assert replies[6].startswith(b"HTTP/1.1 405") and b"Allow: PUT, POST" in replies[6]
    assert endpoint.woken == []
    assert (endpoint.count("malformed"), endpoint.count("ignored_event")) == (4, 1)


def test_a_broken_dovecot_body_still_wakes() -> None:
    """The prefix an older OX driver wrote for mail without From (not JSON) is still read."""
    broken = (b'{"user":"support@example.com","event":"messageNew","folder":"INBOX",'
              b'"imap-uidvalidity":1,"imap-uid":7","subject":"Hi \\"there\\"","unseen":1}')
    assert parse_push(broken) is not None
    endpoint = Endpoint()
    [reply] = endpoint.exchange(_put(broken))
    assert reply.startswith(b"HTTP/1.1 204")
    assert endpoint.woken == [("support@example.com", "INBOX")]


def test_body_size_is_bounded() -> None:
    """An over-long body is read up to a bound and its first fields still count; one past
    the discard limit is refused with 413 without being read; Expect: 100-continue works."""
    long_subject = OX_BODY.replace(b'"Help"', b'"' + b"x" * (3 * MAX_BODY) + b'"')
    endpoint = Endpoint()
    long, huge, expect = endpoint.exchange(
        _put(long_subject), _put(b"", length=10**9),
        _put(OX_BODY, extra="Expect: 100-continue\r\n"))
    assert long.startswith(b"HTTP/1.1 204")
    assert huge.startswith(b"HTTP/1.1 413")
    assert expect.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204")
    assert endpoint.woken == [("support@example.com", "INBOX")] * 2


def test_the_metrics_routes_stay_as_they_were() -> None:
    """/metrics still refuses PUT, and the push path is not served without a receiver."""
    server = HttpServer("127.0.0.1", 0, CollectorRegistry(), lambda: None)

    async def scenario() -> list[bytes]:
        await server.start()
        try:
            return [await _send(server.port, _put(OX_BODY).replace(b"/push/dovecot",
                                                                  b"/metrics")),
                    await _send(server.port, _put(OX_BODY))]
        finally:
            await server.close()

    metrics, push = asyncio.run(scenario())
    assert metrics.startswith(b"HTTP/1.1 405") and b"Allow: GET, HEAD" in metrics
    assert push.startswith(b"HTTP/1.1 405")


def test_wakeups_coalesce() -> None:
    """Any number of wake-ups before a look count once; the next one counts again."""
    wakeup = Wakeup()
    try:
        assert not wakeup.wait(0) and not wakeup.take()
        for _ in range(1000):
            wakeup.set()
        assert wakeup.pending and wakeup.wait(0)
        assert wakeup.take() and not wakeup.take()
        assert not wakeup.wait(0)
        wakeup.set()
        assert wakeup.take()
    finally:
        wakeup.close()
    wakeup.set()  # after close: a no-op, not an error
