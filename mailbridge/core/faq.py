"""Articles that may answer a customer's question while they wait.

This module owns FAQ matching. It is pure: the configured articles and the message's
subject and first text part in, at most a few suggestions out, each with why it matched.
Public API:

- `Article`: a title, an https URL, match rules (whole-word keywords, regular expressions)
  and optionally the one language it is written in.
- `Suggestion`: an article chosen for a message, with its reasons.
- `suggest(articles, *, subject, text, language=None, limit=3)`: the best matches.

An article matches when any of its keywords appears as a whole word or phrase (ignoring
case) or any of its patterns is found, in the subject or in the text. Matches rank by how
many rules matched, a match in the subject counting twice; ties keep the configured order.
Quoted lines ("> ...") are not searched: they are usually our own words coming back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

MAX_SUGGESTIONS = 3


@dataclass(frozen=True)
class Article:
    """One FAQ article and what selects it; an article without rules never matches."""

    title: str
    url: str
    keywords: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()
    language: str | None = None
    """Only suggested in mail of this language (a folder name such as "de"); None: any."""

    def __post_init__(self) -> None:
        if not self.url.startswith("https://"):
            raise ValueError(f"FAQ article {self.title!r}: the URL must start with https://")


@dataclass(frozen=True)
class Suggestion:
    title: str
    url: str
    reasons: tuple[str, ...]
    """What matched, in configured words: ("keyword password", "pattern reset.*link")."""


def suggest(articles: Sequence[Article], *, subject: str, text: str,
            language: str | None = None, limit: int = MAX_SUGGESTIONS) -> tuple[Suggestion, ...]:
    """Up to `limit` articles for a message, best first; () when none matches."""
    body = _unquoted(text)
    ranked: list[tuple[int, int, Suggestion]] = []
    for index, article in enumerate(articles):
        if article.language is not None and language is not None \
                and article.language != language:
            continue
        score, reasons = _score(article, subject, body)
        if score:
            ranked.append((-score, index, Suggestion(article.title, article.url, reasons)))
    ranked.sort(key=lambda item: item[:2])
    return tuple(suggestion for _, _, suggestion in ranked[:max(limit, 0)])


def _score(article: Article, subject: str, body: str) -> tuple[int, tuple[str, ...]]:
    score, reasons = 0, []
    rules = [(f"keyword {k}", _word(k)) for k in article.keywords]
    rules += [(f"pattern {p.pattern}", p) for p in article.patterns]
    for reason, pattern in rules:
        in_subject = pattern.search(subject) is not None
        if in_subject or pattern.search(body) is not None:
            score += 2 if in_subject else 1
            reasons.append(reason)
    return score, tuple(reasons)


def _unquoted(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(">"))


@lru_cache(maxsize=1024)
def _word(keyword: str) -> re.Pattern[str]:
    # As in core.policy: lookarounds rather than \b, so "C++" or "#urgent" match as words.
    phrase = r"\s+".join(re.escape(part) for part in keyword.split())
    return re.compile(rf"(?<!\w){phrase}(?!\w)", re.IGNORECASE)
