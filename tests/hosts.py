"""Machines for instance-identity tests: the files a machine's id and boot are read from.

Public API: `host_files(directory, machine=, boot=, booted_at=) -> HostFiles`, and ids
`MACHINE`, `CLONE`, `BOOT_1`, `BOOT_2`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from mailbridge.daemon.identity import HostFiles
from tests.outbox import T0

MACHINE, CLONE = "4b7e1d2c0a9f48e6b3c5d7e9f1a2b3c4", "9f0c3b1e2d4a45c6b7e8f9a0b1c2d3e4"
BOOT_1, BOOT_2 = "2f6e9a41-7c3d-4b8e-9a1f-0d2c4e6b8a13", "8a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def host_files(directory: Path, *, machine: str | None = MACHINE, boot: str | None = BOOT_1,
               booted_at: datetime = T0 - timedelta(hours=1)) -> HostFiles:
    """Machine id, boot id and /proc/stat's btime as a machine would show them (None: the
    file is absent)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = HostFiles(directory / "machine-id", directory / "boot_id", directory / "stat")
    if machine is not None:
        files.machine_id.write_text(machine + "\n")
    if boot is not None:
        files.boot_id.write_text(boot + "\n")
    files.proc_stat.write_text(f"cpu  1 2 3\nbtime {int(booted_at.timestamp())}\nprocesses 9\n")
    return files
