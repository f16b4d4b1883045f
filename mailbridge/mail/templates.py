"""Loading the jinja2 templates and date words of each language, and rendering them.

Public API: `environment(templates_dir, language, *, top_level)`, `load(env, name)`,
`render(template, values)` and `phrases(templates_dir, language)`; `PACKAGE_TEMPLATES`,
`PHRASES_FILE`. `mailbridge.mail.render` builds its `Renderer` on them.

For language L a template is looked up in the operator's L/, then (for the default language
only, `top_level`) at the top of the operator's folder, then in the packaged L/, then in the
packaged English folder. Operator folders run in jinja2's sandbox. Every failure is a
`TemplateError` naming the file and, where known, the line.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mailbridge.config.languages import DEFAULT_LANGUAGE, TEMPLATES
from mailbridge.core.eta import PHRASES, Phrases
from mailbridge.errors import TemplateError

PACKAGE_TEMPLATES = TEMPLATES
PHRASES_FILE = "phrases.toml"
"""A language folder's date words, for a language without built-in phrases."""


def environment(templates_dir: Path | None, language: str, *,
                 top_level: bool) -> jinja2.Environment:
    """The templates of one language: the operator's, then the packaged ones."""
    packaged = [PACKAGE_TEMPLATES / language]
    if language != DEFAULT_LANGUAGE:
        packaged.append(PACKAGE_TEMPLATES / DEFAULT_LANGUAGE)
    # Loaded once: a change to the files takes effect on a reload (SIGHUP), which builds new
    # environments, not by a stat of each frame a template extends at every mail rendered.
    if templates_dir is None:
        return jinja2.Environment(
            loader=jinja2.FileSystemLoader(packaged),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(["html", "html.j2"]),
            keep_trailing_newline=True,
            auto_reload=False,
        )
    own = [templates_dir / language, *([templates_dir] if top_level else [])]
    return ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader([*own, *packaged]),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        keep_trailing_newline=True,
        auto_reload=False,
    )


def phrases(templates_dir: Path | None, language: str) -> Phrases:
    """How `language` writes dates: its folder's phrases.toml, else the built-in phrases."""
    folders = [templates_dir / language] if templates_dir is not None else []
    for file in (folder / PHRASES_FILE for folder in [*folders, PACKAGE_TEMPLATES / language]):
        if file.is_file():
            return _read_phrases(file)
    found = PHRASES.get(language.split("-", maxsplit=1)[0])
    if found is None:
        raise TemplateError(f"language {language}: no {PHRASES_FILE} in its template folder, "
                            "and no built-in phrases; copy one from another language and "
                            "translate it")
    return found


def _read_phrases(file: Path) -> Phrases:
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
        data["weekdays"] = tuple(data.get("weekdays", ()))
        data["months"] = tuple(data.get("months", ()))
        phrases = Phrases(**data)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, TypeError,
            ValueError) as exc:
        raise TemplateError(f"{file}: {exc}") from exc
    for name in ("today", "tomorrow", "date", "due", "at", "closed", "city_zone"):
        if not isinstance(getattr(phrases, name), str):
            raise TemplateError(f"{file}: {name} must be a string")
    return phrases


def load(env: jinja2.Environment, name: str) -> jinja2.Template:
    try:
        return env.get_template(name)
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or exc.name or name
        raise TemplateError(f"{where}, line {exc.lineno}: {exc.message}") from exc
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template {name} not found") from exc
    except (jinja2.TemplateError, OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"template {name} cannot be loaded: {exc}") from exc


def render(template: jinja2.Template, values: dict[str, Any]) -> str:
    """`template` filled with `values`; a TemplateError names the file and line that failed,
    which may be a template it extends or includes (the customer.html.j2 frame)."""
    try:
        return template.render(values)
    except jinja2.TemplateSyntaxError as exc:  # in a template loaded while rendering
        where = exc.filename or exc.name or template.name
        raise TemplateError(f"{where}, line {exc.lineno}: {exc.message}") from exc
    except Exception as exc:  # an operator's template can fail in any way
        file, line = _template_line(exc, template)
        where = f"{file}, line {line}" if line else template.name
        raise TemplateError(f"{where}: {type(exc).__name__}: {exc}") from exc


def _template_line(exc: BaseException, template: jinja2.Template) -> tuple[str, int | None]:
    """The template file and line being rendered when `exc` was raised: the innermost frame
    of a template's code (jinja2 rewrites frames to the template's own file and line)."""
    file, line, trace = template.filename or template.name or "", None, exc.__traceback__
    while trace is not None:
        code_file = trace.tb_frame.f_code.co_filename
        if code_file == template.filename or code_file.endswith(".j2"):
            file, line = code_file, trace.tb_lineno
        trace = trace.tb_next
    return file, line
