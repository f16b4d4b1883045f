"""[templates] dir: the operator's template folder in the config, and check-config's render."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailbridge.cli import main
from mailbridge.config import Config, load_config
from mailbridge.config.languages import TEMPLATES
from mailbridge.daemon.checks import template_problems
from mailbridge.errors import ConfigError
from mailbridge.mail.render import ACK_HTML, ACK_TEXT, Renderer
from tests.configs import MAILBOX, MINIMAL
from tests.mail.test_render_languages import DUTCH_PHRASES

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def write_config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mailbridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(folder: Path, text: str) -> Config:
    return load_config(write_config(folder, text), environ={"STATE_DIRECTORY": str(folder)})


def problems_of(folder: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(folder, text)
    return caught.value.problems


def template(root: Path, name: str, text: str) -> Path:
    """`text` as the operator's template `name` (e.g. "en/ack.txt.j2") under `root`."""
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def dutch(root: Path) -> None:
    """A Dutch language folder: its acknowledgement text and its date words."""
    template(root, f"nl/{ACK_TEXT}", "Hallo {{ greeting_name }}, {{ due_words }}.\n")
    template(root, "nl/phrases.toml", DUTCH_PHRASES)


# -- the config key ------------------------------------------------------------------------------


def test_without_the_section_only_the_shipped_templates_are_used(tmp_path: Path) -> None:
    """[templates] is optional; without it there is no operator folder."""
    assert load(tmp_path, MINIMAL).templates.dir is None


def test_a_relative_dir_is_relative_to_the_config_files_folder(tmp_path: Path) -> None:
    """dir = "templates" names the folder beside the config file, wherever mailbridge runs."""
    (tmp_path / "etc" / "templates").mkdir(parents=True)
    config = load(tmp_path / "etc", MINIMAL + '[templates]\ndir = "templates"\n')
    assert config.templates.dir == tmp_path / "etc" / "templates"


def test_an_absolute_dir_is_kept(tmp_path: Path) -> None:
    """An absolute dir is used as written."""
    (tmp_path / "own").mkdir()
    config = load(tmp_path / "etc", MINIMAL + f'[templates]\ndir = "{tmp_path / "own"}"\n')
    assert config.templates.dir == tmp_path / "own"


@pytest.mark.parametrize(("setup", "value", "problem"), [
    (None, "missing", r"\[templates\] dir: no folder .*/missing; create it"),
    ("file", "file", r"\[templates\] dir: .*/file is a file; name the folder"),
    (None, "", r'\[templates\] dir: expected a folder, got ""'),
])
def test_a_dir_that_is_not_a_readable_folder_is_one_problem(
        tmp_path: Path, setup: str | None, value: str, problem: str) -> None:
    """A missing folder, a file or an empty name is reported as [templates] dir."""
    if setup == "file":
        (tmp_path / "file").write_text("not a folder")
    found = problems_of(tmp_path, MINIMAL + f'[templates]\ndir = "{value}"\n')
    assert len(found) == 1, found
    assert re.match(problem, found[0]), found[0]


def test_an_unknown_key_in_the_section_is_named(tmp_path: Path) -> None:
    """A typo in [templates] is refused with the allowed key."""
    [problem] = problems_of(tmp_path, MINIMAL + '[templates]\ndirectory = "x"\n')
    assert problem.startswith("[templates] directory: unknown key (allowed: dir)")


def test_a_language_folder_in_dir_is_a_language_config_accepts(tmp_path: Path) -> None:
    """A new folder in [templates] dir may be named by [support], [sla], policies and faq."""
    dutch(tmp_path / "templates")
    text = MINIMAL.replace('name = "Example Support"', 'name = "S"\nlanguage = "nl"') + '''
[templates]
dir = "templates"
[sla]
language = "nl-BE"
[[policies]]
name = "vip"
first_response = "1h"
language = "nl"
[[faq]]
title = "Wachtwoord"
url = "https://example.com/help/wachtwoord"
language = "nl"
[faq.match]
keywords = ["wachtwoord"]
'''
    config = load(tmp_path, text)
    assert config.support.language == "nl"
    assert config.sla.language == "nl"
    assert config.policies[0].language == "nl" and config.faq[0].language == "nl"
    assert "nl" in Renderer(config.templates.dir).languages


def test_a_language_neither_shipped_nor_in_dir_points_at_dir(tmp_path: Path) -> None:
    """The problem lists the operator's languages and says where a new one goes."""
    dutch(tmp_path / "templates")
    text = MINIMAL.replace('name = "Example Support"', 'name = "S"\nlanguage = "fr"')
    [problem] = problems_of(tmp_path, text + '[templates]\ndir = "templates"\n')
    assert problem == ('[support] language: no templates for language "fr" (shipped: "de", '
                       '"en"; in [templates] dir: "nl"); add a folder fr/ with its ack.txt.j2 '
                       "to the [templates] dir, or choose one of those")


def test_the_example_documents_the_section() -> None:
    """config.example.toml shows [templates] dir, commented out, with its default."""
    example = (Path(__file__).resolve().parents[1] / "config.example.toml").read_text()
    section = example.split("\n[templates]\n", 1)[1].split("\n\n", 1)[0]
    assert '# dir = "/etc/mailbridge/templates"' in section
    assert "Default: none" in section and "relative to this file" in section


# -- check-config --------------------------------------------------------------------------------


def checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """check-config on a minimal file whose [templates] dir is tmp_path/templates."""
    # A mail server that vouches for agents, or check-config warns about agent mail.
    path = write_config(tmp_path, MINIMAL + MAILBOX + '[templates]\ndir = "templates"\n'
                        '[rules]\ntrusted_authserv_id = "mx.example.com"\n'
                        f'[daemon]\nstate_dir = "{tmp_path}"\n')
    code = main(["check-config", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_syntax_error_is_named_with_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken tag in an operator's template: exit 78, one line naming the file and line."""
    broken = template(tmp_path / "templates", f"en/{ACK_HTML}",
                      "<p>Hello {{ greeting_name }}</p>\n<p>{% if %}</p>\n")
    code, out, err = checked(tmp_path, capsys)
    assert code == 78 and out == ""
    assert err.splitlines() == [
        f"{tmp_path / 'mailbridge.toml'}: 1 problem",
        f"  - [templates] dir: {broken}, line 2: Expected an expression, got 'end of "
        "statement block'",
    ]


def test_an_unknown_variable_is_named_with_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt variable fails the sample render: exit 78, naming the file and line."""
    misspelt = template(tmp_path / "templates", f"en/{ACK_TEXT}",
                        "Hello {{ greeting_name }},\n\n{{ agnet_name }} will answer.\n")
    code, _, err = checked(tmp_path, capsys)
    assert code == 78
    assert err.splitlines()[1:] == [
        f"  - [templates] dir: {misspelt}, line 3: UndefinedError: 'agnet_name' is undefined"]


def test_a_problem_in_the_shared_frame_names_the_frame_once(tmp_path: Path) -> None:
    """The operator's customer.html.j2, which the shipped ack and update extend, is named
    with its own line when it breaks: once, though both mails use it."""
    shipped = (TEMPLATES / "en" / "customer.html.j2").read_text(encoding="utf-8")
    assert shipped.count("{{ accent_color }}; padding-top") == 1
    frame = template(tmp_path / "templates", "en/customer.html.j2",
                     shipped.replace("{{ accent_color }}; padding-top",
                                     "{{ accent_colour }}; padding-top"))
    line = 1 + shipped.split("{{ accent_color }}; padding-top")[0].count("\n")
    found = template_problems(load(tmp_path, MINIMAL + '[templates]\ndir = "templates"\n'), NOW)
    assert found == [f"[templates] dir: {frame}, line {line}: UndefinedError: 'accent_colour' "
                     "is undefined"]
    frame.write_text("{% if logo_url %}\n", encoding="utf-8")
    found = template_problems(load(tmp_path, MINIMAL + '[templates]\ndir = "templates"\n'), NOW)
    assert len(found) == 1 and found[0].startswith(f"[templates] dir: {frame}, line 1: ")


def test_every_template_that_fails_to_render_is_one_line(tmp_path: Path) -> None:
    """Problems in several files, and in a part only sample values reach, are all listed."""
    root = tmp_path / "templates"
    faq = template(root, f"en/{ACK_TEXT}",
                   "{% for article in faq %}{{ article.titel }}\n{% endfor %}")
    nudge = template(root, "en/nudge.txt.j2", "{{ to_name.__class__.__mro__ }}\n")
    dutch(root)
    update = template(root, "nl/update.txt.j2", "Hallo\n{{ due_wrods }}\n")
    found = template_problems(load(tmp_path, MINIMAL + '[templates]\ndir = "templates"\n'), NOW)
    assert len(found) == 3, found
    assert found[0].startswith(f"[templates] dir: {faq}, line 1: UndefinedError: ")
    assert "'titel'" in found[0]
    assert found[1].startswith(f"[templates] dir: {nudge}, line 1: SecurityError: ")
    assert found[2] == (f"[templates] dir: {update}, line 2: UndefinedError: 'due_wrods' is "
                        "undefined")


def test_every_syntax_error_is_one_line(tmp_path: Path) -> None:
    """Syntax errors in several files are listed together, each with its file and line."""
    root = tmp_path / "templates"
    first = template(root, f"en/{ACK_TEXT}", "Hello\n{% for %}\n")
    second = template(root, "de/update.html.j2", "<p>\n\n{{ }}</p>\n")
    found = template_problems(load(tmp_path, MINIMAL + '[templates]\ndir = "templates"\n'), NOW)
    assert [problem.split(": ", 2)[1] for problem in found] == [
        f"{second}, line 3", f"{first}, line 2"]


def test_a_good_override_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A copied and edited shipped template, and a new language, pass check-config."""
    shipped = (TEMPLATES / "en" / ACK_TEXT).read_text(encoding="utf-8")
    template(tmp_path / "templates", f"en/{ACK_TEXT}", "Dear customer,\n" + shipped)
    dutch(tmp_path / "templates")
    code, out, err = checked(tmp_path, capsys)
    assert (code, err) == (0, "")
    assert out.endswith(", own templates)\n")


ACK_VALUES = (
    "greeting_name", "customer_name", "customer_address", "subject", "agent_name", "agent_email",
    "agent_title", "signature", "signature_lines", "photo_url", "support_name",
    "support_address", "thread_ref", "ref_tag", "due_words", "due_iso", "timezone",
    "reply_subject", "opening", "agent_starts", "faq", "language", "extra", "accent_color",
    "logo_url",
)
"""Every value an acknowledgement's templates are given."""


def test_the_sample_gives_every_value_of_a_real_acknowledgement(tmp_path: Path) -> None:
    """A template using every value of a real ack, each set in the sample, passes the check."""
    # An empty value fails the render too, so that each optional part of a template is tried.
    uses = "".join(f"{{{{ {name} }}}}{{% if not {name} %}}{{{{ empty_{name} }}}}{{% endif %}}\n"
                   for name in ACK_VALUES if name != "extra")  # the daemon sets no extra values
    template(tmp_path / "templates", f"en/{ACK_TEXT}", uses + "{{ extra }}\n")
    config = load(tmp_path, MINIMAL + '[templates]\ndir = "templates"\n')
    assert template_problems(config, NOW) == []


def test_run_refuses_to_start_with_a_broken_template(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`run` checks the operator's templates too, and exits 78 before serving."""
    broken = template(tmp_path / "templates", f"en/{ACK_TEXT}", "{% for %}\n")
    # A mail server that vouches for agents, or check-config warns about agent mail.
    path = write_config(tmp_path, MINIMAL + MAILBOX + '[templates]\ndir = "templates"\n'
                        '[rules]\ntrusted_authserv_id = "mx.example.com"\n'
                        f'[daemon]\nstate_dir = "{tmp_path}"\n')
    assert main(["run", "--config", str(path)]) == 78
    assert f"[templates] dir: {broken}, line 1: " in capsys.readouterr().err
