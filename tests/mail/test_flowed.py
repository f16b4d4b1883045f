"""Plain text as format=flowed: wrapped at 72 columns, quotes and URLs whole, read back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailbridge.mail.flowed import WIDTH, flowed, unflowed


def columns(text: str) -> int:
    return sum(2 if "\u3000" <= char <= "\u9fff" else 1 for char in text)


URL = "https://help.example.com/articles/2291-refunds-and-double-charges?utm_source=mail&x=1"
LONG = ("Thank you for your message “Invoice 2291 charged twice and the second charge is still "
        "pending”. It has reached us, and Dana Whitfield will answer you personally today by "
        "13:00 (Berlin time).")


def test_a_long_line_wraps_with_soft_breaks_and_reads_back_whole() -> None:
    """Each wrapped line ends in a space (soft), fits in 72 columns; a reader joins them."""
    lines = flowed(LONG).splitlines()
    assert len(lines) == 3
    assert all(line.endswith(" ") for line in lines[:-1]) and not lines[-1].endswith(" ")
    assert all(len(line) <= WIDTH for line in lines)
    assert unflowed(flowed(LONG)) == LONG + "\n"


def test_short_lines_and_paragraphs_keep_their_hard_breaks() -> None:
    text = "Hello Ana,\n\nKind regards,\nDana Whitfield\nExample Support\n"
    assert flowed(text) == text
    assert unflowed(flowed(text)) == text


def test_trailing_spaces_of_a_line_do_not_make_it_soft() -> None:
    """A template line that ends in spaces stays a hard break."""
    assert flowed("Kind regards,   \nDana\n") == "Kind regards,\nDana\n"


def test_a_url_is_never_broken() -> None:
    """A URL longer than the width gets a line of its own, whole."""
    text = f"Read more at {URL} while you wait for us."
    lines = flowed(text).splitlines()
    assert URL + " " in lines
    assert unflowed(flowed(text)) == text + "\n"


def test_quotes_are_never_wrapped_or_stuffed() -> None:
    """A quoted line, however long, stays one hard line that starts with ">"."""
    quote = "> " + LONG
    assert flowed(f"The customer wrote:\n\n{quote}\n>> older\n") == (
        f"The customer wrote:\n\n{quote}\n>> older\n")


def test_lines_that_would_be_misread_are_space_stuffed() -> None:
    """A leading space, "From " and a wrapped-on ">" get one space before them."""
    assert flowed("  https://example.com/help\nFrom here on\n") == (
        "   https://example.com/help\n From here on\n")
    text = "x" * 60 + " " + ">" * 20
    assert flowed(text).splitlines()[1] == " " + ">" * 20
    assert unflowed(flowed(text)) == text + "\n"


def test_the_signature_separator_keeps_its_space() -> None:
    assert flowed("Bye\n-- \nExample Support\n") == "Bye\n-- \nExample Support\n"


def test_wide_characters_count_two_columns() -> None:
    """Japanese text breaks at its spaces before 72 columns, not 72 characters."""
    text = " ".join(["山田太郎様"] * 20)
    lines = flowed(text).splitlines()
    assert all(columns(line) <= WIDTH for line in lines) and len(lines) > 1
    assert unflowed(flowed(text)) == text + "\n"


@given(st.lists(st.text(alphabet=st.sampled_from("ab >Fromé山\t-"), max_size=200), max_size=6))
def test_any_text_reads_back_as_written(paragraphs: list[str]) -> None:
    """Whatever the lines, a flowed reader gets them back (trailing spaces aside), and a
    line is longer than the width only when a single word is."""
    source = [p.rstrip(" ") for p in paragraphs if not p.startswith(">")]
    text = "\n".join(source)
    out = flowed(text)
    assert unflowed(out).rstrip("\n") == text.rstrip("\n")
    for line in out.splitlines():
        if columns(line) > WIDTH:  # only when its first word alone is too long
            assert columns(line.lstrip(" ").split(" ")[0]) >= WIDTH - 2, line
