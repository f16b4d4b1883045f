"""Whether our own mail server vouches for a staff address on a message.

Public API: `vouch(fields, *, address, authserv_id) -> Vouch`, `Vouch`,
`organizational_domain(domain)`, `aligned(domain, other)`, `notice_due(last, now)`,
`NOTICE_INTERVAL`.

A From header proves nothing. Mail from an agent's (or a lead's) address that arrives in
the watched INBOX counts as theirs only when the topmost `Authentication-Results` field
(RFC 8601) whose authserv-id is ours (`[rules] trusted_authserv_id`) reports

- `dkim=pass` with `header.d=` (or, when a server gives none, the domain of `header.i=`)
  aligned with the address's domain, or
- `spf=pass` with `smtp.mailfrom=` an address (or domain) aligned with it.

Fields of any other authserv-id count for nothing, and only the topmost of ours is read:
our server adds its field on top, and RFC 8601 section 5 has it remove look-alikes of its
id from incoming mail, so a lower one is the sender's forgery. Alignment is DMARC's relaxed
mode (RFC 7489 section 3.1): both domains have the same organizational domain. Without the
Public Suffix List, the organizational domain is the last two labels of a domain, or the
last three when the top-level label is a two-letter country code and the label below it
one of the common second-level labels (co, com, ac, ...): `mail.example.co.uk` ->
`example.co.uk`. A desk whose agents write from a rarer public suffix still aligns its own
exact domain and its subdomains.

The relay (SMTP AUTH) and the watched Sent folders are trusted by where mail comes from;
this module is only about mail in the INBOX.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailbridge.core import authres

NOTICE_INTERVAL = timedelta(hours=1)
"""An agent is told about unauthenticated mail from their address at most this often."""
_SECOND_LEVEL = frozenset({"ac", "co", "com", "edu", "gen", "go", "gob", "gov", "gv", "lg",
                           "ltd", "me", "mil", "ne", "net", "nhs", "or", "org", "plc",
                           "sch"})


@dataclass(frozen=True)
class Vouch:
    trusted: bool
    why: str
    """What vouched ("dkim=pass header.d=example.com"), or why nothing did; no address."""


def _domain(value: str) -> str:
    """The domain of an address, "@domain" or bare domain, lower-case, without a final dot."""
    return value.strip().strip("<>").rpartition("@")[2].rstrip(".").lower()


def organizational_domain(domain: str) -> str:
    """`domain`'s organizational domain, as this module's docstring defines it."""
    labels = [label for label in domain.lower().rstrip(".").split(".") if label]
    keep = 2
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        keep = 3
    return ".".join(labels[-keep:])


def aligned(domain: str, other: str) -> bool:
    """Relaxed alignment: the same organizational domain (RFC 7489 section 3.1)."""
    domain, other = _domain(domain), _domain(other)
    if not domain or not other:
        return False
    return domain == other or organizational_domain(domain) == organizational_domain(other)


def _passes(result: authres.AuthResult, domain: str) -> str:
    """What in `result` vouches for `domain`, or ""."""
    if result.result != "pass":
        return ""
    if result.method == "dkim":
        signer = result.get("header.d") or _domain(result.get("header.i") or "")
        if signer and aligned(signer, domain):
            return f"dkim=pass header.d={_domain(signer)}"
    elif result.method == "spf":
        mailfrom = result.get("smtp.mailfrom") or ""
        if mailfrom and aligned(mailfrom, domain):
            return f"spf=pass smtp.mailfrom domain {_domain(mailfrom)}"
    return ""


def vouch(fields: Sequence[str], *, address: str, authserv_id: str) -> Vouch:
    """Whether the Authentication-Results `fields` (top to bottom, as in the message) of
    our server `authserv_id` vouch for `address`'s domain."""
    wanted = authserv_id.strip().lower()
    if not wanted:
        return Vouch(False, "no [rules] trusted_authserv_id is set")
    domain = _domain(address)
    for value in fields:
        parsed = authres.parse(value)
        if parsed.authserv_id.lower() != wanted:
            continue
        for result in parsed.results:
            found = _passes(result, domain)
            if found:
                return Vouch(True, found)
        return Vouch(False, f"{authserv_id} reports no aligned dkim=pass or spf=pass")
    return Vouch(False, f"no Authentication-Results from {authserv_id}")


def notice_due(last: datetime | None, now: datetime) -> bool:
    """Whether an agent whose last such notice was queued at `last` is told again now."""
    return last is None or now - last >= NOTICE_INTERVAL
