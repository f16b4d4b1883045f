"""Which language a customer is written to: Content-Language, policy, support default."""

from __future__ import annotations

import pytest

from mailbridge.core.language import choose_language, content_languages, normalize

AVAILABLE = frozenset({"en", "de", "pt-br"})


@pytest.mark.parametrize(
    ("header", "policy", "support", "expected"),
    [
        ("de-DE", None, "en", ("de", "Content-Language de-de")),
        ("de", "en", "en", ("de", "Content-Language de")),
        ("fr, de-AT", None, "en", ("de", "Content-Language de-at")),
        ("pt-BR", None, "en", ("pt-br", "Content-Language pt-br")),
        ("fr", "de", "en", ("de", "the policy's language")),
        (None, "de", "en", ("de", "the policy's language")),
        ("", None, "de", ("de", "the support default")),
        ("<script>", None, "en", ("en", "the support default")),
        ("fr", "it", "es", ("en", "the default language")),
    ],
)
def test_choice_and_reason(header: str | None, policy: str | None, support: str,
                           expected: tuple[str, str]) -> None:
    """The message's language when we write it, else the policy's, else the desk's."""
    assert choose_language(header, policy=policy, support=support,
                           available=AVAILABLE) == expected


def test_tags_are_normalized_and_malformed_ones_dropped() -> None:
    """Case, "_" and parameters are normalized; anything not a tag is ignored."""
    assert normalize(" de_DE ") == "de-de"
    assert normalize("de DE") == ""
    assert content_languages("en-GB; q=1, DE, en-gb, !!") == ("en-gb", "de")
    assert content_languages(None) == ()


def test_no_languages_is_an_error() -> None:
    """Without any templates there is nothing to choose from."""
    with pytest.raises(ValueError, match="no languages"):
        choose_language("de", policy=None, support="en", available=())
