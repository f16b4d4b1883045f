"""The text of a received message: one part's raw bytes in, clean plain text out.

This module owns undoing the transfer encoding (base64, quoted-printable), the charset
(declared, aliased or guessed) and HTML markup, for `parse_message` and `parse_parts` alike.
Bad input gives what could be read plus a problem in `Defects`, never an exception, and work
is bounded by the `max_text` characters the caller wants. Public API:

- `decode_text(raw, *, encoding, charset, subtype, max_text, defects, cut=False)`: the text.
- `char_budget(subtype, max_text)` and `encoded_budget(encoding, chars)`: how much of a
  part is worth reading.
- `html_to_text(markup)`: rough plain text from HTML, in linear time (re-exported by
  `mailbridge.mail.parse`).
"""

from __future__ import annotations

import binascii
import codecs
import html
import re

from mailbridge.mail.defects import Defects, excerpt

_BODY_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HTML_START = re.compile(r"\s*<(?:!doctype|html|head|body|div|p|table|meta)\b", re.IGNORECASE)
_CHARSET_ALIASES = {
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "windows-874": "cp874",
    "x-mac-roman": "mac_roman",
    "x-sjis": "shift_jis",
}
_NOT_TEXT_CODECS = frozenset(
    {"idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined"}
)
_NO_CHARSET = frozenset({"", "us-ascii", "ascii", "unknown-8bit"})


# --- the text part ------------------------------------------------------------


def char_budget(subtype: str | None, max_text: int) -> int:
    """Decoded characters worth reading: HTML gets four times `max_text` for its markup."""
    return max(max_text, 0) * (4 if subtype == "html" else 1)


def encoded_budget(encoding: str, chars: int) -> int:
    """Encoded octets enough for `chars` characters.

    A character takes at most 4 octets (UTF-8, UTF-16, UTF-32); quoted-printable
    writes each octet as "=XX", base64 as 4/3 plus line breaks.
    """
    name = encoding.strip().lower().split(";")[0].strip()
    return chars * {"quoted-printable": 12, "base64": 6}.get(name, 4) + 1024


def decode_text(
    raw: bytes,
    *,
    encoding: str,
    charset: str | None,
    subtype: str | None,
    max_text: int,
    defects: Defects,
    cut: bool = False,
) -> str:
    """The plain text of one part's raw bytes, cut to `max_text` characters.

    `cut` says the bytes end before the part does, so their last, incomplete piece is
    dropped rather than reported as damage.
    """
    chars = char_budget(subtype, max_text)
    budget = encoded_budget(encoding, chars)
    cut = cut or len(raw) > budget
    data = _transfer_decode(raw[:budget], encoding, cut=cut, defects=defects)
    text = _to_str(data, charset, final=not cut, defects=defects)[:chars]
    if subtype == "html" or (subtype is None and _HTML_START.match(text[:1024])):
        text = html_to_text(text)
    if "\x00" in text:
        defects.add("text contains NUL bytes, removed")
    text = _BODY_CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return text.strip()[: max(max_text, 0)]


def _transfer_decode(data: bytes, encoding: str, *, cut: bool, defects: Defects) -> bytes:
    name = encoding.strip().lower().split(";")[0].strip()
    if name == "base64":
        return _base64(data, cut=cut, defects=defects)
    if name == "quoted-printable":
        if cut and b"\n" in data:
            data = data[: data.rfind(b"\n") + 1]
        return binascii.a2b_qp(data)
    if name not in ("", "7bit", "8bit", "binary"):
        defects.add(f"transfer encoding {excerpt(name)} unknown, text read as is")
    return data


def _base64(data: bytes, *, cut: bool, defects: Defects) -> bytes:
    """Lenient base64: junk skipped, padding repaired, concatenated chunks decoded."""
    if re.search(rb"[^A-Za-z0-9+/=\s]", data):
        defects.add("text part has invalid base64 characters, they were skipped")
    pieces = [p for p in re.sub(rb"[^A-Za-z0-9+/=]", b"", data).split(b"=") if p]
    out = bytearray()
    for number, piece in enumerate(pieces, 1):
        chunk, extra = piece, len(piece) % 4
        if cut and number == len(pieces):
            chunk, extra = chunk[: len(chunk) - extra], 0
        if extra == 1:
            defects.add("text part has broken base64, decoded what could be read")
            chunk = chunk[:-1]
        elif extra:
            chunk += b"=" * (4 - extra)
        out += binascii.a2b_base64(chunk)
    return bytes(out)


def _codec(charset: str) -> str | None:
    """The Python codec for a MIME charset name, or None when unknown or not text."""
    name = _CHARSET_ALIASES.get(charset, charset)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_TEXT_CODECS:
        return None
    return info.name


def _to_str(data: bytes, charset: str | None, *, final: bool, defects: Defects) -> str:
    declared = (charset or "").strip().strip("\"'").lower()
    if declared in _NO_CHARSET:
        if data.isascii():
            return data.decode("ascii")
        return _guess(data, final=final, defects=defects, why="text has 8-bit bytes but no charset")
    codec = _codec(declared)
    if codec is None:
        why = f"charset {excerpt(declared)} unknown"
        return _guess(data, final=final, defects=defects, why=why)
    decoder = codecs.getincrementaldecoder(codec)
    try:
        return decoder("strict").decode(data, final=final)
    except UnicodeDecodeError:
        defects.add(f"text is not valid {declared}, undecodable bytes replaced")
        return decoder("replace").decode(data, final=final)


def _guess(data: bytes, *, final: bool, defects: Defects, why: str) -> str:
    """UTF-8 when the bytes are valid UTF-8, else windows-1252 (never fails)."""
    try:
        text = codecs.getincrementaldecoder("utf-8")("strict").decode(data, final=final)
    except UnicodeDecodeError:
        defects.add(f"{why}, decoded as windows-1252")
        return data.decode("cp1252", "replace")
    defects.add(f"{why}, decoded as utf-8")
    return text

# --- HTML ----------------------------------------------------------------------------

_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9:-]*)[^<>]*>")
_SKIP_CONTENT = ("script", "style", "title", "template")
_LINE_TAGS = frozenset(
    ("br", "p", "div", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6",
     "blockquote", "pre", "hr", "section", "article", "header", "footer", "address", "dt", "dd")
)  # fmt: skip


def html_to_text(markup: str) -> str:
    """Rough plain text from HTML: tags dropped, blocks on their own lines.

    A small linear scanner rather than html.parser, whose worst cases on
    malformed input are quadratic in the Python versions we support.
    """
    lower = markup.lower()
    out: list[str] = []
    pos, end = 0, len(markup)
    while pos < end:
        lt = markup.find("<", pos)
        if lt < 0:
            out.append(_html_text(markup[pos:]))
            break
        out.append(_html_text(markup[pos:lt]))
        pos = _skip_markup(markup, lower, lt, out)
    lines = (" ".join(line.split()) for line in "".join(out).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _html_text(chunk: str) -> str:
    """Text between tags: whitespace runs collapse to one space, as a browser shows it."""
    return html.unescape(re.sub(r"\s+", " ", chunk))


def _skip_markup(markup: str, lower: str, lt: int, out: list[str]) -> int:
    """Handle the markup at `lt`; return where the text goes on."""
    end = len(markup)
    if markup.startswith("<!--", lt):
        close = markup.find("-->", lt + 4)
        return end if close < 0 else close + 3
    if markup.startswith(("<!", "<?"), lt):
        close = markup.find(">", lt)
        return end if close < 0 else close + 1
    tag = _TAG.match(markup, lt)
    if tag is None:
        out.append("<")
        return lt + 1
    name = tag.group(2).lower()
    if not tag.group(1) and name in _SKIP_CONTENT:
        close = lower.find(f"</{name}", tag.end())
        if close < 0:
            return end
        after = markup.find(">", close)
        return end if after < 0 else after + 1
    if name == "li":
        out.append("" if tag.group(1) else "\n- ")
    elif name in _LINE_TAGS:
        out.append("\n")
    elif name in ("td", "th"):
        out.append(" ")
    return tag.end()

