"""Multi-line SMTP replies that a mail client shows whole: the relay's refusals.

Public API: `refusal(first, problems) -> str` and `REPLY_LINE`.

aiosmtpd sends a hook's reply as it is (ASCII unless SMTPUTF8 is on), so a reply of several
lines is one string with CRLF between its lines, each with the code and a hyphen but the
last (RFC 5321 section 4.2.1). Problems name what an agent wrote (a command line, an agent's
name): they are made printable ASCII and wrapped short here, never sent raw.
"""

from __future__ import annotations

import textwrap
import unicodedata
from collections.abc import Iterable

REPLY_LINE = 76
"""The longest text of one reply line after its codes, so that clients show it whole."""


def refusal(first: str, problems: Iterable[str]) -> str:
    """`first` ("554 5.6.0 text") and then each problem, wrapped to `REPLY_LINE` characters
    of printable ASCII, as one multi-line reply under the same codes."""
    code, enhanced, text = first.split(" ", 2)
    lines = [text]
    for problem in problems:
        lines += textwrap.wrap(_ascii(problem), REPLY_LINE, subsequent_indent="  ") or ["-"]
    last = len(lines) - 1
    return "\r\n".join(f"{code}{' ' if i == last else '-'}{enhanced} {line}"
                       for i, line in enumerate(lines))


def _ascii(text: str) -> str:
    """`text` as printable ASCII: accents dropped, "…" as "...", white space as a space,
    anything else as "?"."""
    text = unicodedata.normalize("NFKD", text.replace("\u2026", "..."))
    return "".join(c if " " <= c <= "~" else " " if c.isspace() else "?"
                   for c in text if not unicodedata.combining(c))
