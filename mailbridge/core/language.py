"""Which language a customer is written to.

This module owns the choice of language for our mail to a customer. It is pure: header
values and settings in, a language and a short reason out. Public API:

- `normalize(tag)`: a language tag in the form the template folders use ("de-DE" -> "de-de").
- `content_languages(header)`: the tags of a Content-Language header (RFC 3282), in order.
- `choose_language(content_language, *, policy, support, available) -> (language, reason)`:
  the message's Content-Language when we have templates for it, else the policy's
  language, else the support default, else the first available one.

A tag matches a template folder exactly ("pt-br") or by its primary subtag ("de-AT" uses
"de"). Reasons name the header value only as a tag, never other customer text.
"""

from __future__ import annotations

import re
from collections.abc import Collection

_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")


def normalize(tag: str) -> str:
    """A language tag lower-cased with "_" as "-": "de_DE" -> "de-de"; "" when malformed."""
    text = tag.strip().replace("_", "-").lower()
    return text if _TAG.fullmatch(text) else ""


def content_languages(header: str | None) -> tuple[str, ...]:
    """The well-formed tags of a Content-Language value, normalized, in order."""
    if not header:
        return ()
    tags = (normalize(part.split(";")[0]) for part in header.split(","))
    return tuple(dict.fromkeys(tag for tag in tags if tag))


def match(tag: str, available: Collection[str]) -> str | None:
    """The available language for `tag`: the tag itself, or its primary subtag."""
    tag = normalize(tag)
    if not tag:
        return None
    if tag in available:
        return tag
    primary = tag.split("-")[0]
    return primary if primary in available else None


def choose_language(content_language: str | None, *, policy: str | None, support: str,
                    available: Collection[str]) -> tuple[str, str]:
    """The language to write in, and why.

    `available` are the languages we have templates for; it must not be empty.
    """
    if not available:
        raise ValueError("no languages available")
    for tag in content_languages(content_language):
        found = match(tag, available)
        if found is not None:
            return found, f"Content-Language {tag}"
    if policy:
        found = match(policy, available)
        if found is not None:
            return found, "the policy's language"
    found = match(support, available)
    if found is not None:
        return found, "the support default"
    fallback = "en" if "en" in available else sorted(available)[0]
    return fallback, "the default language"
