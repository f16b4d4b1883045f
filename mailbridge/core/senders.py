"""Addresses that belong to mail software, not to a person.

Public API: `system_kind(address) -> str | None`, `system_name(display_name) -> bool`,
`raw_address(value) -> str`, `form_relay(message) -> bool`.

A mail system writes from names that people never take: MAILER-DAEMON, postmaster (also
post_master, post-master), list servers (LISTSERV, majordomo, `...-request`, `owner-...`,
`...-admin`), bounce handlers (`bounces@`, `bounce-...@`, `...-bounces@`, VERP forms such as
`bounces+tag@`) and no-reply addresses in the languages mail is written in (`noreply`,
`do-not-reply`, `ne-pas-repondre`, `naoresponda`, ... anywhere in the local part, so
`gmail-noreply@` counts). Dovecot Pigeonhole's vacation extension treats MAILER-DAEMON,
LISTSERV, majordomo, `-request` anywhere and `owner-` as system addresses too.

Only the local part is read: a domain says nothing about whether a person wrote.
"""

from __future__ import annotations

import re

from mailbridge.core.model import InboundMessage
from mailbridge.core.trust import aligned

_SEP = r"[-_.+= ]?"
_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a mail server's MAILER-DAEMON", re.compile(rf"mailer{_SEP}daemon|^mail{_SEP}daemon$")),
    ("a postmaster address", re.compile(rf"post{_SEP}master")),
    ("a mail delivery system", re.compile(
        rf"^mail{_SEP}delivery|^(?:mail|smtp|mta){_SEP}(?:mail{_SEP})?"
        rf"(?:system|subsystem|service|gateway)s?$|smtp{_SEP}mail{_SEP}service"
        rf"|^system{_SEP}administrator$")),
    ("a mailing-list server", re.compile(
        r"^(?:listserv|listproc|majordomo|mailman|sympa|ezmlm|lyris)$|-request(?![a-z0-9])"
        r"|^owner-|-admin$|-return-\d")),
    ("a bounce handler", re.compile(r"(?:^|[-_.+=])bounces?(?:$|[-_.+=])")),
    ("a feedback-loop address", re.compile(rf"^(?:fbl|feedback{_SEP}loop|arf)$")),
    ("a no-reply address", re.compile(
        rf"no{_SEP}reply|do{_SEP}not{_SEP}reply|dont{_SEP}reply|no{_SEP}responder"
        rf"|ne{_SEP}pas{_SEP}repondre|nao{_SEP}respond[ae]|non{_SEP}rispondere"
        rf"|niet{_SEP}beantwoorden|nicht{_SEP}antworten|bitte{_SEP}nicht{_SEP}antworten")),
)
NO_REPLY = "a no-reply address"

_SYSTEM_NAME = re.compile(
    r"^\W*(?:mail(?:er)?[- ]?daemon|post[-_ ]?master|mail delivery (?:sub)?system"
    r"|mail delivery service|mail (?:system|administrator)|system administrator"
    r"|mail(?:er)? service|delivery status notification)\W*$", re.IGNORECASE)
_ANGLE = re.compile(r"<([^<>]*)>")


def local_part(address: str) -> str:
    """The local part of an address (or a bare name), lower-case, without quotes."""
    address = address.strip().strip("<>").lower()
    local = address.rpartition("@")[0] if "@" in address else address
    return local.strip().strip('"').strip()


def system_kind(address: str) -> str | None:
    """Which kind of mail software `address` (an addr-spec or a bare local part) belongs
    to, as a few words; None when it may be a person's."""
    local = local_part(address)
    if not local:
        return None
    return next((kind for kind, pattern in _KINDS if pattern.search(local)), None)


def system_name(display_name: str) -> bool:
    """Whether a display name is one that mail software signs with ("Mail Delivery
    System", "Postmaster", "MAILER-DAEMON"); a person may still choose one."""
    return bool(display_name) and bool(_SYSTEM_NAME.match(display_name.strip()))


def raw_address(value: str) -> str:
    """The address in a header value the parser could not read, as written: the text in
    angle brackets ("Mail Delivery Subsystem <MAILER-DAEMON>"), else the rest of the value
    ("MAILER-DAEMON <>")."""
    found = _ANGLE.search(value)
    if found and found.group(1).strip():
        return found.group(1).strip()
    return (value[:found.start()] if found else value).strip().strip('"').strip()


def form_relay(message: InboundMessage) -> bool:
    """A web form or a marketplace writing for a person: From is a no-reply address of the
    site and Reply-To names one address, of another organisation's domain, that is not mail
    software."""
    if len(message.reply_to) != 1 or not message.from_:
        return False
    target = message.reply_to[0].addr.lower()
    if "@" not in target or system_kind(target) is not None:
        return False
    author = message.from_[0]
    return system_kind(author.addr) == NO_REPLY and not aligned(author.addr, target)
