"""FAQ suggestions: which articles match a message, in which order, and why."""

from __future__ import annotations

import re

import pytest

from mailbridge.core.faq import Article, suggest

PASSWORD = Article("Resetting your password", "https://help.example.com/password",
                   keywords=("password", "log in"), patterns=(re.compile(r"(?i)can'?t\s+sign"),))
INVOICE = Article("Where to find your invoices", "https://help.example.com/invoices",
                  keywords=("invoice", "receipt"))
REFUND = Article("Refunds", "https://help.example.com/refunds", keywords=("refund",))
SHIPPING = Article("Versand und Lieferzeiten", "https://help.example.com/de/versand",
                   keywords=("Lieferung", "Versand"), language="de")
ARTICLES = (PASSWORD, INVOICE, REFUND, SHIPPING)


def titles(subject: str, text: str = "", **options: object) -> list[str]:
    return [s.title for s in suggest(ARTICLES, subject=subject, text=text, **options)]  # type: ignore[arg-type]


def test_keywords_match_whole_words_in_subject_or_text() -> None:
    """A keyword matches as a whole word, in any case, in the subject or the first text part."""
    assert titles("Password help") == ["Resetting your password"]
    assert titles("Help", "I cannot LOG\nIN since Monday") == ["Resetting your password"]
    assert titles("Passwords") == []  # not the whole word
    assert titles("Where is my parcel?", "") == []


def test_patterns_are_regular_expressions() -> None:
    """An article's pattern is searched in subject and text."""
    assert titles("Help", "I can't   sign in") == ["Resetting your password"]


def test_at_most_three_ranked_by_matches_subject_first() -> None:
    """More matched rules rank higher, a subject match counts twice, ties keep file order."""
    many = (*ARTICLES, Article("Accounts", "https://help.example.com/accounts",
                               keywords=("account",)))
    found = suggest(many, subject="Refund for invoice",
                    text="my account password and invoice receipt", limit=3)
    assert [s.title for s in found] == ["Where to find your invoices", "Refunds",
                                        "Resetting your password"]
    assert found[0].reasons == ("keyword invoice", "keyword receipt")
    assert suggest(many, subject="x", text="refund", limit=0) == ()


def test_quoted_lines_are_not_searched() -> None:
    """Our own words quoted back ("> ...") do not select articles."""
    assert titles("Re: question", "> your invoice is attached\nthanks") == []


def test_an_article_in_one_language_is_only_suggested_in_it() -> None:
    """A German article is offered in German mail only; articles without a language always."""
    assert titles("Lieferung?", language="de") == ["Versand und Lieferzeiten"]
    assert titles("Lieferung?", language="en") == []
    assert titles("Rechnung / invoice", language="de") == ["Where to find your invoices"]


def test_urls_must_be_https() -> None:
    """An article with an http:// URL is refused."""
    with pytest.raises(ValueError, match="https://"):
        Article("Old", "http://help.example.com/old", keywords=("x",))
