"""Where a customer's request stands, in words: its place in the queue, who has it, whether
a person has opened it yet, and the answer time a status update promises.

Pure: counts, flags and times in, sentences out; nothing here reads a clock or a store.

    Right now 2 requests are ahead of yours.
    Right now 1 request is ahead of yours.
    Right now yours is next.
    Your request is with Sam Okafor. It has not been opened yet.

German is written to the customer with the formal "Sie":

    Vor Ihrer Anfrage sind gerade noch 2 andere an der Reihe.
    Ihre Anfrage ist als Nächste an der Reihe.
    Ihre Anfrage liegt bei Sam Okafor. Sie wurde noch nicht geöffnet.

Public API:

- `StandingWords`, the sentences of one language; `WORDS`, the built-in ones ("en", "de");
  `words_for(language)`: those of a language tag, or None for a language without them
  (its templates get the numbers and flags and word them themselves).
- `describe_queue(ahead, words)`: the place in the queue (`ahead` requests before it);
  `QUEUE_CAP`: counts stop there (the store counts no further) and read "at least".
- `describe_progress(agent_name, opened, words)`: who has it and whether it was opened;
  `opened` None (not known: the mailbox could not be asked) says nothing about opening.
- `revised_promise(decided, *, deadline, waiting_since, recent_seconds, ...)`: the time a
  status update promises, from the same data as the acknowledgement's (`core.eta`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from mailbridge.core.eta import honest_due

QUEUE_CAP = 100
"""The longest queue counted exactly: beyond it the number tells a customer nothing more, and
counting on would cost every acknowledgement a read of the whole backlog."""


@dataclass(frozen=True)
class StandingWords:
    """One language's sentences; the patterns use str.format fields {count} and {agent}."""

    next: str
    """Nothing is ahead."""
    one_ahead: str
    many_ahead: str
    """{count} (2 or more) requests are ahead."""
    at_least_ahead: str
    """At least {count} (`QUEUE_CAP`) requests are ahead."""
    with_agent: str
    opened: str
    """A person has opened it (the \\Seen flag, or an agent's note on the thread)."""
    not_opened: str


ENGLISH = StandingWords(
    next="Right now yours is next.",
    one_ahead="Right now 1 request is ahead of yours.",
    many_ahead="Right now {count} requests are ahead of yours.",
    at_least_ahead="Right now at least {count} requests are ahead of yours.",
    with_agent="Your request is with {agent}.",
    opened="It has been opened but not answered yet.",
    not_opened="It has not been opened yet.",
)

GERMAN = StandingWords(
    next="Ihre Anfrage ist als Nächste an der Reihe.",
    one_ahead="Vor Ihrer Anfrage ist gerade noch eine andere an der Reihe.",
    many_ahead="Vor Ihrer Anfrage sind gerade noch {count} andere an der Reihe.",
    at_least_ahead="Vor Ihrer Anfrage sind gerade noch mindestens {count} andere an der Reihe.",
    with_agent="Ihre Anfrage liegt bei {agent}.",
    opened="Sie wurde bereits geöffnet, aber noch nicht beantwortet.",
    not_opened="Sie wurde noch nicht geöffnet.",
)

WORDS: Mapping[str, StandingWords] = MappingProxyType({"en": ENGLISH, "de": GERMAN})


def words_for(language: str) -> StandingWords | None:
    """The built-in sentences of a language tag ("de-AT" is German); None without them."""
    return WORDS.get(language.lower().split("-", maxsplit=1)[0])


def describe_queue(ahead: int, words: StandingWords) -> str:
    """The request's place: `ahead` open requests come before it. ValueError below 0."""
    if ahead < 0:
        raise ValueError(f"a queue position cannot be negative, got {ahead}")
    if ahead == 0:
        return words.next
    if ahead == 1:
        return words.one_ahead
    if ahead >= QUEUE_CAP:
        return words.at_least_ahead.format(count=QUEUE_CAP)
    return words.many_ahead.format(count=ahead)


def describe_progress(agent_name: str, opened: bool | None, words: StandingWords) -> str:
    """Who has the request and, when known, whether a person has opened it yet."""
    parts = [words.with_agent.format(agent=agent_name)] if agent_name else []
    if opened is not None:
        parts.append(words.opened if opened else words.not_opened)
    return " ".join(parts)


def revised_promise(decided: datetime, *, deadline: datetime | None, waiting_since: datetime,
                    recent_seconds: Sequence[float], percentile: int, min_samples: int,
                    add_business: Callable[[datetime, timedelta], datetime],
                    now: datetime) -> datetime:
    """The time a status update promises: what recent first responses let us expect for
    a request waiting since `waiting_since` (`eta.honest_due`, as the acknowledgement
    promised), while that is still ahead; else `decided` (`core.sla`: the deadline while
    it is ahead, or the update interval from now).

    A promise the acknowledgement made from fast recent answers and that has passed is not
    made again: the deadline, or the next interval, is what can honestly be said then.
    """
    if deadline is None or deadline <= now or waiting_since > deadline:
        return decided
    expected = honest_due(deadline, received=waiting_since, recent_seconds=recent_seconds,
                          percentile=percentile, min_samples=min_samples,
                          add_business=add_business)
    return expected if expected > now else decided
