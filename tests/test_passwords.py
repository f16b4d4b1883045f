"""Relay passwords: the scrypt hash format, checking, and `mailbridge hash-password`."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailbridge.config.passwords import hash_password, parse_hash, verify_password

REPO = Path(__file__).resolve().parent.parent
FAST = 2**10  # the tests' cost; the format and the code path are the same


def test_hash_is_salted_and_verifies() -> None:
    """The same password hashes differently each time, and each hash verifies it."""
    first, second = hash_password("correct horse", n=FAST), hash_password("correct horse", n=FAST)
    assert first != second
    assert first.startswith(f"scrypt${FAST}$8$1$")
    assert verify_password("correct horse", first) and verify_password("correct horse", second)
    assert not verify_password("correct horse!", first)
    assert not verify_password("", first)


def test_default_cost_is_slow_enough() -> None:
    """The default hash costs 2**15 rounds of scrypt (about 0.1 s): slow for a guesser."""
    parsed = parse_hash(hash_password("pw"))
    assert (parsed.n, parsed.r, parsed.p) == (2**15, 8, 1)
    assert len(parsed.salt) == 16 and len(parsed.digest) == 32


def test_a_given_salt_makes_it_reproducible() -> None:
    """With the salt fixed the output is fixed: the format is stable."""
    encoded = hash_password("pw", salt=b"0123456789abcdef", n=FAST)
    assert encoded == hash_password("pw", salt=b"0123456789abcdef", n=FAST)
    assert encoded.split("$")[4] == "MDEyMzQ1Njc4OWFiY2RlZg"


@pytest.mark.parametrize("encoded", [
    "", "pbkdf2$1$2$3$4$5", "scrypt$1024$8$1$salt", "scrypt$1000$8$1$c2FsdHNhbHQ$" + "A" * 43,
    "scrypt$1024$8$1$!!!$" + "A" * 43, f"scrypt${2**24}$8$1$c2FsdHNhbHQ$" + "A" * 43,
    "scrypt$1024$99$1$c2FsdHNhbHQ$" + "A" * 43])
def test_damaged_or_too_costly_hashes_are_refused(encoded: str) -> None:
    """A hash that is damaged, or would cost too much memory, is a ValueError, never a login."""
    with pytest.raises(ValueError) as info:
        parse_hash(encoded)
    if encoded:
        assert encoded not in str(info.value), "the value is not shown"
    assert not verify_password("pw", encoded)


def _cli(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailbridge", *args], input=stdin,
                          capture_output=True, text=True, cwd=REPO, check=False)


def test_hash_password_reads_stdin_when_not_a_terminal() -> None:
    """`hash-password` with a pipe reads the first line and prints one verifiable hash."""
    done = _cli("hash-password", stdin="pipe secret\nignored\n")
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert verify_password("pipe secret", line)
    assert "pipe secret" not in done.stdout + done.stderr


def test_hash_password_refuses_an_empty_password() -> None:
    """An empty password prints nothing and exits 1."""
    done = _cli("hash-password", stdin="\n")
    assert done.returncode == 1 and done.stdout == "" and "empty" in done.stderr


def _read_until(fd: int, wanted: bytes, timeout: float = 10.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"did not see {wanted!r}; got {seen!r}")
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_hash_password_asks_on_a_terminal_without_echo() -> None:
    """On a terminal the password is asked twice and never echoed; the hash verifies."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command on the new terminal
        os.chdir(REPO)
        os.execv(sys.executable, [sys.executable, "-m", "mailbridge", "hash-password"])
    try:
        transcript = _read_until(fd, b"password: ")
        os.write(fd, b"tty secret\n")
        transcript += _read_until(fd, b"again: ")
        os.write(fd, b"tty secret\n")
        transcript += _read_until(fd, b"scrypt$")
        transcript += _read_until(fd, b"\n")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b"tty secret" not in transcript, "the password is not echoed"
    line = transcript[transcript.index(b"scrypt$"):].split(b"\r\n")[0].decode()
    assert verify_password("tty secret", line)
