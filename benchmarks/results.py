"""`benchmarks/RESULTS.md`, where every benchmark appends its figures: one section each,
headed by the benchmark's name, the date, the machine and the command that ran it."""

from __future__ import annotations

import os
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, {platform.system()} {platform.release()}")


def spread(values: list[float], fmt: str, unit: str = "") -> str:
    """The median of `values` with their range, each as `fmt` says, `unit` after the median:
    "2.13 ms (1.97–2.14)"."""
    return (f"{statistics.median(values):{fmt}}{unit} "
            f"({min(values):{fmt}}–{max(values):{fmt}})")


def append(name: str, command: str, body: str) -> str:
    """Append a section with `body` under its heading; return the section."""
    section = (f"\n## {name} — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n"
               f"Machine: {machine()}. Command: `{command}`\n\n{body}")
    with RESULTS.open("a", encoding="utf-8") as out:
        if out.tell() == 0:
            out.write("# Benchmark results\n\nEach run appends a section; newest last.\n")
        out.write(section)
    return section
