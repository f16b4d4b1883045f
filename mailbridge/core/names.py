"""A customer's name as people say it, from the display name their mail came with.

Directories (Exchange, Outlook, many LDAP books) write names "Last, First":
`From: "Kumar, Rajesh" <rajesh.kumar@example.com>`. Greeting "Hello Kumar, Rajesh," reads
like a form letter, so a display name of exactly that shape is turned round. Anything else is
left as written: a title ("Dr. Jürgen Weiß"), a quoted or annotated name ("Smith, John (IT)",
"'Kumar, Rajesh'"), a suffix ("Doe, John, Jr."), a company or a team ("Acme, Inc",
"Support, Team"), or a name in a script other than Latin ("山田 太郎", where the family name
comes first by custom). When unsure, the name as given.

Public API: `greeting_name(display, address="") -> str`.
"""

from __future__ import annotations

import re
import unicodedata

_MAX_WORDS = 4
"""At most this many words on either side of the comma: longer is a phrase, not a name."""

# Words that make "X, Y" something other than a person's "Last, First": a company's legal
# form ("Acme, Inc"), a suffix ("Doe, Jr"), a title without its dot ("Weiß, Dr Jürgen"), or a
# team's mailbox ("Support, Team"). With one of them the name is left as written.
_LEGAL_FORMS = ("inc ltd llc llp plc corp corporation co company limited gmbh ag kg ug mbh ohg "
                "sa sas sarl spa srl bv nv oy ab as pty pte bhd kk")
_SUFFIXES_AND_TITLES = "jr sr ii iii iv phd md esq dr prof mr mrs ms miss mx sir dame herr frau"
_TEAM_WORDS = ("team support service services sales billing accounts info admin office "
               "helpdesk desk department dept group staff")
_NOT_A_GIVEN_NAME = frozenset(f"{_LEGAL_FORMS} {_SUFFIXES_AND_TITLES} {_TEAM_WORDS}".split())

# A name word: letters (with their combining marks), joined inside the word by a hyphen or
# an apostrophe, as in Müller-Lüdenscheidt or O'Brien. No digits, no dots, no brackets.
_WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")


def greeting_name(display: str, address: str = "") -> str:
    """The name to greet with: `display` as people say it, or "" for none.

    "" when the display name is empty, an address, or `address` again. A "Last, First"
    name of Latin letters (one comma, words of letters, hyphens and apostrophes, at most
    four words a side, none a title, suffix, legal form or team word) becomes "First Last";
    any other name is returned as written, its
    runs of white space made single spaces (and its letters composed, NFC).
    """
    name = " ".join(unicodedata.normalize("NFC", display).split())
    if not name or "@" in name or name.casefold() == address.strip().casefold():
        return ""
    last, comma, first = name.partition(",")
    if not comma or "," in first:
        return name
    last_words, first_words = last.split(), first.split()
    if not _plain_words(last_words) or not _plain_words(first_words):
        return name
    if any(word.casefold() in _NOT_A_GIVEN_NAME for word in [*last_words, *first_words]):
        return name
    if not _latin(name):
        return name
    return " ".join([*first_words, *last_words])


def _plain_words(words: list[str]) -> bool:
    return 0 < len(words) <= _MAX_WORDS and all(_WORD.fullmatch(word) for word in words)


def _latin(text: str) -> bool:
    """Every letter of `text` is a Latin letter (accents and ß included)."""
    return all(unicodedata.name(char, "").startswith("LATIN ")
               for char in text if char.isalpha())
