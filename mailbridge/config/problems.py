"""Configuration problems in the operator's words: `[section] key: what to change`.

This module owns the sentences `load_config` reports for pydantic's validation errors and for
unknown keys. It knows the file's layout only through the `sections` it is given (section name
to its pydantic model, in the order of config.example.toml), so it imports nothing from
`mailbridge.config` and nothing from pydantic at run time. Public API:

- `describe(error, sections)`: one pydantic error as `[section] key: reason`.
- `unknown(loc, value, sections)`: an unknown key or section, with the allowed ones.
- `rank(problem, sections)`: a sort key, the order of the sections in config.example.toml.
- `file_keys(model)`: the keys a section takes in the file. A model whose field gathers
  several keys of the file (as [relay]'s `upstream` gathers upstream_host, upstream_port, ...)
  says so in `FILE_KEYS` (file key -> (field, field of the gathered table)); problems then
  name the key the operator wrote.
- `show(value)`: a value as TOML writes it, shortened; every problem that shows a value uses it.
- `AGENTS_NEEDED`: the problem when [[agents]] is missing or empty.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from datetime import date, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic_core import ErrorDetails

AGENTS_NEEDED = 'at least one agent is needed, e.g. [[agents]] name = "Dana Whitfield" ' + (
    'email = "dana@example.com"'
)
_MISSING_EXAMPLES = {
    ("support",): '[support] with address = "support@example.com" and name = "Example Support"',
    ("support", "address"): 'address = "support@example.com"',
    ("support", "name"): 'name = "Example Support"',
    ("imap", "host"): 'host = "mail.example.com"',
    ("imap", "username"): 'username = "support@example.com"',
    ("smtp", "host"): 'host = "mail.example.com"',
    ("agents", "name"): 'name = "Dana Whitfield"',
    ("agents", "email"): 'email = "dana@example.com"',
}
_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "bool_type": "true or false", "bool_parsing": "true or false", "string_type": "a string",
    "path_type": "a file path (a string)", "tuple_type": "an array", "model_type": "a table",
    "dict_type": "a table", "float_type": "a number",
}


def describe(error: ErrorDetails, sections: Mapping[str, type[BaseModel]]) -> str:
    """One pydantic error as `[section] key: reason`, showing the bad value (never a secret)."""
    loc, kind, value = _file_loc(error["loc"], sections), error["type"], error["input"]
    keys = tuple(part for part in loc if isinstance(part, str))
    if kind == "extra_forbidden":
        return unknown(loc, value, sections)
    if loc == ("agents",) and kind in ("missing", "too_short"):
        return f"[[agents]]: {AGENTS_NEEDED}"
    if loc == ("agents",) and str(error.get("ctx", {}).get("error")).startswith("#"):
        return f"[[agents]] {error['ctx']['error']}"  # one agent's problem, found among them all
    if loc == ("agents",) and kind == "tuple_type":
        return "[[agents]]: expected [[agents]] blocks (an array of tables), not [agents]"
    if kind == "missing":
        example = _MISSING_EXAMPLES.get(keys)
        what = "missing section" if len(loc) == 1 else "missing"
        return f"{_where(loc)}: {what}" + (f"; add {example}" if example else "")
    return f"{_where(loc)}: {_reason(error, value, keys)}"


def _reason(error: ErrorDetails, value: Any, keys: tuple[str, ...]) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    shown = "a value not shown" if "password" in keys else show(value)
    if kind == "value_error":
        return str(ctx["error"])
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {shown}"
    if kind == "literal_error":
        return f"expected one of {str(ctx['expected']).replace(chr(39), chr(34))}, got {shown}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {shown}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}, got {shown}"
    message = error["msg"]
    return f"{message[:1].lower()}{message[1:]}, got {shown}"


def _file_loc(
    loc: tuple[int | str, ...], sections: Mapping[str, type[BaseModel]]
) -> tuple[int | str, ...]:
    """`loc` as the file writes it: ("relay", "upstream", "port") is [relay] upstream_port."""
    model = sections.get(str(loc[0])) if loc else None
    for key, path in getattr(model, "FILE_KEYS", {}).items():
        if loc[1:3] == path:
            return (loc[0], key, *loc[3:])
    return loc


def file_keys(model: type[BaseModel]) -> list[str]:
    """The keys of `model`'s table in the file, in order: a field that gathers keys of the
    file (`FILE_KEYS`) stands for those keys."""
    gathered: Mapping[str, tuple[str, str]] = getattr(model, "FILE_KEYS", {})
    keys: list[str] = []
    for name in model.model_fields:
        keys += [key for key, (field, _) in gathered.items() if field == name] or [name]
    return keys


def _where(loc: tuple[int | str, ...]) -> str:
    head = f"[[{loc[0]}]]" if loc[0] == "agents" else f"[{loc[0]}]"
    rest = [f"#{part + 1}" if isinstance(part, int) else part for part in loc[1:]]
    return " ".join([head, *rest])


def unknown(
    loc: tuple[int | str, ...], value: object, sections: Mapping[str, type[BaseModel]]
) -> str:
    """An unknown key or section; its value is never shown (it may be a mistyped password)."""
    key = str(loc[-1])
    if len(loc) == 1:
        names = [f"[[{name}]]" if name == "agents" else f"[{name}]" for name in sections]
        if isinstance(value, dict):
            hint = _did_you_mean(f"[{key}]", names)
            return f"[{key}]: unknown section (allowed: {', '.join(names)}){hint}"
        homes = [f"[{name}]" for name, model in sections.items() if key in file_keys(model)]
        where = f"under {' or '.join(homes)}" if homes else "under a [section] header"
        return f"{key}: unknown top-level key; keys go {where} (sections: {', '.join(names)})"
    allowed = file_keys(sections[str(loc[0])])
    if "password" in allowed:
        allowed.insert(allowed.index("password") + 1, "password_file")
    hint = _did_you_mean(key, allowed)
    return f"{_where(loc)}: unknown key (allowed: {', '.join(allowed)}){hint}"


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.7)
    return f'; did you mean "{close[0]}"?' if close else ""


def rank(problem: str, sections: Mapping[str, type[BaseModel]]) -> int:
    """Sort problems in the order of the sections in config.example.toml."""
    match = re.match(r"\[\[?(\w+)", problem)
    names = list(sections)
    return names.index(match[1]) + 1 if match and match[1] in names else 0


def show(value: object) -> str:
    """A value as it would be written in TOML, shortened: "abc", 42, true, a table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 80 else f'{text[:76]}…"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Path):
        return json.dumps(str(value))
    return "a table" if isinstance(value, dict) else "an array" if isinstance(value, list) else "?"
