"""Thread references and the Message-IDs a message links to."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from mailbridge.core import threads
from mailbridge.core.model import Address, InboundMessage


def test_linked_ids_prefer_in_reply_to_then_newest_reference() -> None:
    """In-Reply-To comes first, then References from the newest, without repeats."""
    msg = InboundMessage(
        message_id="<c@x>", from_=(Address("", "a@x"),), sender=None, reply_to=(), to=(),
        cc=(), return_path=None, subject="", date=None, in_reply_to=("<b@x>",),
        references=("<a@x>", "<b@x>"))
    assert threads.linked_ids(msg) == ("<b@x>", "<a@x>")


def test_subject_ref_is_found_only_in_our_format() -> None:
    """Only "[#XXXXXX]" with our alphabet counts as a thread reference."""
    assert threads.subject_ref("Re: Refund [#K7M2QD]") == "K7M2QD"
    assert threads.subject_ref("Re: Refund #K7M2QD") is None
    assert threads.subject_ref("Ticket [#K7M0QD]") is None  # 0 is not in the alphabet


@given(st.binary(min_size=6, max_size=6))
def test_refs_use_the_unambiguous_alphabet(data: bytes) -> None:
    """Every reference has six characters from the alphabet and parses back from a subject."""
    ref = threads.make_ref(data)
    assert len(ref) == 6 and set(ref) <= set(threads.REF_ALPHABET)
    assert threads.subject_ref(f"Re: hello [#{ref}]") == ref


def test_find_thread_never_joins_by_subject_across_senders() -> None:
    """Only the customer's own recent threads are candidates; the order of links is kept."""
    from datetime import timedelta

    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    windows = threads.Windows(same_subject=timedelta(days=7), burst=timedelta(minutes=2))
    msg = InboundMessage(
        message_id="<n@x>", from_=(Address("", "ana@x"),), sender=None, reply_to=(), to=(),
        cc=(), return_path="ana@x", subject="Re: Invoice", date=None, in_reply_to=("<a@x>",),
        references=())
    recent = [threads.RecentThread("SUBJCT", "invoice", now - timedelta(days=1))]

    def find(**kw: object) -> tuple[str | None, str]:
        args: dict[str, object] = {"known": {}, "ref_owner": None, "customer": "ana@x",
                                   "agents": frozenset(), "recent": [], "windows": windows,
                                   "now": now}
        return threads.find_thread(msg, **{**args, **kw})  # type: ignore[arg-type]

    assert find(known={"<a@x>": "HEADER"}, recent=recent)[0] == "HEADER"
    assert find(recent=recent)[0] == "SUBJCT"
    resolved = [threads.RecentThread("SUBJCT", "invoice", now - timedelta(days=1), True)]
    assert find(recent=resolved) == (None, "")
    old = [threads.RecentThread("SUBJCT", "invoice", now - timedelta(days=8))]
    assert find(recent=old) == (None, "")
    burst = [threads.RecentThread("BURSTT", "other", now - timedelta(seconds=30))]
    assert find(recent=burst)[0] == "BURSTT"
