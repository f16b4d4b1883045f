"""Mail commands: the parser, what is left of a reply, and the plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbridge.core import commands, sla
from mailbridge.core.commands import Assign, Note, SetPriority, SetState, has_own_text, parse, plan
from mailbridge.core.model import Agent

DANA = Agent("Dana Whitfield", "dana@example.com")
SAM = Agent("Sam Okafor", "sam@example.com")
SAMIRA = Agent("Samira Haddad", "samira@example.com")
AGENTS = (DANA, SAM, SAMIRA)
PRIORITIES = ("low", "normal", "high", "urgent")


def planned(text: str, *, in_thread: bool = True) -> commands.Plan:
    return plan(parse(text), agents=AGENTS, priorities=PRIORITIES, in_thread=in_thread)


def test_commands_at_the_top_are_parsed_and_removed() -> None:
    """Command lines at the top are read, in order, and the rest starts at the text."""
    parsed = parse("\n#pending\n#note  asked for   the invoice\n\nHello Ana,\n#close\n")
    assert [(c.name, c.argument) for c in parsed.commands] == [
        ("pending", ""), ("note", "asked for the invoice")]
    assert parsed.errors == ()
    assert parsed.rest == "Hello Ana,\n#close\n", "only the top block counts"


def test_text_without_commands_is_unchanged() -> None:
    """A reply that does not start with a command has none, and its text is kept as is."""
    text = "Hello Ana,\n#pending is not a command here\n"
    parsed = parse(text)
    assert not parsed.found and parsed.rest == text


@pytest.mark.parametrize("line", ["#1 the first thing", "# Heading", "#", "#42"])
def test_hash_lines_that_are_not_commands_are_text(line: str) -> None:
    """A hash followed by a digit, a space or nothing is text, not a command."""
    parsed = parse(f"{line}\nmore text\n")
    assert not parsed.found


def test_commands_are_case_insensitive() -> None:
    """Phones capitalise the first word: #Pending is #pending."""
    assert [c.name for c in parse("#Pending\n#CLOSE\n").commands] == ["pending", "close"]


@pytest.mark.parametrize(("text", "problem"), [
    ("#snooze 2d\nHi", "#snooze 2d: unknown command"),
    ("#close now\nHi", "#close takes nothing after it"),
    ("#assign\nHi", "#assign needs a name"),
    ("#priority\nHi", "#priority needs a priority"),
    ("#priority very high\nHi", "#priority takes one word"),
    ("#note\nHi", "#note needs a text"),
    ("#pending.\nHi", "not a command; write each command alone"),
])
def test_malformed_commands_are_problems(text: str, problem: str) -> None:
    """Unknown commands and wrong arguments are reported, and the line is still removed."""
    parsed = parse(text)
    assert len(parsed.errors) == 1 and problem in parsed.errors[0], parsed.errors
    assert parsed.rest == "Hi"
    assert planned(text).actions == ()


def test_plan_turns_commands_into_actions() -> None:
    """Each valid command becomes its action; #assign finds the agent by name."""
    result = planned("#assign sam okafor\n#priority HIGH\n#close\n#note done\n")
    assert result.errors == ()
    assert result.actions == (Assign(SAM), SetPriority("high"), SetState(sla.RESOLVED, "close"),
                              Note("done"))


@pytest.mark.parametrize(("name", "agent"), [
    ("Dana Whitfield", DANA), ("dana", DANA), ("DANA@example.com", DANA), ("sam", SAM),
    ("@samira", SAMIRA), ("Samira", SAMIRA)])
def test_assign_by_name_address_or_first_name(name: str, agent: Agent) -> None:
    """#assign takes a full name, an address, its local part or an unambiguous first name."""
    assert planned(f"#assign {name}\n").actions == (Assign(agent),)


def test_assign_to_nobody_or_to_two_agents_is_a_problem() -> None:
    """An unknown name or an ambiguous one is reported, naming the agents."""
    twins = (Agent("Alex Berg", "alex.b@example.com"), Agent("Alex Chan", "alex.c@example.com"))
    ambiguous = plan(parse("#assign alex\n"), agents=twins, priorities=PRIORITIES,
                     in_thread=True)
    assert "could be Alex Berg and Alex Chan" in ambiguous.errors[0]
    unknown = planned("#assign zoe\n")
    assert "no agent is called that" in unknown.errors[0] and "Dana Whitfield" in unknown.errors[0]


def test_nothing_is_applied_when_one_command_is_wrong() -> None:
    """One bad command cancels the whole block."""
    result = planned("#pending\n#priority sky-high\n")
    assert result.actions == () and "unknown priority" in result.errors[0]


def test_conflicting_state_commands_are_a_problem() -> None:
    """#pending and #close together contradict each other."""
    assert "only one of #pending, #close and #reopen" in planned("#pending\n#close\n").errors[0]


def test_commands_outside_a_thread_are_a_problem() -> None:
    """A command needs a thread to apply to."""
    assert "not part of a known thread" in planned("#close\n", in_thread=False).errors[0]


@pytest.mark.parametrize(("text", "own"), [
    ("", False),
    ("\n\n", False),
    ("Hello Ana,\nwhich invoice?\n", True),
    ("On Monday, Ana Souza <ana@example.org> wrote:\n> Charged twice\n", False),
    ("On Mon, 3 Jun 2024 at 10:00, Ana Souza\n<ana@example.org> wrote:\n\n> Charged twice\n",
     False),
    ("-- \nDana Whitfield\nExample Support\n", False),
    ("-----Original Message-----\nFrom: Ana\nSent: Monday\n\nCharged twice\n", False),
    ("________________________________\nFrom: Ana\n", False),
    ("Thanks!\n\nOn Monday, Ana wrote:\n> Charged twice\n", True),
    ("> Charged twice\n\nDone, refunded.\n", True),
    ("See below:\n> quoted\n", False),
])
def test_own_text_ignores_quotes_attribution_and_signature(text: str, own: bool) -> None:
    """What a client adds by itself (quote, attribution, signature) is not the agent's text."""
    assert has_own_text(text) is own


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_parse_never_fails_and_rest_is_a_suffix(text: str) -> None:
    """Any text parses; what is left is the text's tail, or all of it."""
    parsed = parse(text)
    assert text.endswith(parsed.rest)
    if not parsed.found:
        assert parsed.rest == text


T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _targets() -> sla.Targets:
    return sla.Targets(first_response=timedelta(hours=4), add=lambda t, d: t + d,
                       measure=lambda a, b: b - a, is_open=lambda t: True,
                       next_open=lambda t: t, next_response=timedelta(hours=8))


def test_pending_stops_the_clock_without_a_response() -> None:
    """#pending: awaiting the customer, nothing due, no first response recorded."""
    targets = _targets()
    clock = sla.pending(sla.start(T0, targets), T0 + timedelta(hours=1), targets)
    assert clock.state == sla.AWAITING_CUSTOMER and clock.first_response_at is None
    assert sla.next_due(clock, targets, T0) == T0 + timedelta(hours=1) + \
        targets.resolve_after_quiet


def test_close_and_reopen() -> None:
    """#close resolves (nothing due); #reopen awaits an agent again from that moment."""
    targets = _targets()
    started = sla.agent_reply(sla.start(T0, targets), T0 + timedelta(hours=1), targets)[0]
    closed = sla.close(started, T0 + timedelta(hours=2), targets)
    assert closed.state == sla.RESOLVED and sla.next_due(closed, targets, T0) is None
    reopened = sla.reopen(closed, T0 + timedelta(hours=3), targets)
    assert reopened.state == sla.AWAITING_AGENT
    assert reopened.response_due == ("next_response", T0 + timedelta(hours=11))
