"""The team keys of the configuration: agents' profiles and shifts, [[faq]], languages."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest

from mailbridge.config import Config, load_config
from mailbridge.daemon.team import build_team
from mailbridge.errors import ConfigError
from tests.configs import MINIMAL

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"
FAQ = """
[[faq]]
title = "Resetting your password"
url = "https://example.com/help/password"
[faq.match]
keywords = ["password"]
"""


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "mailbridge.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ={"STATE_DIRECTORY": str(tmp_path)})


def agent(line: str) -> str:
    """MINIMAL with one more key of the agent."""
    return MINIMAL + line + "\n"


def test_defaults(tmp_path: Path) -> None:
    """An agent needs only name and email: always on shift, any policy and language, no cap."""
    config = load(tmp_path, MINIMAL)
    [dana] = config.agents
    assert (dana.title, dana.signature, dana.photo_url) == ("", "", None)
    assert (dana.languages, dana.policies, dana.timezone) == ((), None, None)
    assert (dana.shift, dana.days_off, dana.holidays) == (None, frozenset(), None)
    assert (dana.max_open, dana.active) == (None, True)
    assert config.support.language == "en"
    assert config.sla.language is None and config.faq == ()
    [member] = build_team(config).members
    assert member.shift.always_open and member.policies is None


def test_the_example_agents_and_faq(tmp_path: Path) -> None:
    """The shipped example: Dana's rota and signature, Sam always on, one FAQ article."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "imap-password").write_text("x\n")
    (creds / "smtp-password").write_text("y\n")
    config = load_config(EXAMPLE, environ={"CREDENTIALS_DIRECTORY": str(creds),
                                           "STATE_DIRECTORY": str(tmp_path)})
    dana, sam = config.agents
    assert dana.signature == "Dana Whitfield\nCustomer Success, Example Ltd\n+49 30 1234 5678"
    assert dana.photo_url == "https://example.com/team/dana.jpg"
    assert dana.languages == ("en", "de") and dana.max_open == 25
    assert dana.shift is not None and dana.shift[0] == ((time(8), time(16)),)
    assert 5 not in dana.shift and date(2026, 12, 24) in dana.days_off
    assert dana.holidays is not None and dana.holidays.country == "DE"
    assert sam.shift is None and sam.active
    [article] = config.faq
    assert article.url == "https://example.com/help/password"
    assert article.match.keywords[0] == "password"
    assert [p.pattern for p in article.match.patterns] == [r"(?i)can'?t\s+sign\s+in"]
    team = build_team(config)
    assert team.members[0].shift.timezone == "Europe/Berlin"
    assert team.agent("DANA@example.com").title == "Customer Success"
    assert team.agent("gone@example.com", "Gone").name == "Gone"


def test_languages_shifts_and_policies(tmp_path: Path) -> None:
    """Language tags are normalized; a policy's language falls back to [sla], then support."""
    text = MINIMAL.replace('name = "Example Support"', 'name = "S"\nlanguage = "de"')
    text += 'languages = ["EN", "de_AT"]\npolicies = ["default", "vip"]\nmax_open = 3\n'
    text += 'timezone = "America/New_York"\ndays_off = ["2026-12-24"]\n'
    text += '[agents.shift]\nmon = ["09:00-17:00"]\n'
    text += '[[policies]]\nname = "vip"\nfirst_response = "1h"\nlanguage = "en-GB"\n'
    text += '[[policies]]\nname = "other"\nfirst_response = "1h"\n'
    config = load(tmp_path, text)
    [dana] = config.agents
    assert dana.languages == ("en", "de-at") and dana.policies == ("default", "vip")
    assert config.support.language == "de"
    assert [p.language for p in config.policies] == ["en", None]
    from mailbridge.daemon.policies import build_policies

    policies = build_policies(config)
    assert policies.by_name["vip"].language == "en"
    assert policies.by_name["other"].language is None  # [support] decides
    [member] = build_team(config).members
    assert not member.shift.always_open and member.shift.timezone == "America/New_York"
    assert member.max_open == 3 and member.policies == frozenset({"default", "vip"})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (agent('photo_url = "http://example.com/dana.jpg"'),
         '[[agents]] #1 photo_url: expected an https URL like "https://example.com/help", '
         'got "http://example.com/dana.jpg"'),
        (agent('photo_url = "https://example.com/a b.jpg"'),
         '[[agents]] #1 photo_url: "https://example.com/a b.jpg" holds spaces'),
        (agent('photo_url = "https://user:pw@example.com/a.jpg"'),
         "[[agents]] #1 photo_url: \"https://user:pw@example.com/a.jpg\" holds a user name"),
        (agent('languages = ["english language"]'),
         '[[agents]] #1 languages #1: expected a language tag like "en", "de" or "pt-BR"'),
        (agent('policies = ["vipp"]'),
         '[[agents]] #1 policies: unknown policy "vipp" (known: "default")'),
        (agent("active = false"),
         "[[agents]]: every agent has active = false; at least one must be active"),
        (agent("max_open = 0"), "[[agents]] #1 max_open: must be at least 1, got 0"),
        (agent('title = """two\nlines"""'), "[[agents]] #1 title: must be one line"),
        (agent("signature = '''" + "line\n" * 13 + "'''"),
         "[[agents]] #1 signature: at most 12 lines and 1000 characters"),
        (agent("[agents.shift]\nmon = []"),
         "[[agents]] #1: shift: no hours on any day; give hours, or leave shift out"),
        (agent('[agents.shift]\nmonday = ["09:00-17:00"]'),
         '[[agents]] #1 shift: "monday" is not a day'),
        (agent('timezone = "Europe/Berln"'),
         '[[agents]] #1 timezone: unknown IANA time zone "Europe/Berln"'),
        (agent('days_off = ["2026-13-01"]'),
         '[[agents]] #1 days_off: "2026-13-01" in "2026-13-01" is not a date'),
        (agent('[agents.holidays]\ncountry = "DE"\nstate = "BE"'),
         "[[agents]] #1 holidays state: unknown key (allowed: country, subdivision)"),
        (MINIMAL + FAQ.replace('url = "https://example.com/help/password"\n', ""),
         '[[faq]] #1 url: missing; add url = "https://example.com/help/password"'),
        (MINIMAL + FAQ.replace("https://example.com/help", "http://example.com/help"),
         '[[faq]] #1 url: expected an https URL'),
        (MINIMAL + FAQ.replace('keywords = ["password"]', ""),
         "[[faq]] #1: match: an article needs keywords or patterns"),
        (MINIMAL + FAQ.replace('keywords = ["password"]', 'patterns = ["(unclosed"]'),
         '[[faq]] #1 match patterns #1: "(unclosed" is not a regular expression'),
        (MINIMAL + FAQ.replace("keywords =", "keyword ="),
         '[[faq]] #1 match keyword: unknown key (allowed: keywords, patterns); did you mean '
         '"keywords"?'),
        (MINIMAL + FAQ + 'language = "fr"\n',
         '[[faq]] #1 match language: unknown key'),
        (MINIMAL + '[faq]\ntitle = "x"\n',
         "[[faq]]: expected [[faq]] blocks (an array of tables), not [faq]"),
        (MINIMAL.replace('name = "Example Support"', 'name = "S"\nlanguage = "fr"'),
         '[support] language: no templates for language "fr" (shipped: "de", "en"); add a '
         "folder fr/ with its ack.txt.j2 to the [templates] dir"),
        (MINIMAL + '[sla]\nlanguage = "x y"\n',
         '[sla] language: expected a language tag like "en", "de" or "pt-BR", got "x y"'),
        (MINIMAL + '[[policies]]\nname = "vip"\nfirst_response = "1h"\nlanguage = "it"\n',
         '[[policies]] #1 language: no templates for language "it"'),
    ],
)
def test_each_problem_names_entry_key_and_reason(tmp_path: Path, text: str, problem: str) -> None:
    """A bad team key is one problem naming the agent or article, the key and the fix."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert len(caught.value.problems) == 1, caught.value.problems
    assert caught.value.problems[0].startswith(problem), caught.value.problems[0]


def test_faq_language_is_checked(tmp_path: Path) -> None:
    """An article's language must be one we write in; a shipped one is accepted."""
    text = MINIMAL + FAQ.replace("[faq.match]", 'language = "de"\n[faq.match]')
    assert load(tmp_path, text).faq[0].language == "de"
    with pytest.raises(ConfigError, match=r"\[\[faq\]\] #1 language: no templates"):
        load(tmp_path, MINIMAL + FAQ.replace("[faq.match]", 'language = "fr"\n[faq.match]'))


def test_faq_language_defaults_to_the_desk_and_any_means_every_language(
        tmp_path: Path) -> None:
    """Without a language an article is in the [support] language; "any" offers it in all."""
    german_desk = MINIMAL.replace('name = "Example Support"',
                                  'name = "Example Support"\nlanguage = "de"')
    text = german_desk + FAQ + FAQ.replace("[faq.match]", 'language = "Any"\n[faq.match]')
    config = load(tmp_path, text)
    assert [f.language for f in config.faq] == [None, "any"]
    assert [a.language for a in build_team(config).articles] == ["de", None]


def test_an_agent_alias_must_be_an_address(tmp_path: Path) -> None:
    """from_address is checked like every address."""
    from mailbridge.config.agents import AgentProfile

    assert AgentProfile(name="Dana", email="dana@example.com",
                        from_address="dana@support.example.com").from_address
    with pytest.raises(ValueError, match="from_address"):
        AgentProfile(name="Dana", email="dana@example.com", from_address="not an address")
