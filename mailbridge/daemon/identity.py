"""Which machine, which boot of it and which state directory an instance runs from: what lets
an instance recognise its own leftovers without trusting host names or process ids.

Public API: `HostFiles` (where the machine and boot are read; tests point it elsewhere),
`Identity` (`read`, `earlier_boot`), `StateLock` (`take`, `release`).

Host names repeat (containers, cloned machines) and PIDs are reused (after a reboot, or PID 1
in every container), so neither proves that a peer has ended. Two facts do:

- A peer that recorded our machine id with another boot id, and whose last heartbeat is
  older than this boot, ran on this machine before it rebooted. The heartbeat check keeps a
  clone that shares our machine id (a copied VM or container image), which heartbeats after
  our boot, from looking like our past.
- An instance holds an exclusive `flock` on `instance.lock` in its state directory while it
  runs, with its id written in the file; the kernel drops the lock when the process ends,
  however it ends. An instance that gets the lock and finds another id in the file knows
  that instance has ended: a restart after a crash clears its predecessor's leftovers at
  once instead of waiting for the lease timeout.

Under the shipped unit (`ProcSubset=pid`) /proc/sys and /proc/stat are hidden, so the boot
is unknown and only the lock applies; its state directory survives reboots, so a restart
after one still clears what the previous boot left.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

LOCK_NAME = "instance.lock"
_MACHINE_ID = re.compile(r"^[0-9a-f]{32}$")
_BOOT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class HostFiles:
    """Where this machine's id, its boot id and its boot time (`btime` in /proc/stat) are."""

    machine_id: Path = Path("/etc/machine-id")
    boot_id: Path = Path("/proc/sys/kernel/random/boot_id")
    proc_stat: Path = Path("/proc/stat")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip().lower()
    except OSError:
        return ""


def _boot_time(proc_stat: Path) -> datetime | None:
    for line in _read(proc_stat).splitlines():
        name, _, value = line.partition(" ")
        if name == "btime" and value.strip().isdigit():
            return datetime.fromtimestamp(int(value), UTC)
    return None


@dataclass(frozen=True)
class Identity:
    """This machine's id and boot, each "" (or None) where the system does not say."""

    machine_id: str = ""
    boot_id: str = ""
    booted_at: datetime | None = None

    @classmethod
    def read(cls, files: HostFiles | None = None) -> Identity:
        """Read them; an absent, empty or "uninitialized" file leaves its value unknown."""
        files = files or HostFiles()
        machine, boot = _read(files.machine_id), _read(files.boot_id)
        return cls(machine if _MACHINE_ID.match(machine) else "",
                   boot if _BOOT_ID.match(boot) else "", _boot_time(files.proc_stat))

    def earlier_boot(self, machine_id: str, boot_id: str, last_seen_at: datetime) -> bool:
        """Whether an instance that recorded this machine and boot, and was last seen at
        `last_seen_at`, provably ran on this machine before its current boot."""
        if not (self.machine_id and self.boot_id and self.booted_at and boot_id):
            return False
        return (machine_id == self.machine_id and boot_id != self.boot_id
                and last_seen_at < self.booted_at)


class StateLock:
    """The lock on a state directory that an instance holds while it runs."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def take(self, instance: str) -> str | None:
        """Lock the file for `instance` and write its id there; return the id of the instance
        that held it before (which has ended), if any.

        Raises nothing: `held` stays False when another running process holds the lock (two
        instances sharing one state directory) or the directory cannot be used.
        """
        try:
            handle = open(self.path, "a+", encoding="ascii")  # noqa: SIM115 (held open)
        except OSError:
            return None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            handle.seek(0)
            before = handle.read().strip()
            handle.seek(0)
            handle.truncate()
            handle.write(instance)
            handle.flush()
            os.fsync(handle.fileno())
        except OSError:
            handle.close()
            return None
        self._file = handle
        return before if before and before != instance else None

    def release(self) -> None:
        """Give the lock up (the file keeps our id: a successor finds us stopped)."""
        handle, self._file = self._file, None
        if handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
