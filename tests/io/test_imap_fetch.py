"""The watcher's FETCH reader returns what imapclient's parser returns, or raises as it does.

`mailbridge.io.imap_fetch.parse_fetch` reads responses in one pass instead of byte by byte;
imapclient's `parse_fetch_response` is the reference. Compared here on hand-written responses
(the shapes servers send and the malformed ones), on generated token soup, and on what a real
Dovecot answers for every message of the shared corpora.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imapclient import IMAPClient
from imapclient.response_parser import parse_fetch_response

from mailbridge.io.imap_client import WatchClient
from mailbridge.io.imap_fetch import parse_fetch
from tests.corpora import corpora_root, labelled
from tests.servers import Dovecot


def outcome(parser: Any, data: list[Any], **options: bool) -> Any:
    """The parser's result as plain values, or the type of what it raised."""
    try:
        result = parser(data, **options)
    except Exception as exc:  # the kind of failure is what is compared
        return type(exc)
    return {key: dict(items) for key, items in result.items()}


def same(data: list[Any], **options: bool) -> Any:
    ours, theirs = outcome(parse_fetch, data, **options), outcome(parse_fetch_response, data,
                                                                  **options)
    assert ours == theirs, data
    return ours


BODYSTRUCTURE = (
    b'(("text" "plain" ("charset" "utf-8" "format" "flowed") NIL NIL "quoted-printable" 420 12'
    b' NIL NIL NIL NIL)("text" "html" ("charset" "utf-8") NIL NIL "base64" 1200 30 NIL'
    b' ("inline" NIL) NIL NIL) "alternative" ("boundary" "=_b1") NIL NIL NIL)')


@pytest.mark.parametrize("data", [
    # What the watcher asks for: a literal header block beside the structure.
    [(b'1 (UID 17 RFC822.SIZE 2311 INTERNALDATE "07-Dec-2026 16:01:02 +0000" BODYSTRUCTURE '
      + BODYSTRUCTURE + b' BODY[HEADER] {11}', b"Subject: x\n"), b")"],
    # Two messages, the second single-part; a partial text section; FLAGS with backslashes.
    [(b'3 (UID 40 BODY[1]<0> {5}', b"hello"), b" FLAGS (\\Seen $Label1))",
     b'4 (UID 41 BODYSTRUCTURE ("text" "plain" NIL NIL NIL "7bit" 0 0 NIL NIL NIL NIL))'],
    # Quoted strings with escapes, NIL, an empty string, a leading zero, a bracketed section
    # with spaces and parentheses in it, an unsolicited FETCH without UID.
    [b'5 (UID 7 X-NAME "say \\"hi\\" \\\\ \\x" X-EMPTY "" X-NIL NIL X-NUM 007 X-ZERO 0)',
     (b'6 (UID 8 BODY[HEADER.FIELDS (FROM TO)] {4}', b"a: b"), b")", b"9 (FLAGS ())"],
    # Items in lower case; INTERNALDATE the server garbled; a quoted "NIL".
    [b'2 (uid 9 internaldate "not a date" x-word "NIL" bodystructure ("TEXT" "PLAIN" NIL NIL'
     b' NIL "8BIT" 3 1 NIL NIL NIL NIL))'],
    # Shapes of other servers: a short header block as a quoted string instead of a literal,
    # a space-padded day in INTERNALDATE, MODSEQ and unsolicited FLAGS for another message,
    # Exchange's language and location extensions, an empty quoted boundary.
    [b'7 (UID 70 BODY[HEADER] "Subject: x\\r\\n" INTERNALDATE " 7-Dec-2026 09:01:02 -0800"'
     b" MODSEQ (12345))", b"8 (FLAGS (\\Seen) MODSEQ (12346))"],
    [b'9 (BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 1 NIL NIL'
     b' "en-US" NIL)("APPLICATION" "PDF" ("NAME" "a.pdf") NIL NIL "BASE64" 100 NIL'
     b' ("attachment" ("FILENAME" "a.pdf")) NIL NIL) "MIXED" ("BOUNDARY" "") NIL "en-US"'
     b" NIL) UID 90)"],
    # Malformed: unbalanced, stray parenthesis, a quote glued to an atom, "%", a control
    # character, a literal of the wrong size, odd item counts, no message number, [None].
    [b"1 (UID 2 FLAGS (\\Seen)"], [b"1 (UID 2))"], [b'1 (UID 2 X-A b"c")'],
    [b"1 (UID 2 X-A 50%)"], [b"1 (UID 2 X-A \x01)"], [(b"1 (UID 2 BODY[] {9}", b"short"), b")"],
    [b"1 (UID 2 FLAGS)"], [b"(UID 2)"], [b"x (UID 2)"], [None], [],
    [b"1 (UID 2 BODY[HEADER (unclosed)"], [b'1 (UID 2 X-A "unclosed)'],
    [b"1 (UID 2 ENVELOPE (NIL \"s\" NIL NIL NIL NIL NIL NIL NIL \"<i@x>\"))"],
])
@pytest.mark.parametrize("uid_is_key", [True, False])
def test_responses_read_as_imapclient_reads_them(data: list[Any], uid_is_key: bool) -> None:
    """The shapes servers send and the malformed ones give what imapclient gives, errors
    included."""
    same(data, uid_is_key=uid_is_key)


def test_the_watchers_items_come_back_as_values() -> None:
    """Numbers as int, the header block as the literal's bytes, the structure as imapclient's
    BodyData, INTERNALDATE as a datetime."""
    data = [(b'1 (UID 17 RFC822.SIZE 2311 INTERNALDATE "07-Dec-2026 16:01:02 +0000" '
             b"BODYSTRUCTURE " + BODYSTRUCTURE + b" BODY[HEADER] {11}", b"Subject: x\n"), b")"]
    item = same(data)[17]
    assert item[b"SEQ"] == 1
    assert item[b"BODY[HEADER]"] == b"Subject: x\n"
    assert item[b"RFC822.SIZE"] == 2311
    assert item[b"BODYSTRUCTURE"].is_multipart
    assert item[b"BODYSTRUCTURE"][0][1][9] == (b"inline", None)
    assert item[b"INTERNALDATE"].hour == 16


FRAGMENTS = [b"(", b")", b" ", b"1", b"17", b"007", b"UID", b"NIL", b'"q"', b'"a\\"b"',
             b'"\\\\"', b"BODY[1]", b"BODY[HEADER.FIELDS (TO)]", b"[", b"]", b"%", b"\t",
             b"BODYSTRUCTURE", b"INTERNALDATE", b'"01-Jan-2026 00:00:00 +0000"', b"{3}",
             b"\\Seen", b"X", b'"', b"\x00", b"\xe9"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(st.sampled_from(FRAGMENTS), max_size=14).map(b"".join),
                min_size=1, max_size=3),
       st.lists(st.sampled_from([None, b"abc", b"ab"]), min_size=3, max_size=3))
def test_any_token_soup_reads_as_imapclient_reads_it(lines: list[bytes],
                                                      literals: list[bytes | None]) -> None:
    """Whatever a line holds, the result or the kind of error is imapclient's."""
    data: list[Any] = [line if literal is None else (line, literal)
                       for line, literal in zip(lines, literals, strict=False)]
    same(data)
    if isinstance(data[0], bytes):  # the soup inside a message's items, as a server sends
        same([b"1 (UID 5 X " + data[0], *data[1:]])


def test_every_corpus_message_fetched_from_dovecot_reads_alike(dovecot: Dovecot) -> None:
    """What Dovecot answers for the watcher's FETCHes of every message of the shared corpora
    (bounces, reports, auto-replies, people's mail from many clients) reads the same through
    the watcher's client as through imapclient's."""
    root = corpora_root()
    if root is None:
        pytest.skip("the shared corpora are not beside this repository (../shared/corpora)")
    raws = [raw for _path, _label, raw in labelled(root) if raw.strip()]
    with dovecot.connect() as client:
        for raw in raws:
            client.append("INBOX", raw)
    plain = IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=30)
    ours = WatchClient(dovecot.host, dovecot.port, ssl=False, timeout=30)
    try:
        for client in (plain, ours):
            client.login(dovecot.login_name, dovecot.password)
            client.select_folder("INBOX", readonly=True)
        uids = plain.search(["ALL"])
        assert len(uids) == len(raws)
        requests = (["BODY.PEEK[HEADER]", "BODYSTRUCTURE", "INTERNALDATE", "RFC822.SIZE"],
                    ["BODY.PEEK[1]<0.2048>", "FLAGS"], ["ENVELOPE"])
        multipart = 0
        for items in requests:
            for start in range(0, len(uids), 200):
                chunk = uids[start:start + 200]
                expected, got = plain.fetch(chunk, items), ours.fetch(chunk, items)
                assert got == expected
                multipart += sum(1 for v in got.values()
                                 if b"BODYSTRUCTURE" in v and v[b"BODYSTRUCTURE"].is_multipart)
        assert multipart > len(uids) / 4  # the corpora's structures are not all one part
    finally:
        plain.logout()
        ours.logout()
