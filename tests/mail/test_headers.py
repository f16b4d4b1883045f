"""Outgoing header values: nothing from a message may inject or break a header."""

from __future__ import annotations

import email
import socket
import unicodedata
from email.message import EmailMessage
from email.policy import default

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbridge.core.model import Address, InboundMessage
from mailbridge.mail.headers import (
    SMTP_POLICY,
    clean,
    format_address,
    make_message_id,
    policy_for,
    references_for,
    reply_subject,
)
from mailbridge.mail.parse import parse_message

HOSTILE = st.lists(
    st.one_of(
        st.text(max_size=20),
        st.sampled_from(
            ["\r", "\n", "\r\n", "\x00", "\t", "\u2028", "\u202e", '"', "\\", "=?", "?="]
        ),
        st.just("=?utf-8?q?x=0D=0ABcc:_evil@example.com?="),
    ),
    max_size=15,
).map("".join)
"""Text as hostile as a display name or subject gets: line breaks, NUL, encoded words."""


def inbound(
    message_id: str | None = "<parent@example.com>",
    in_reply_to: tuple[str, ...] = (),
    references: tuple[str, ...] = (),
) -> InboundMessage:
    return InboundMessage(
        message_id=message_id, from_=(), sender=None, reply_to=(), to=(), cc=(),
        return_path=None, subject="", date=None, in_reply_to=in_reply_to, references=references,
    )  # fmt: skip


def reparse_to(value: str) -> EmailMessage:
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["To"] = value
    msg.set_content("x")
    parsed = email.message_from_bytes(msg.as_bytes(), policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed


# --- clean --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Hello\r\nBcc: evil@example.com", "Hello Bcc: evil@example.com"),
        ("a\x00b\x07c", "a b c"),
        ("  lots \t of\n\n space  ", "lots of space"),
        ("bidi \u202eevil\u202c text", "bidi evil text"),
        ("surrogate \udce9 gone", "surrogate gone"),
        ("=?utf-8?q?x?=", "= ?utf-8?q?x?="),
        ("line\u2028sep", "line sep"),
    ],
)
def test_clean_removes_what_could_break_a_header(value: str, expected: str) -> None:
    """Control characters, bidi overrides, surrogates and encoded-word starts are defused."""
    assert clean(value) == expected


def test_clean_shortens_at_a_word_boundary() -> None:
    """Long text is cut at a space and ends in an ellipsis, within max_len."""
    text = clean("The quick brown fox jumps over the lazy dog", max_len=20)
    assert text == "The quick brown fox…"
    assert len(text) <= 20


def test_clean_cuts_a_single_long_word() -> None:
    """A word longer than max_len is cut mid-word rather than dropped."""
    assert clean("x" * 50, max_len=10) == "x" * 9 + "…"


@given(HOSTILE, st.integers(min_value=0, max_value=250))
def test_clean_output_is_always_one_safe_line(value: str, max_len: int) -> None:
    """Whatever goes in, one line without control characters comes out, within max_len."""
    text = clean(value, max_len=max_len)
    assert len(text) <= max_len
    assert not any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in text)
    assert "=?" not in text
    assert text == text.strip()


# --- format_address -----------------------------------------------------------------


def test_format_address_quotes_commas_and_quotes() -> None:
    """A name with a comma and quotes is quoted and escaped, and reads back intact."""
    value = format_address('Whitfield, Dana "DW"', "dana@example.com")
    assert value == '"Whitfield, Dana \\"DW\\"" <dana@example.com>'
    [address] = reparse_to(value)["To"].addresses
    assert (address.display_name, address.addr_spec) == ('Whitfield, Dana "DW"', "dana@example.com")


def test_format_address_encodes_non_ascii_names() -> None:
    """A non-ASCII name gives an ASCII, RFC 2047 encoded value."""
    value = format_address("José Pérez", "jose@example.com")
    assert value.isascii()
    assert "=?utf-8?" in value
    [address] = reparse_to(value)["To"].addresses
    assert address.display_name == "José Pérez"


def test_format_address_turns_an_idn_domain_into_punycode() -> None:
    """An IDN domain with an ASCII local part becomes an all-ASCII address."""
    assert format_address("", "info@bücher.example") == "info@xn--bcher-kva.example"


def test_format_address_keeps_a_non_ascii_local_part_for_smtputf8() -> None:
    """A non-ASCII local part needs SMTPUTF8; the value then serialises with that policy."""
    value = format_address("José", "josé@exämple.com")
    assert not value.isascii()
    msg = EmailMessage(policy=policy_for(value))
    msg["To"] = value
    msg.set_content("x")
    assert parse_message(msg.as_bytes()).to == (Address(name="José", addr="josé@exämple.com"),)


def test_format_address_without_name_is_the_bare_address() -> None:
    """No display name gives just the addr-spec."""
    assert format_address("", "ana@example.com") == "ana@example.com"
    assert format_address("\r\n", "ana@example.com") == "ana@example.com"


@pytest.mark.parametrize(
    "addr",
    ["", "ana", "@example.com", "ana@", "a@b>, evil@example.com", "a b@example.com>"],
)
def test_format_address_refuses_unusable_addresses(addr: str) -> None:
    """An addr-spec that is not one mailbox raises ValueError instead of passing through."""
    with pytest.raises(ValueError, match="not a usable"):
        format_address("Ana", addr)


@given(HOSTILE)
def test_format_address_never_adds_an_address(name: str) -> None:
    """Any display name gives exactly one address, the one we asked for."""
    parsed = reparse_to(format_address(name, "ana@example.com"))
    assert [a.addr_spec for a in parsed["To"].addresses] == ["ana@example.com"]
    assert set(parsed.keys()) == {"To", "Content-Type", "Content-Transfer-Encoding", "MIME-Version"}


# --- reply_subject ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Printer on fire", "Re: Printer on fire [#MB-7]"),
        ("Re: RE: Aw: AW: Fwd: Printer", "Re: Printer [#MB-7]"),
        ("Re: [#MB-7] Printer", "Re: Printer [#MB-7]"),
        ("Printer [#mb-7]", "Re: Printer [#MB-7]"),
        ("Re[2]: SV: Printer", "Re: Printer [#MB-7]"),
        ("", "Re: your message [#MB-7]"),
        ("Re: ", "Re: your message [#MB-7]"),
        ("x\r\nBcc: evil@example.com", "Re: x Bcc: evil@example.com [#MB-7]"),
        ("Rechnung falsch", "Re: Rechnung falsch [#MB-7]"),
    ],
)
def test_reply_subject(subject: str, expected: str) -> None:
    """Prefixes collapse to one "Re:", the ref appears once at the end."""
    assert reply_subject(subject, "MB-7") == expected


def test_reply_subject_keeps_the_ref_when_shortening() -> None:
    """A very long subject is shortened to 200 characters and keeps its ref."""
    subject = reply_subject("word " * 100, "MB-7")
    assert len(subject) <= 200
    assert subject.endswith("… [#MB-7]")


@given(HOSTILE)
def test_reply_subject_is_always_safe(subject: str) -> None:
    """Any subject gives one clean line, at most 200 characters, ending in the ref once."""
    result = reply_subject(subject, "MB-42")
    assert result.startswith("Re: ")
    assert result.endswith(" [#MB-42]")
    assert result.count("[#MB-42]") == 1
    assert len(result) <= 200
    assert not any(unicodedata.category(c) == "Cc" for c in result)


# --- references_for -----------------------------------------------------------------


def test_references_are_parent_references_plus_parent_id() -> None:
    """RFC 5322 3.6.4: the parent's References followed by its Message-ID."""
    parent = inbound(references=("<a@x>", "<b@x>"), in_reply_to=("<b@x>",))
    assert references_for(parent) == ("<a@x>", "<b@x>", "<parent@example.com>")


def test_references_fall_back_to_a_single_in_reply_to() -> None:
    """Without References, a single In-Reply-To id starts the chain."""
    assert references_for(inbound(in_reply_to=("<b@x>",))) == ("<b@x>", "<parent@example.com>")
    assert references_for(inbound(in_reply_to=("<b@x>", "<c@x>"))) == ("<parent@example.com>",)


def test_references_without_any_id_are_empty() -> None:
    """A parent without ids gives no References at all."""
    assert references_for(inbound(message_id=None)) == ()


def test_references_are_capped_to_the_last_20_ids() -> None:
    """Long chains keep their newest 20 ids, ending with the parent."""
    chain = tuple(f"<id{i}@x>" for i in range(40))
    refs = references_for(inbound(references=chain))
    assert len(refs) == 20
    assert refs[-1] == "<parent@example.com>"
    assert refs[0] == "<id21@x>"


def test_references_drop_ids_that_could_not_be_a_header() -> None:
    """Malformed ids, ids with spaces and encoded-word ids are left out."""
    refs = references_for(
        inbound(
            references=("<ok@x>", "<bad id@x>", "<=?utf-8?q?=0D=0A?=@x>", "no-brackets", "<ü@x>")
        )
    )
    assert refs == ("<ok@x>", "<parent@example.com>")


# --- make_message_id ----------------------------------------------------------------


def test_make_message_id_uses_the_given_domain_not_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The id is on our support domain; the host name is never looked up."""

    def no_fqdn(*args: object) -> str:
        raise AssertionError("getfqdn must not be called")

    monkeypatch.setattr(socket, "getfqdn", no_fqdn)
    first, second = make_message_id("acme.example"), make_message_id("acme.example")
    assert first.startswith("<") and first.endswith("@acme.example>")
    assert first != second


def test_make_message_id_punycodes_an_idn_domain() -> None:
    """An IDN domain is written as punycode."""
    assert make_message_id("bücher.example").endswith("@xn--bcher-kva.example>")


@pytest.mark.parametrize("domain", ["", " ", "a b", "evil>\r\nBcc: x", "-bad-"])
def test_make_message_id_refuses_bad_domains(domain: str) -> None:
    """An empty or malformed domain raises instead of falling back to the host name."""
    with pytest.raises(ValueError, match="Message-ID domain"):
        make_message_id(domain)


def test_stock_policy_bug_is_worked_around() -> None:
    """A long quoted name that the stock SMTP policy would fold into a second address stays one."""
    value = format_address("a, b@evil.example " * 6, "ana@example.com")
    parsed = reparse_to(value)
    assert [a.addr_spec for a in parsed["To"].addresses] == ["ana@example.com"]


def test_long_ids_fold_between_ids_and_are_never_encoded() -> None:
    """Outlook-length ids in References fold at spaces, without RFC 2047 encoding."""
    ids = [
        f"<AM0PR04MB6417D3A5B4E8C4A0B4F7E1B2C9A4{i}@AM0PR04MB6417.eurprd04.prod.outlook.com>"
        for i in range(3)
    ]
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["References"] = " ".join(ids)
    msg["In-Reply-To"] = ids[-1]
    msg.set_content("x")
    head = msg.as_bytes().split(b"\r\n\r\n")[0]
    assert b"=?" not in head
    parsed = email.message_from_bytes(msg.as_bytes(), policy=default)
    assert str(parsed["References"]).split() == ids
    assert str(parsed["In-Reply-To"]) == ids[-1]
