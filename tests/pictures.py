"""PNG pictures for tests, written and read with the standard library alone (zlib).

`png(width, height, rgb)`: a picture of one colour (an agent's photo, a logo) whose pixels a
screenshot can be searched for. `read_png(data) -> Picture`: the pixels of an 8-bit, not
interlaced PNG, which is what Chromium's screenshots are (RFC 2083: chunks, zlib, the five
row filters). `chromium_screenshot(html, folder, ...)`: a page as headless Chromium draws it.
"""

from __future__ import annotations

import functools
import os
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM_HINT = ("run the project's test command, `./scripts/test`, which installs Debian's "
                 "chromium; or apt-get install chromium")


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A `width` x `height` PNG of the one colour `rgb`."""
    row = b"\x00" + bytes(rgb) * width  # filter type 0 (None) before each row
    return (_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(row * height)) + _chunk(b"IEND", b""))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


@dataclass(frozen=True)
class Picture:
    width: int
    height: int
    pixels: list[tuple[int, int, int]]
    """Row by row, as RGB (alpha dropped)."""

    def colours(self) -> Counter[tuple[int, int, int]]:
        return Counter(self.pixels)

    def count(self, rgb: tuple[int, int, int], *, tolerance: int = 8) -> int:
        """How many pixels are `rgb`, give or take `tolerance` on each channel."""
        return sum(n for colour, n in self.colours().items()
                   if all(abs(a - b) <= tolerance for a, b in zip(colour, rgb, strict=True)))

    def at(self, x: int, y: int) -> tuple[int, int, int]:
        return self.pixels[y * self.width + x]


def read_png(data: bytes) -> Picture:
    """The pixels of an 8-bit RGB or RGBA PNG that is not interlaced."""
    assert data.startswith(_SIGNATURE), "not a PNG"
    offset, idat, header = len(_SIGNATURE), b"", b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind, body = data[offset + 4:offset + 8], data[offset + 8:offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    channels = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * channels
    previous, pixels = bytearray(stride), []
    for y in range(height):
        start = y * (stride + 1)
        row = _unfilter(raw[start], bytearray(raw[start + 1:start + 1 + stride]), previous,
                        channels)
        pixels += [tuple(row[x:x + 3]) for x in range(0, stride, channels)]
        previous = row
    return Picture(width, height, pixels)  # type: ignore[arg-type]


def _unfilter(kind: int, row: bytearray, up: bytearray, bpp: int) -> bytearray:
    for i in range(len(row)):
        left = row[i - bpp] if i >= bpp else 0
        upper_left = up[i - bpp] if i >= bpp else 0
        if kind == 1:
            row[i] = (row[i] + left) & 0xFF
        elif kind == 2:
            row[i] = (row[i] + up[i]) & 0xFF
        elif kind == 3:
            row[i] = (row[i] + (left + up[i]) // 2) & 0xFF
        elif kind == 4:
            row[i] = (row[i] + _paeth(left, up[i], upper_left)) & 0xFF
    return row


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def chromium() -> str:
    """The Chromium binary; a test that needs it fails (not skips) without it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(f"chromium is missing: {CHROMIUM_HINT}", pytrace=False)
    return found


@functools.cache
def _own_network() -> bool:
    """Whether this process may start a program in a network namespace of its own (root,
    and a kernel and container that allow it)."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=20,
                           check=False)
    return probe.returncode == 0


def chromium_screenshot(page: Path, folder: Path, *, width: int = 720, height: int = 900,
                        dark: bool = False, images: bool = True) -> Picture:
    """`page` (a local HTML file) as headless Chromium draws it, saved in `folder`.

    Chromium runs in a network namespace of its own where it can (root, `unshare -n`), so it
    reaches nothing but the files, and with its background services off either way."""
    shot = folder / f"{page.stem}{'-dark' if dark else ''}{'' if images else '-noimages'}.png"
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--no-first-run", "--disable-background-networking", "--disable-sync",
               "--disable-component-update", "--disable-default-apps", "--mute-audio",
               f"--user-data-dir={folder / 'chromium-profile'}",
               f"--window-size={width},{height}", f"--screenshot={shot}"]
    if dark:
        command.append("--force-dark-mode")  # prefers-color-scheme: dark
    if not images:
        command.append("--blink-settings=imagesEnabled=false")
    if _own_network():
        command = ["unshare", "-n", *command]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder)}
    done = subprocess.run([*command, page.as_uri()], capture_output=True, timeout=120,
                          env=env, check=False)
    assert shot.is_file(), done.stderr.decode(errors="replace")[-2000:]
    return read_png(shot.read_bytes())
