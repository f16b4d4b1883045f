"""Safe values for the headers of the mail we send.

Everything that came from a received message is hostile: a display name or a
subject may hold CR, LF, NUL, bidi overrides or lone surrogates meant to inject a
header or break the encoder. This module owns turning such text into header
values that cannot do either.

Public API:

- `clean(value, *, max_len=200)`: one line of printable text, shortened with "…".
- `format_address(name, addr)`: a quoted/encoded address header value; ASCII
  whenever the addr-spec allows it, so a non-ASCII result means SMTPUTF8 is needed.
- `mailbox(name, addr)`: the checked (display name, addr-spec) pair behind it;
  `address_field`, `ids_field` and `text_field` write whole folded header lines
  (CRLF) from such values without the email package, for the mail we render.
- `reply_subject(subject, thread_ref)`: "Re: <subject> [#REF]".
- `references_for(original)`: the References of a reply (RFC 5322 3.6.4).
- `make_message_id(domain)`: a fresh "<...@domain>".
- `SafePolicy`, `SMTP_POLICY`, `SMTPUTF8_POLICY`, `policy_for(*values)`: the
  policy to build outgoing mail with; the stock `email.policy.SMTP` of Python
  3.11 folds some of these values into something else (see `SafePolicy`).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from email.charset import Charset
from email.errors import HeaderParseError
from email.headerregistry import Address as HeaderAddress
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import formataddr, make_msgid
from typing import TYPE_CHECKING

from mailbridge.core.model import InboundMessage

MAX_SUBJECT = 200
MAX_REFERENCES = 20
MAX_ADDR_SPEC = 320
"""RFC 5321 4.5.3.1: 64 octets of local part, 255 of domain, and the "@"."""

_ID_RE = re.compile(r"<(?![^>]*=\?)[!-;=?-~]+>")
"""One msg-id token: printable ASCII without spaces, angle brackets or "=?" inside.

"=?" is refused because the email package decodes encoded words in an
unstructured header such as References, which would let an id smuggle CR LF.
"""

_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
"""Direction overrides used to make a subject or name read differently than it is."""

_REPLY_PREFIX = re.compile(
    r"^(?:(?:re|aw|sv|antw|fwd?|wg|tr)(?:\s*\[\d+\]|\s*\(\d+\))?\s*[:：]\s*)+",
    re.IGNORECASE,
)
"""Reply and forward prefixes of common clients: English, German, Nordic, Dutch, French."""

_DOMAIN_RE = re.compile(r"[^\s<>()\[\],;:\\\"@]+")
_ID_HEADERS = frozenset({"message-id", "in-reply-to", "references"})
_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to", "sender"})
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')
CRLF = "\r\n"
_ANY_TAG = re.compile(r"\[#[^\]]*\]")
_ATOM = r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
PLAIN_ADDR_SPEC = rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+"
"""An addr-spec every parser reads alike and writes back unchanged: a dot-atom local part
(without "=" and "?", the marks of encoded words) at a host name."""
_PLAIN_SPEC = re.compile(PLAIN_ADDR_SPEC)


def clean(value: str, *, max_len: int = 200) -> str:
    """One line of printable text from any string, at most `max_len` characters.

    CR, LF, NUL and every other control character become spaces, lone
    surrogates and bidi overrides are dropped, runs of whitespace become one
    space, and text longer than `max_len` is cut at a word boundary with "…".
    "=?" becomes "= ?": the email package (3.11) decodes RFC 2047 encoded
    words when a header is set, so "=?utf-8?q?=0D=0ABcc:...?=" would turn into
    a real CR LF on output, and mail clients decode them for display.
    """
    if max_len <= 0:
        return ""
    value = str(value)
    if value.isascii() and value.isprintable():  # nothing to drop: the common case
        return shorten(" ".join(value.split()).replace("=?", "= ?"), max_len)
    kept: list[str] = []
    for char in value:
        category = unicodedata.category(char)
        if category in ("Cc", "Zl", "Zp"):
            kept.append(" ")
        elif category not in ("Cs", "Co", "Cn") and char not in _BIDI_CONTROLS:
            kept.append(char)
    text = " ".join("".join(kept).split()).replace("=?", "= ?")
    return shorten(text, max_len)


def shorten(text: str, max_len: int) -> str:
    """Cut `text` to at most `max_len` characters at a word boundary, ending in "…"."""
    if len(text) <= max_len:
        return text
    if max_len <= 1:
        return "…"[:max_len]
    head = text[: max_len - 1]
    space = head.rfind(" ")
    if text[max_len - 1] != " " and space >= max_len // 2:
        head = head[:space]
    return head.rstrip() + "…"


def format_address(name: str, addr: str) -> str:
    """An address header value such as `"Whitfield, Dana" <dana@example.com>`.

    The display name is cleaned, then quoted or RFC 2047 encoded as needed. An
    IDN domain becomes punycode when the local part is ASCII, so the result is
    plain ASCII; only a non-ASCII local part gives a UTF-8 value, which needs
    an SMTPUTF8 message (RFC 6532). Raises ValueError for an addr-spec that is
    not a usable mailbox (no "@", empty parts, or syntax that could smuggle
    another address).
    """
    display, spec = mailbox(name, addr)
    if spec.isascii():
        return formataddr((display, spec), charset="utf-8")
    local, _, domain = spec.rpartition("@")
    # headerregistry quotes a local part that is not a dot-atom; the domain
    # was checked, so nothing in it can end the address early.
    return str(HeaderAddress(display_name=display, username=local, domain=domain))


@functools.lru_cache(maxsize=4096)
def mailbox(name: str, addr: str) -> tuple[str, str]:
    """(display name, addr-spec) of a usable mailbox, as `format_address` writes it: the
    name cleaned, the addr-spec checked and, with an ASCII local part, its domain in
    punycode. Raises ValueError as `format_address` does."""
    display = clean(name)
    spec = clean(addr, max_len=MAX_ADDR_SPEC * 2)
    local, at, domain = spec.rpartition("@")
    if not at or not local or not domain or len(spec) > MAX_ADDR_SPEC:
        raise ValueError(f"not a usable e-mail address: {clean(addr, max_len=60)!r}")
    if not _DOMAIN_RE.fullmatch(domain):
        raise ValueError(f"not a usable mail domain: {clean(domain, max_len=60)!r}")
    if local.isascii():
        ascii_spec = _ascii_addr_spec(local, _ascii_domain(domain))
        if ascii_spec is not None:
            return display, ascii_spec
        raise ValueError(f"not a usable e-mail address: {clean(addr, max_len=60)!r}")
    if re.search(r"[\s\"\\]", local):
        raise ValueError(f"not a usable e-mail address: {clean(addr, max_len=60)!r}")
    return display, spec


def address_field(name: str, box: tuple[str, str], *, utf8: bool) -> str:
    """`Name: display <spec>` CRLF, folded, for a `mailbox()` pair; raw UTF-8 only with
    `utf8` (an SMTPUTF8 message), else the display name in RFC 2047 encoded words."""
    return _fold_tokens(name, _mailbox_tokens(*box, utf8=utf8), CRLF)


def ids_field(name: str, ids: Sequence[str]) -> str:
    """`Name: <id> <id>` CRLF, folded between ids; every id must be well formed."""
    if not all(is_message_id(token) for token in ids):
        raise ValueError(f"header {name}: not a well-formed message id")
    return _fold_tokens(name, list(ids), CRLF)


def text_field(name: str, value: str, *, utf8: bool) -> str:
    """`Name: value` CRLF for one line of text, folded between words; non-ASCII text as
    RFC 2047 encoded words unless `utf8`. Raises ValueError for a CR or LF in `value`."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} would contain a line break")
    if value.isascii() or utf8:
        return _fold_tokens(name, value.split(), CRLF)
    utf8_charset = Charset("utf-8")
    return _fold_tokens(name, [utf8_charset.header_encode(chunk)
                               for chunk in _word_chunks(value)], CRLF)


def _ascii_domain(domain: str) -> str:
    """The domain with IDN labels as punycode; unchanged when that fails."""
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def _ascii_addr_spec(local: str, domain: str) -> str | None:
    """The parsed, re-serialised addr-spec, or None when it does not parse cleanly."""
    spec = f"{local}@{domain}"
    if _PLAIN_SPEC.fullmatch(spec):  # a dot-atom at a host name: the parser returns it as is
        return spec
    try:
        parsed = HeaderAddress(addr_spec=f"{local}@{domain}")
    except (ValueError, IndexError, HeaderParseError):
        return None
    spec = parsed.addr_spec
    return spec if spec.isascii() else None


def reply_subject(subject: str, thread_ref: str) -> str:
    """The subject of our reply: "Re: <subject> [#REF]", at most 200 characters.

    Repeated Re:/AW:/Fwd: prefixes are dropped, the ref appears exactly once
    and always survives shortening, and an empty subject reads
    "Re: your message [#REF]".
    """
    ref = clean(thread_ref, max_len=40).strip("[]# ")
    tag = f"[#{ref}]" if ref else ""
    text = clean(subject, max_len=10 * MAX_SUBJECT)
    if tag:
        text = _ANY_TAG.sub(lambda m: " " if m.group(0).lower() == tag.lower() else m.group(0),
                            text)
    text = " ".join(text.split())
    text = _REPLY_PREFIX.sub("", text).strip() or "your message"
    room = MAX_SUBJECT - len("Re: ") - (len(tag) + 1 if tag else 0)
    text = shorten(text, max(room, 1))
    return f"Re: {text} {tag}".rstrip()


def references_for(original: InboundMessage) -> tuple[str, ...]:
    """The References header ids of a reply to `original` (RFC 5322 3.6.4).

    The parent's References (or, without them, its single In-Reply-To id)
    followed by the parent's Message-ID; duplicates dropped, the last 20 kept,
    and only well-formed ASCII ids, since anything else cannot go in a header.
    """
    chain: list[str] = list(original.references)
    if not chain and len(original.in_reply_to) == 1:
        chain = list(original.in_reply_to)
    if original.message_id:
        chain.append(original.message_id)
    seen: set[str] = set()
    ids: list[str] = []
    for token in reversed(chain):
        if _ID_RE.fullmatch(token) and token not in seen:
            seen.add(token)
            ids.append(token)
        if len(ids) == MAX_REFERENCES:
            break
    return tuple(reversed(ids))


def is_message_id(value: str) -> bool:
    """True when `value` is one well-formed ASCII "<id>" token."""
    return bool(_ID_RE.fullmatch(value))


def make_message_id(domain: str) -> str:
    """A new unique Message-ID on `domain` (our support domain, never the host name)."""
    name = _ascii_domain(clean(domain, max_len=255)).strip(".")
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?", name):
        raise ValueError(f"not a usable Message-ID domain: {clean(domain, max_len=60)!r}")
    return make_msgid(domain=name)


if TYPE_CHECKING:
    _PolicyBase = EmailPolicy[EmailMessage]
else:
    _PolicyBase = EmailPolicy


class SafePolicy(_PolicyBase):
    """`email.policy.SMTP`, but it writes msg-id and address headers itself.

    Python 3.11's folder turns some safe values into different ones:

    - an unstructured header whose one id is longer than a line (Outlook ids
      often are) is RFC 2047-encoded, which breaks threading;
    - a quoted display name that must be folded or partly encoded loses its
      quotes, so `"a, b@evil.example" <c@d>` goes out as another address.

    Here ids fold between ids, and each mailbox is written as an ASCII
    display name, quoted when needed, or as RFC 2047 encoded words of at most 75
    characters (raw UTF-8 with `utf8=True`); lines fold only between tokens.
    """

    def fold(self, name: str, value: str) -> str:
        folded = _fold_special(name, value, self)
        return folded if folded is not None else str(super().fold(name, value))

    def fold_binary(self, name: str, value: str) -> bytes:
        folded = _fold_special(name, value, self)
        if folded is None:
            return super().fold_binary(name, value)
        return folded.encode("utf-8" if self.utf8 else "ascii")


def _fold_special(name: str, value: object, policy: SafePolicy) -> str | None:
    """The folded header for msg-id and address headers; None for every other one."""
    key = name.lower()
    if key in _ID_HEADERS and str(value).isascii():
        return _fold_tokens(name, str(value).split(), policy.linesep)
    addresses = getattr(value, "addresses", None)
    if key not in _ADDRESS_HEADERS or addresses is None:
        return None
    tokens: list[str] = []
    for number, address in enumerate(addresses, 1):
        mailbox = _mailbox_tokens(address.display_name, address.addr_spec, utf8=policy.utf8)
        if number < len(addresses):
            mailbox[-1] += ","
        tokens += mailbox
    return _fold_tokens(name, tokens, policy.linesep)


def _mailbox_tokens(display: str, spec: str, *, utf8: bool) -> list[str]:
    """One mailbox as tokens that may be separated by folding whitespace."""
    if not display:
        return [spec]
    angle = f"<{spec}>"
    if (display.isascii() or utf8) and "=?" not in display:
        if _SPECIALS.search(display) or display != display.strip():
            escaped = display.replace("\\", "\\\\").replace('"', '\\"')
            return [f'"{escaped}"', angle]
        return [display, angle]
    utf8_charset = Charset("utf-8")
    return [*(utf8_charset.header_encode(chunk) for chunk in _word_chunks(display)), angle]


def _word_chunks(text: str, limit: int = 45) -> list[str]:
    """`text` in pieces of at most `limit` UTF-8 octets, split after spaces when possible.

    45 octets are 60 characters of base64, so each encoded word stays within
    RFC 2047's 75. Spaces stay inside the words: decoders drop the whitespace
    between adjacent encoded words.
    """
    chunks: list[str] = []
    current = ""
    for piece in re.findall(r"\S*\s*", text):
        if len((current + piece).encode()) <= limit:
            current += piece
            continue
        if current:
            chunks.append(current)
        current = ""
        for char in piece:
            if len((current + char).encode()) > limit:
                chunks.append(current)
                current = ""
            current += char
    return [*chunks, current] if current else chunks


def _fold_tokens(name: str, tokens: list[str], linesep: str) -> str:
    """`Name: token token ...` folded between tokens at 78 columns."""
    if any("\r" in token or "\n" in token for token in tokens):
        raise ValueError(f"header {name} would contain a line break")
    lines = [f"{name}:"]
    for token in tokens:
        if len(lines[-1]) + 1 + len(token) > 78 and lines[-1] != f"{name}:":
            lines.append("")
        lines[-1] += f" {token}"
    return linesep.join(lines) + linesep


class CachedHeaderRegistry(HeaderRegistry):
    """A `HeaderRegistry` that makes each header's class once.

    Python 3.11's registry creates a new class for every header it parses
    (`type(...)` in `__getitem__`), which was a third of the cost of rendering an
    acknowledgement; the classes depend only on the header name.
    """

    def __init__(self, *, use_default_map: bool = True) -> None:
        super().__init__(use_default_map=use_default_map)
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        found = self._classes.get(key)
        if found is None:
            found = self._classes[key] = super().__getitem__(name)
        return found


HEADER_REGISTRY = CachedHeaderRegistry()
SMTP_POLICY = SafePolicy(linesep="\r\n", header_factory=HEADER_REGISTRY)
"""`email.policy.SMTP` with the folding fixes of `SafePolicy`."""
SMTPUTF8_POLICY = SafePolicy(linesep="\r\n", utf8=True, header_factory=HEADER_REGISTRY)
"""The same for mail that must go out with SMTPUTF8 (RFC 6531/6532)."""


def policy_for(*values: str) -> SafePolicy:
    """SMTPUTF8_POLICY when a `format_address` value is not ASCII, else SMTP_POLICY."""
    return SMTP_POLICY if all(value.isascii() for value in values) else SMTPUTF8_POLICY
