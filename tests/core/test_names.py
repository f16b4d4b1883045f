"""The name a customer is greeted by, over the display names real mail carries."""

from __future__ import annotations

import pytest

from mailbridge.core.names import greeting_name

SHAPES = [
    # Directory order, turned round.
    ("Kumar, Rajesh", "Rajesh Kumar"),
    ("Weiß, Jürgen", "Jürgen Weiß"),
    ("Müller-Lüdenscheidt, Hans-Peter", "Hans-Peter Müller-Lüdenscheidt"),
    ("O'Brien, Seán", "Seán O'Brien"),
    ("O’Brien, Seán", "Seán O’Brien"),
    ("van der Berg, Anna", "Anna van der Berg"),
    ("Smith,John", "John Smith"),
    ("  Kumar ,   Rajesh  ", "Rajesh Kumar"),
    ("KUMAR, RAJESH", "RAJESH KUMAR"),
    ("Souza, Ana Beatriz", "Ana Beatriz Souza"),
    ("Weiss, Jürgen", "Jürgen Weiss"),
    ("Dvořák, Antonín", "Antonín Dvořák"),
    # Titles, annotations, suffixes and quotes: as written.
    ("Dr. Jürgen Weiß", "Dr. Jürgen Weiß"),
    ("Weiß, Dr. Jürgen", "Weiß, Dr. Jürgen"),
    ("Smith, John (IT)", "Smith, John (IT)"),
    ("Doe, John, Jr.", "Doe, John, Jr."),
    ("Doe, John, Jr", "Doe, John, Jr"),
    ("'Kumar, Rajesh'", "'Kumar, Rajesh'"),
    ('"Kumar, Rajesh"', '"Kumar, Rajesh"'),
    ('Robert "Bob" Smith', 'Robert "Bob" Smith'),
    ("Kumar, Rajesh [Contractor]", "Kumar, Rajesh [Contractor]"),
    ("Kumar, Rajesh 2", "Kumar, Rajesh 2"),
    ("Kumar, R.", "Kumar, R."),
    ("Billing, Accounts / EMEA", "Billing, Accounts / EMEA"),
    ("Thanks, and please call me back tomorrow morning", "Thanks, and please call me back "
     "tomorrow morning"),
    (", Rajesh", ", Rajesh"),
    ("Kumar,", "Kumar,"),
    # Not a person's "Last, First": a team, a company, a suffix or title without its dot.
    ("Support, Team", "Support, Team"),
    ("Billing, Accounts", "Billing, Accounts"),
    ("Acme, Inc", "Acme, Inc"),
    ("Müller, GmbH", "Müller, GmbH"),
    ("Doe, Jr", "Doe, Jr"),
    ("Weiß, Dr Jürgen", "Weiß, Dr Jürgen"),
    ("Weiß, Prof Dr Jürgen", "Weiß, Prof Dr Jürgen"),
    # No comma: as written, white space tidied.
    ("John Doe", "John Doe"),
    ("Ana  Souza", "Ana Souza"),
    ("Cher", "Cher"),
    # Other scripts: left alone, comma or not.
    ("山田 太郎", "山田 太郎"),
    ("山田, 太郎", "山田, 太郎"),
    ("Иванов, Иван", "Иванов, Иван"),
    ("Παπαδόπουλος, Γιώργος", "Παπαδόπουλος, Γιώργος"),
    ("Kumar, राजेश", "Kumar, राजेश"),
    # No name to greet by.
    ("jdoe@example.com", ""),
    ("John Doe <jdoe@example.com>", ""),
    ("", ""),
    ("   ", ""),
]


@pytest.mark.parametrize(("display", "spoken"), SHAPES)
def test_a_display_name_is_greeted_as_people_say_it(display: str, spoken: str) -> None:
    """Only a plain Latin "Last, First" is turned round; every other name is as written."""
    assert greeting_name(display, "rajesh.kumar@example.com") == spoken


def test_a_name_that_is_the_address_again_is_no_name() -> None:
    """A display name equal to the address (some clients copy it) is not a name."""
    assert greeting_name("JDOE", "jdoe") == ""


def test_decomposed_accents_are_composed_and_still_turned_round() -> None:
    """"Sea\u0301n" (e and a combining acute) counts as a letter and comes out composed."""
    assert greeting_name("O'Brien, Sea\u0301n") == "Se\u00e1n O'Brien"
