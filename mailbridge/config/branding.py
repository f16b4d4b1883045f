"""How the desk's mail looks: [support] accent_color and the pictures sent inside our mail.

This module owns the keys that brand customer mail without editing a template: [support]
accent_color (a CSS hex colour) and logo_file, and [[agents]] photo_file. A picture file is
read once, while the configuration loads (and so again on every reload), never per mail: it
must be a JPEG or a PNG (judged by its content, not its name) of at most `MAX_IMAGE_BYTES`.

Public API: `HexColor` (the field type of a colour), `DEFAULT_ACCENT`, `MAX_IMAGE_BYTES`,
`InlineImage` (the field type of a picture read here), `prepare_images(data, base, problems)`
(the loader's step that turns each picture's file name into a `mailbridge.core.model.Image`)
and `read_image(file) -> Image` (ValueError says why a file is unusable).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, PlainSerializer, PlainValidator

from mailbridge.config.problems import show
from mailbridge.config.secrets import os_reason, resolve
from mailbridge.core.model import Image

DEFAULT_ACCENT = "#1a73e8"
MAX_IMAGE_BYTES = 200 * 1024
"""A picture in every mail: kept small, as a mail client downloads it with the mail."""

_HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))


def _hex_color(value: str) -> str:
    if not _HEX_COLOR.fullmatch(value):
        raise ValueError(f'expected a CSS hex colour like "{DEFAULT_ACCENT}" or "#333", '
                         f"got {show(value)}")
    return value.lower()


HexColor = Annotated[str, AfterValidator(_hex_color)]


def _loaded(value: object) -> Image:
    if isinstance(value, Image):
        return value
    # `prepare_images` turns every file name into an Image or lists a problem and drops it.
    raise ValueError(f"expected a file name, got {show(value)}")


InlineImage = Annotated[
    Image,
    PlainValidator(_loaded),
    PlainSerializer(lambda image: image.filename, return_type=str, when_used="json"),
]
"""A picture the loader read (`prepare_images`); shown as its file name."""


def read_image(file: Path) -> Image:
    """The JPEG or PNG in `file`; ValueError says why it cannot be one."""
    try:
        with file.open("rb") as stream:
            data = stream.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {file}: {os_reason(exc)}") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"{file} is larger than {MAX_IMAGE_BYTES // 1024} KiB; every mail "
                         "carries it, so scale it down (a 128x128 picture is plenty)")
    content_type = next((kind for magic, kind in _SIGNATURES if data.startswith(magic)), None)
    if content_type is None:
        what = "empty" if not data else "neither a JPEG nor a PNG"
        raise ValueError(f"{file} is {what}; save the picture as JPEG or PNG")
    return Image(data=data, content_type=content_type, filename=file.name)


def prepare_images(data: dict[str, Any], base: Path, problems: list[str]) -> None:
    """Read [support] logo_file and each [[agents]] photo_file (relative to `base`, the
    configuration's folder) into `Image`s; list each unusable one as a problem."""
    support = data.get("support")
    if isinstance(support, dict):
        data["support"] = support = dict(support)
        _prepare(support, "logo_file", "[support] logo_file", base, problems)
    agents = data.get("agents")
    if isinstance(agents, list):
        data["agents"] = agents = [dict(a) if isinstance(a, dict) else a for a in agents]
        for number, agent in enumerate(agents, start=1):
            if isinstance(agent, dict):
                label = f"[[agents]] #{number} photo_file"
                _prepare(agent, "photo_file", label, base, problems)
                if "photo_file" in agent and "photo_url" in agent:
                    problems.append(f"[[agents]] #{number} photo_file, photo_url: set one of "
                                    "them, not both (photo_file travels with the mail; "
                                    "photo_url is fetched from the web when the mail is read)")


def _prepare(table: dict[str, Any], key: str, label: str, base: Path,
             problems: list[str]) -> None:
    value = table.get(key)
    if value is None:
        return
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{label}: expected the file name of a JPEG or PNG picture, "
                        f"got {show(value)}")
    else:
        try:
            table[key] = read_image(resolve(value, base))
            return
        except ValueError as exc:
            problems.append(f"{label}: {exc}")
    del table[key]  # listed above; pydantic must not list it again
