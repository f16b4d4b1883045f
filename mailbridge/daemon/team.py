"""The configured agents and FAQ articles as core objects, built once at start-up.

Public API:

- `build_team(config) -> Team`.
- `Team`: the roster (`members`, `core.agents.Member`s in file order), the FAQ `articles`
  (each in its [[faq]] language, else the [support] language; "any": every language),
  `agent(email, name)` (the configured profile, or a bare `Agent` for an address that is
  no longer configured) and `available(now)` (who is active and on shift).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

from mailbridge.config import AgentSettings, Config
from mailbridge.config.agents import ANY_LANGUAGE
from mailbridge.core import agents
from mailbridge.core.calendar import Calendar
from mailbridge.core.faq import Article
from mailbridge.core.model import Agent

_WHOLE_DAY = ((time(0), time(0)),)  # 00:00-24:00


@dataclass(frozen=True)
class Team:
    members: tuple[agents.Member, ...]
    articles: tuple[Article, ...] = ()

    def agent(self, email: str, name: str = "") -> Agent:
        """The agent with this address as configured; a bare Agent if no longer configured."""
        member = agents.find(self.members, email)
        return member.agent if member is not None else Agent(name or email, email)

    def available(self, now: datetime) -> tuple[str, ...]:
        """The (lower-case) addresses of the agents on shift at `now`."""
        return tuple(m.email for m in self.members if m.on_shift(now))


def build_team(config: Config) -> Team:
    """The roster and the FAQ articles of `config` (already validated)."""
    zone = config.support.timezone
    members = tuple(_member(settings, zone) for settings in config.agents)
    articles = tuple(
        Article(title=f.title, url=f.url, keywords=f.match.keywords,
                patterns=f.match.patterns,
                language=None if f.language == ANY_LANGUAGE
                else f.language or config.support.language)
        for f in config.faq
    )
    return Team(members, articles)


def _member(settings: AgentSettings, default_zone: str) -> agents.Member:
    agent = Agent(settings.name, settings.email, title=settings.title,
                  signature=settings.signature, photo_url=settings.photo_url or "",
                  photo=settings.photo_file,
                  from_address=settings.from_address or "")
    return agents.Member(
        agent=agent, shift=_shift(settings, default_zone),
        policies=frozenset(settings.policies) if settings.policies is not None else None,
        languages=settings.languages, max_open=settings.max_open, active=settings.active,
        notify=frozenset(settings.notify), digest=settings.digest,
    )


def _shift(settings: AgentSettings, default_zone: str) -> Calendar:
    """Their shift as a calendar; with no shift, every day all day (minus days off)."""
    holidays = settings.holidays
    days_off = bool(settings.days_off) or holidays is not None
    hours = settings.shift
    if hours is None:
        hours = {day: _WHOLE_DAY for day in range(7)}
    return Calendar(
        name=f"shift of {settings.name}", timezone=settings.timezone or default_zone,
        hours=hours, closed=settings.days_off,
        holiday_country=holidays.country if holidays else None,
        holiday_subdivision=holidays.subdivision if holidays else None,
        always_open=settings.shift is None and not days_off,
    )
