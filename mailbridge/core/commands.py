"""Mail commands: lines at the top of an agent's reply that steer its thread.

Public API:

- `parse(text) -> Parsed`: the command lines at the top of `text` (`#pending`, `#close`,
  `#reopen`, `#assign NAME`, `#priority P`, `#note TEXT`), the problems found in them, and
  the text without them.
- `has_own_text(text)`: whether a reply says anything besides quotes and a signature;
  `own_text(text)`: what it says itself.
- `plan(parsed, *, agents, priorities, in_thread) -> Plan`: the actions to apply, or the
  problems to report back to the agent (then nothing is applied).
- The actions `SetState`, `Assign`, `SetPriority`, `Note`; `COMMANDS` and `USAGE`.

A command block is every line from the top of the text that starts with "#" and a letter,
with blank lines allowed before and between them; the first other line ends it. A line such
as "#1 priority" (a digit) or "# heading" (a space) is text. Pure: who may give commands (a
configured agent) and what happens to the thread are the caller's business.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from mailbridge.core.model import Agent
from mailbridge.core.sla import AWAITING_AGENT, AWAITING_CUSTOMER, RESOLVED

COMMANDS = ("pending", "close", "reopen", "assign", "priority", "note")
USAGE = ("#pending (waiting on the customer), #close, #reopen, #assign NAME, #priority P, "
         "#note TEXT")
STATES = {"pending": AWAITING_CUSTOMER, "close": RESOLVED, "reopen": AWAITING_AGENT}
MAX_COMMANDS = 20
MAX_ARGUMENT = 1000

_COMMAND_LINE = re.compile(r"#([A-Za-z][\w-]*)(.*)", re.DOTALL)
_NEEDS = {"assign": "a name, e.g. #assign Sam", "priority": "a priority, e.g. #priority high",
          "note": "a text, e.g. #note called the customer"}


@dataclass(frozen=True)
class Command:
    name: str
    """Lower case, without the "#"."""
    argument: str
    line: str


@dataclass(frozen=True)
class Parsed:
    commands: tuple[Command, ...]
    errors: tuple[str, ...]
    rest: str
    """The text without the command block (unchanged when there is none)."""

    @property
    def found(self) -> bool:
        """Whether the text starts with a command block (good or bad)."""
        return bool(self.commands or self.errors)


@dataclass(frozen=True)
class SetState:
    state: str
    """"awaiting_customer" (#pending), "resolved" (#close) or "awaiting_agent" (#reopen)."""
    command: str


@dataclass(frozen=True)
class Assign:
    agent: Agent


@dataclass(frozen=True)
class SetPriority:
    priority: str


@dataclass(frozen=True)
class Note:
    text: str


Action = SetState | Assign | SetPriority | Note


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    errors: tuple[str, ...]


def _show(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check(name: str, argument: str, line: str) -> str | None:
    """The problem with one command line, or None."""
    if name not in COMMANDS:
        return f"{_show(line)}: unknown command; the commands are {USAGE}"
    if name in STATES and argument:
        return f"{_show(line)}: #{name} takes nothing after it"
    if name in _NEEDS and not argument:
        return f"{_show(line)}: #{name} needs {_NEEDS[name]}"
    if name == "priority" and len(argument.split()) != 1:
        return f"{_show(line)}: #priority takes one word, e.g. #priority high"
    if len(argument) > MAX_ARGUMENT:
        return f"{_show(line)}: longer than {MAX_ARGUMENT} characters"
    return None


def parse(text: str) -> Parsed:
    """The command block at the top of `text`, its problems, and the text after it."""
    lines = text.splitlines(keepends=True)
    commands: list[Command] = []
    errors: list[str] = []
    end = 0
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        match = _COMMAND_LINE.fullmatch(line)
        if match is None:
            break
        end = index + 1
        name, tail = match[1].lower(), match[2]
        if tail and not tail[0].isspace():
            errors.append(f"{_show(line)}: not a command; write each command alone at the "
                          f"start of its line, e.g. #{name}")
            continue
        argument = " ".join(tail.split())
        problem = _check(name, argument, line)
        if problem:
            errors.append(problem)
        else:
            commands.append(Command(name, argument, line))
    if end == 0:
        return Parsed((), (), text)
    if len(commands) + len(errors) > MAX_COMMANDS:
        errors.append(f"more than {MAX_COMMANDS} command lines")
    rest = lines[end:]
    while rest and not rest[0].strip():
        rest.pop(0)
    return Parsed(tuple(commands), tuple(errors), "".join(rest))


# -- what is left ------------------------------------------------------------------------------

_SIGNATURE = re.compile(r"--\s*")
_ORIGINAL = re.compile(
    r"(?i)(-{3,}\s*(original message|ursprüngliche nachricht|message d'origine|forwarded "
    r"message|weitergeleitete nachricht)|_{10,}|begin forwarded message:).*")


def has_own_text(text: str) -> bool:
    """Whether `text` says anything besides quoted lines, their attribution line
    ("On Monday, Ana wrote:"), a quoted original below a separator, and a signature."""
    return bool(own_text(text))


def own_text(text: str) -> str:
    """What `text` says itself: its lines without quotes, their attribution line, a quoted
    original below a separator and a signature; blank lines trimmed at both ends."""
    kept: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if _SIGNATURE.fullmatch(line) or _ORIGINAL.fullmatch(line):
            break
        if line.startswith(">"):
            _drop_attribution(kept)
        else:
            kept.append(line)
    return "\n".join(kept).strip()


def _drop_attribution(kept: list[str]) -> None:
    """Before a quote: drop the paragraph that introduces it, if it ends with a colon."""
    while kept and not kept[-1]:
        kept.pop()
    if kept and kept[-1].endswith(":"):
        while kept and kept[-1]:
            kept.pop()


# -- what to do --------------------------------------------------------------------------------


def find_agent(name: str, agents: Sequence[Agent]) -> list[Agent]:
    """The agents `name` can mean: full name, address or its local part, else first name."""
    wanted = " ".join(name.split()).casefold().lstrip("@")
    exact = [a for a in agents if wanted in (" ".join(a.name.split()).casefold(),
                                             a.email.casefold(),
                                             a.email.rpartition("@")[0].casefold())]
    if exact:
        return exact
    return [a for a in agents if a.name.split() and a.name.split()[0].casefold() == wanted]


def plan(parsed: Parsed, *, agents: Sequence[Agent], priorities: Collection[str],
         in_thread: bool) -> Plan:
    """The actions of a valid command block, or every problem with it (then no action)."""
    errors = list(parsed.errors)
    actions: list[Action] = []
    names = [c.name for c in parsed.commands]
    states = [n for n in names if n in STATES]
    if len(states) > 1:
        errors.append("only one of #pending, #close and #reopen per message, got "
                      + ", ".join(f"#{n}" for n in states))
    for once in ("assign", "priority"):
        if names.count(once) > 1:
            errors.append(f"#{once} given {names.count(once)} times; give it once")
    allowed = {p.casefold() for p in priorities}
    for command in parsed.commands:
        if command.name in STATES:
            actions.append(SetState(STATES[command.name], command.name))
        elif command.name == "assign":
            found = find_agent(command.argument, agents)
            if len(found) == 1:
                actions.append(Assign(found[0]))
            elif not found:
                known = ", ".join(a.name for a in agents)
                errors.append(f"{_show(command.line)}: no agent is called that "
                              f"(the agents: {known})")
            else:
                both = " and ".join(a.name for a in found)
                errors.append(f"{_show(command.line)}: could be {both}; write the full name")
        elif command.name == "priority":
            if command.argument.casefold() in allowed:
                actions.append(SetPriority(command.argument.casefold()))
            else:
                errors.append(f"{_show(command.line)}: unknown priority (one of: "
                              f"{', '.join(sorted(allowed))})")
        else:
            actions.append(Note(command.argument))
    if parsed.commands and not in_thread:
        errors.append("this message is not part of a known thread, so its commands apply to "
                      "nothing: reply to the customer's message, or keep the [#REF] of the "
                      "thread in the subject")
    if errors:
        return Plan((), tuple(errors))
    return Plan(tuple(actions), ())
