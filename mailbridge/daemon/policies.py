"""The SLA policies of a configuration, as core objects.

This module turns the validated settings ([sla], [[calendars]], [[policies]]) into
`mailbridge.core.calendar.Calendar` and `mailbridge.core.policy.Policy` objects, once, at
start-up. Public API:

- `build_policies(config) -> PolicySet`.
- `PolicySet`: the default policy, the configured ones in file order, every calendar and
  every policy by name, and `choose(message, mailbox) -> (policy, reason)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from mailbridge.config import CalendarSettings, Config, MatchSettings
from mailbridge.config.sla import ALWAYS_OPEN_CALENDAR, DEFAULT_POLICY
from mailbridge.core import policy as core
from mailbridge.core.calendar import Calendar
from mailbridge.core.model import InboundMessage


@dataclass(frozen=True)
class PolicySet:
    """Every SLA policy of a configuration; `choose` picks one for a message."""

    default: core.Policy
    policies: tuple[core.Policy, ...]
    calendars: Mapping[str, Calendar] = field(hash=False)
    """Every calendar by name, the built-in "24/7" included."""
    by_name: Mapping[str, core.Policy] = field(hash=False)
    """Every policy by name, "default" included."""

    def choose(self, message: InboundMessage, mailbox: str) -> tuple[core.Policy, str]:
        """The first configured policy that selects the message, else the default; and why."""
        return core.choose_policy(message, mailbox, self.policies, self.default)


def build_policies(config: Config) -> PolicySet:
    """The policies and calendars of `config` (already validated, so every name resolves).

    The built-in "24/7" calendar is always open, in the [support] timezone; a calendar
    without its own timezone uses that zone too. The default policy, "default" with
    priority "normal", takes its targets and calendar from [sla].
    """
    zone = config.support.timezone
    calendars: dict[str, Calendar] = {
        ALWAYS_OPEN_CALENDAR: Calendar(
            name=ALWAYS_OPEN_CALENDAR, timezone=zone, hours={}, always_open=True),
    }
    for settings in config.calendars:
        calendars[settings.name] = _calendar(settings, zone)
    sla = config.sla
    default = core.Policy(
        name=DEFAULT_POLICY, priority="normal", calendar=calendars[sla.calendar],
        first_response=sla.first_response,
        next_response=sla.next_response or sla.first_response,
        periodic_update=sla.periodic_update, resolution=sla.resolution,
        objective=sla.objective, escalate_to=sla.escalate_to, language=sla.language,
    )
    policies = tuple(
        core.Policy(
            name=p.name, priority=p.priority, calendar=calendars[p.calendar or sla.calendar],
            first_response=p.first_response,
            next_response=p.next_response or p.first_response,
            periodic_update=p.periodic_update, resolution=p.resolution,
            objective=p.objective, escalate_to=p.escalate_to, match=_match(p.match),
            language=p.language or sla.language,
        )
        for p in config.policies
    )
    by_name = {policy.name: policy for policy in (default, *policies)}
    return PolicySet(default=default, policies=policies, calendars=MappingProxyType(calendars),
                     by_name=MappingProxyType(by_name))


def _calendar(settings: CalendarSettings, default_zone: str) -> Calendar:
    holidays = settings.holidays
    return Calendar(
        name=settings.name,
        timezone=settings.timezone or default_zone,
        hours=settings.hours or {},
        closed=settings.closed,
        holiday_country=holidays.country if holidays else None,
        holiday_subdivision=holidays.subdivision if holidays else None,
        always_open=settings.always_open,
    )


def _match(settings: MatchSettings) -> core.Match:
    return core.Match(
        senders=settings.senders, subject=settings.subject, keywords=settings.keywords,
        to=settings.to, mailboxes=settings.mailboxes, priority=settings.priority,
        all=settings.all,
    )
