"""Which folders of the support mailbox hold the agents' sent mail: chosen by role, then name.

Public API: `Folder`, `SentChoice`, `choose_sent_folders(configured, listing, inbox)`,
`marked_sent(listing)`, `AUTO`, `USUAL_SENT_NAMES`, `NEVER_WATCHED`.

Pure: the server's folder listing (names and attributes, as LIST, LIST (SPECIAL-USE) or
XLIST report them; `mailbridge.io.imap_folders`) goes in, the folders to watch come out
with what to tell the operator. With `sent_folders = "auto"` the folders the server marks
`\\Sent` (RFC 6154) win; else the first of `USUAL_SENT_NAMES` the server has; else none.
A configured list keeps only the folders that exist. Junk and Trash are never watched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

AUTO = "auto"
USUAL_SENT_NAMES = (
    "Sent", "Sent Items", "Sent Messages", "Sent Mail", "[Gmail]/Sent Mail",
    "[Google Mail]/Sent Mail", "INBOX.Sent", "Gesendet", "Gesendete Elemente",
    "Gesendete Objekte", "Envoyés", "Éléments envoyés", "Elementos enviados",
    "Posta inviata", "Verzonden items",
)
"""Names of Sent folders in common servers and client languages, tried in this order when
no folder is marked \\Sent (Dovecot, Microsoft 365, Apple, Gmail, Courier; German, French,
Spanish, Italian, Dutch)."""
SENT = "\\sent"
NEVER_WATCHED = frozenset({"\\junk", "\\trash"})
"""Attributes (lowercased) of folders never watched, even when configured."""


@dataclass(frozen=True)
class Folder:
    """One folder as the server lists it; `flags` lowercased (`\\sent`, `\\noselect`)."""

    name: str
    flags: frozenset[str] = frozenset()

    @property
    def selectable(self) -> bool:
        return not {"\\noselect", "\\nonexistent"} & self.flags


@dataclass(frozen=True)
class SentChoice:
    """The folders to watch for the agents' sent mail, and why."""

    folders: tuple[str, ...]
    how: str
    """"special_use" (marked \\Sent), "name" (a usual name), "configured", or "none"."""
    missing: tuple[str, ...] = ()
    """Configured folders the server does not have."""
    refused: tuple[str, ...] = ()
    """Configured folders that are Junk or Trash."""


def marked_sent(listing: Sequence[Folder]) -> tuple[str, ...]:
    """The selectable folders the server marks \\Sent, in its order."""
    return tuple(f.name for f in listing if SENT in f.flags and f.selectable)


def choose_sent_folders(configured: str | Sequence[str], listing: Sequence[Folder], *,
                        inbox: str = "INBOX") -> SentChoice:
    """The Sent folders to watch: `configured` is `AUTO` or a list of names; `inbox` (the
    watched mailbox) is never among them."""
    usable = {f.name: f for f in listing
              if f.selectable and not NEVER_WATCHED & f.flags and f.name != inbox}
    if not isinstance(configured, str):
        refused = tuple(n for n in configured if n not in usable and _excluded(n, listing))
        missing = tuple(n for n in configured if n not in usable and n not in refused)
        kept = tuple(dict.fromkeys(n for n in configured if n in usable))
        return SentChoice(kept, "configured", missing, refused)
    marked = tuple(n for n in marked_sent(listing) if n in usable)
    if marked:
        return SentChoice(marked, "special_use")
    by_lower = {name.lower(): name for name in usable}
    for name in USUAL_SENT_NAMES:
        if name.lower() in by_lower:
            return SentChoice((by_lower[name.lower()],), "name")
    return SentChoice((), "none")


def _excluded(name: str, listing: Sequence[Folder]) -> bool:
    return any(f.name == name and NEVER_WATCHED & f.flags for f in listing)
