"""The languages we write to customers in: one template folder each.

Public API:

- `TEMPLATES`: the shipped template folder: `templates/` at the top of the source tree,
  installed inside the wheel as `mailbridge/templates`.
- `DEFAULT_LANGUAGE`: "en", the language of the packaged templates at the top of an
  operator's folder and of every template a language folder leaves out.
- `template_languages(folder)`: the language folders (those holding an ack.txt.j2) in it.
- `shipped_languages()`: the packaged ones ("de", "en").

Adding a language is adding one folder, `<tag>/`, to the operator's `[templates] dir` (or,
to ship it, to `templates/`), with at least its ack.txt.j2 (any template it leaves out comes
from English) and, unless `mailbridge.core.eta` has built-in phrases for it, a phrases.toml
with its date words.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path


def _shipped_folder() -> Path:
    """The wheel puts templates/ inside the package; a source checkout has it at the top."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "templates"
    return installed if installed.is_dir() else package.parent / "templates"


TEMPLATES = _shipped_folder()
DEFAULT_LANGUAGE = "en"
MARKER = "ack.txt.j2"
"""A folder is a language folder when it holds this template."""


def template_languages(folder: Path) -> tuple[str, ...]:
    """The language folders in `folder`, sorted; () when it does not exist."""
    if not folder.is_dir():
        return ()
    return tuple(sorted(child.name.lower() for child in folder.iterdir()
                        if child.is_dir() and (child / MARKER).is_file()))


@cache
def shipped_languages() -> tuple[str, ...]:
    """The languages of the packaged templates."""
    return template_languages(TEMPLATES)
