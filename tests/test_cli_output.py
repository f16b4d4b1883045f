"""How the commands treat their output and their arguments as shell users meet them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailbridge.cli import EX_PIPE, main

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.toml"


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "imap-password").write_text("imap-secret\n")
    (creds / "smtp-password").write_text("smtp-secret\n")
    return {**os.environ, "CREDENTIALS_DIRECTORY": str(creds),
            "STATE_DIRECTORY": str(tmp_path / "state")}


def test_a_closed_pipe_ends_the_command_quietly(environ: dict[str, str]) -> None:
    """Output into a pipe nobody reads any more: no traceback, exit 141 like a shell's."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mailbridge", "check-config", str(EXAMPLE)],
            stdout=write_end, stderr=subprocess.PIPE, env=environ, cwd=REPO, timeout=60,
            check=False)
    finally:
        os.close(write_end)
    assert done.stderr.decode() == ""
    assert done.returncode == EX_PIPE == 141


@pytest.mark.parametrize("args", [["check-config", "FILE"], ["check-config", "--config", "FILE"]])
def test_check_config_takes_the_file_either_way(
        args: list[str], environ: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`check-config FILE` and `check-config --config FILE`, as the other commands take it."""
    for key in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"):
        monkeypatch.setenv(key, environ[key])
    assert main([str(EXAMPLE) if a == "FILE" else a for a in args]) == 0
    assert f"{EXAMPLE}: ok" in capsys.readouterr().out


def test_check_config_refuses_the_file_twice(capsys: pytest.CaptureFixture[str]) -> None:
    """Both spellings at once is a usage error (64) that says why."""
    with pytest.raises(SystemExit) as exit_:
        main(["check-config", str(EXAMPLE), "--config", str(EXAMPLE)])
    assert exit_.value.code == 64
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_example_header_shows_a_command_that_works() -> None:
    """The command in config.example.toml's header parses as written."""
    header = [line for line in EXAMPLE.read_text().splitlines()[:10]
              if "mailbridge check-config" in line]
    assert header, "the header names check-config"
    words = header[0].lstrip("# ").split()[1:]
    assert words[0] == "check-config"
    # the parser accepts it (a missing /etc file is a config problem, 78, not a usage error)
    assert main(words) == 78
