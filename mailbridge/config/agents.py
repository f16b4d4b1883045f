"""The team part of the configuration: who the agents are, when they work, and [[faq]].

This module owns the agents' profile and rota keys and the FAQ articles, and the checks that
span entries (an agent's policies must exist, someone must be active). `mailbridge.config`
builds `AgentSettings` on `AgentProfile` and adds `FaqSettings` as [[faq]]. Public API:

- `AgentProfile`: name, email, title, signature, photo_url, photo_file, languages, policies,
  timezone, shift, days_off, holidays, max_open, active, notify, digest.
- `FaqSettings` with `FaqMatchSettings`: an article's title, https URL, language (one with
  templates, `ANY_LANGUAGE` for every language, None for the [support] language) and match.
- `agent_problems(agents, policies)`: the cross-checks as problem sentences, on the raw tables
  of the file or on validated settings alike.
- `describe_error(error, sections)`: `mailbridge.config.sla.describe_error`, taught [[faq]]
  and the tables nested in [[agents]] and [[faq]].
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

from mailbridge.config.branding import InlineImage
from mailbridge.config.problems import show, unknown
from mailbridge.config.sla import DEFAULT_POLICY, HolidaySettings
from mailbridge.config.sla import describe_error as describe_sla_error
from mailbridge.config.values import (
    Address,
    ClosedDays,
    HttpsUrl,
    LanguageTag,
    NonEmpty,
    OneLine,
    Regex,
    Signature,
    StrictBool,
    TemplateLanguage,
    Timezone,
    WeekHours,
)

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentProfile(_Table):
    """A person who answers customers: how they sign, what they serve, when they work."""

    name: NonEmpty
    email: Address
    title: OneLine = ""
    signature: Signature = ""
    photo_url: HttpsUrl | None = None
    photo_file: InlineImage | None = None
    """Their photo, read at load and sent inside each mail (`mailbridge.config.branding`)."""
    from_address: Address | None = None
    """A personal alias the agent's acknowledgements come from; None: the support address."""
    languages: tuple[LanguageTag, ...] = ()
    """The languages they write; (): not stated, any language."""
    policies: tuple[NonEmpty, ...] | None = None
    """The policies they serve; None: every policy."""
    timezone: Timezone | None = None
    """The zone of their shift; None: the [support] timezone."""
    shift: WeekHours | None = None
    """Their weekly hours; None: always on shift."""
    days_off: ClosedDays = frozenset()
    holidays: HolidaySettings | None = None
    max_open: Annotated[int, Field(strict=True, ge=1)] | None = None
    active: StrictBool = True
    notify: tuple[Literal["assigned", "new"], ...] = ("assigned",)
    """When they get a hand-over notice: "assigned" (a thread given to them by #assign, a
    lead or a shift hand-over), "new" (every new thread assigned to them); (): never."""
    digest: StrictBool = True
    """A digest of their open threads at the start of each shift."""

    @model_validator(mode="after")
    def _shift_has_hours(self) -> AgentProfile:
        if self.shift is not None and not any(self.shift.values()):
            raise ValueError("shift: no hours on any day; give hours, or leave shift out for "
                             "an agent always on shift (active = false takes them off the rota)")
        return self


class FaqMatchSettings(_Table):
    """What selects an article: whole words or phrases, or regular expressions."""

    keywords: tuple[NonEmpty, ...] = ()
    patterns: tuple[Regex, ...] = ()


ANY_LANGUAGE = "any"
"""An [[faq]] language that offers the article in mail of every language."""


def _any_or_template_language(value: object, handler: ValidatorFunctionWrapHandler) -> str:
    if isinstance(value, str) and value.strip().lower() == ANY_LANGUAGE:
        return ANY_LANGUAGE
    return str(handler(value))


FaqLanguage = Annotated[TemplateLanguage, WrapValidator(_any_or_template_language)]
"""A language we have templates for, or "any"."""


class FaqSettings(_Table):
    """An article the acknowledgement suggests while the customer waits."""

    title: Annotated[OneLine, Field(min_length=1, max_length=120)]
    url: HttpsUrl
    language: FaqLanguage | None = None
    """Suggested only in mail of this language, or ANY_LANGUAGE in all; None: [support]
    language."""
    match: FaqMatchSettings = Field(default_factory=FaqMatchSettings)

    @model_validator(mode="after")
    def _has_rules(self) -> FaqSettings:
        if not self.match.keywords and not self.match.patterns:
            raise ValueError('match: an article needs keywords or patterns, e.g. [faq.match] '
                             'keywords = ["password"]')
        return self


# -- checks across entries ---------------------------------------------------------------------


def agent_problems(agents: object, policies: object) -> list[str]:
    """Unknown policies in [[agents]] policies, and no active agent, as problem sentences.

    Takes the raw TOML values (anything may be malformed; what is not a name is left to
    pydantic), so these problems are listed even when other keys fail validation.
    """
    entries = _entries(agents)
    known = [DEFAULT_POLICY, *(entry["name"].strip() for _, entry in _entries(policies)
                               if isinstance(entry.get("name"), str))]
    problems = []
    for number, entry in entries:
        served = entry.get("policies")
        if not isinstance(served, Sequence) or isinstance(served, str):
            continue
        for name in served:
            if isinstance(name, str) and name.strip() and name.strip() not in known:
                listed = ", ".join(show(k) for k in known)
                problems.append(f"[[agents]] #{number} policies: unknown policy {show(name)} "
                                f"(known: {listed}); add a [[policies]] block with that name, "
                                "or leave policies out to serve every policy")
    if entries and all(entry.get("active") is False for _, entry in entries):
        problems.append("[[agents]]: every agent has active = false; at least one must be "
                        "active to sign the acknowledgements")
    return problems


def _entries(value: object) -> list[tuple[int, Mapping[str, Any]]]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [(n, item) for n, item in enumerate(value, start=1) if isinstance(item, Mapping)]


# -- problem sentences -------------------------------------------------------------------------

_NESTED: dict[tuple[str, str], type[BaseModel]] = {
    ("agents", "holidays"): HolidaySettings,
    ("faq", "match"): FaqMatchSettings,
}
_FAQ_TABLE = re.compile(r"(?<!\[)\[faq\](?!\])")


def describe_error(error: ErrorDetails, sections: Mapping[str, type[BaseModel]]) -> list[str]:
    """One pydantic error as problem sentences, [[faq]] and nested tables included."""
    loc, kind = error["loc"], error["type"]
    keys = tuple(part for part in loc if isinstance(part, str))
    nested = _NESTED.get((keys[0], keys[1])) if len(keys) > 2 else None
    if kind == "extra_forbidden" and nested is not None:
        text = unknown(loc, error["input"], {keys[0]: nested})
        return [_FAQ_TABLE.sub("[[faq]]", text)]
    if loc == ("faq",) and kind == "tuple_type":
        return ["[[faq]]: expected [[faq]] blocks (an array of tables), not [faq]"]
    if keys[:1] == ("faq",) and kind == "missing" and keys[1:] in (("title",), ("url",)):
        number = next((part + 1 for part in loc if isinstance(part, int)), 1)
        example = {"title": 'title = "Resetting your password"',
                   "url": 'url = "https://example.com/help/password"'}[keys[1]]
        return [f"[[faq]] #{number} {keys[1]}: missing; add {example}"]
    return [_FAQ_TABLE.sub("[[faq]]", text) for text in describe_sla_error(error, sections)]
