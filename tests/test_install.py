"""scripts/install: a real install (venv, link, units, config, state directory) under a
scratch root, run twice, then uninstalled.

One install serves the whole module (a venv and a pip install of the checkout take a
while); the tests run in file order, the second run and the uninstall last.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailbridge import __version__

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "scripts" / "install"
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path", ".target")
STATE_DIR = "/var/lib/mailbridge"

pytestmark = pytest.mark.slow


def _install(root: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(INSTALL), "--root", str(root), *args], env=env,
                            cwd=root.parent, capture_output=True, text=True, timeout=900,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The scratch root, with mailbridge installed into it once."""
    if os.geteuid() != 0:
        pytest.skip("scripts/install runs as root, as on a server: run the tests as root")
    root = tmp_path_factory.mktemp("install") / "root"
    output = _install(root)
    assert "Next steps" in output and "systemctl enable --now mailbridge" in output
    yield root


def _shipped_units() -> list[Path]:
    units = [p for p in sorted((REPO / "systemd").iterdir()) if p.suffix in UNIT_SUFFIXES]
    assert any(p.name == "mailbridge.service" for p in units)
    return units


def test_the_installed_command_runs_outside_the_checkout(root: Path, tmp_path: Path) -> None:
    """/usr/local/bin/mailbridge is a relative link to the venv's entry point; the venv holds
    a copy of the package (not the checkout) with the PostgreSQL driver."""
    link = root / "usr/local/bin/mailbridge"
    assert link.is_symlink()
    assert os.readlink(link) == "../../../opt/mailbridge/bin/mailbridge"
    run = subprocess.run([str(link), "--version"], cwd=tmp_path, capture_output=True,
                         text=True, check=True, timeout=60)
    assert run.stdout.strip() == f"mailbridge {__version__}"
    where = subprocess.run(
        [str(root / "opt/mailbridge/bin/python"), "-c",
         "import mailbridge, psycopg; print(mailbridge.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(root / "opt/mailbridge")


def test_the_config_is_the_example_with_the_units_state_dir(root: Path, tmp_path: Path) -> None:
    """Only [daemon] state_dir differs from the example; check-config accepts the file."""
    config = root / "etc/mailbridge/mailbridge.toml"
    assert config.stat().st_mode & 0o777 == 0o640
    example = (REPO / "config.example.toml").read_text()
    assert config.read_text() == example.replace(
        f'# state_dir = "{STATE_DIR}"', f'state_dir = "{STATE_DIR}"')
    assert tomllib.loads(config.read_text())["daemon"]["state_dir"] == STATE_DIR
    assert (root / "var/lib/mailbridge").stat().st_mode & 0o777 == 0o700

    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "imap-password").write_text("imap-secret\n")
    (creds / "smtp-password").write_text("smtp-secret\n")
    state_existed = Path(STATE_DIR).exists()
    try:
        check = subprocess.run(
            [str(root / "usr/local/bin/mailbridge"), "check-config", str(config)],
            env={**os.environ, "CREDENTIALS_DIRECTORY": str(creds)}, cwd=tmp_path,
            capture_output=True, text=True, check=False, timeout=120)
    finally:
        if not state_existed and Path(STATE_DIR).exists():  # this machine is not the server
            shutil.rmtree(STATE_DIR)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ok" in check.stdout


def test_every_unit_is_installed_running_the_venv(root: Path) -> None:
    """Each unit of systemd/ is installed as shipped but for its Exec lines, which run the
    venv's entry point; systemd-analyze verify finds nothing to say."""
    entry = root / "opt/mailbridge/bin/mailbridge"
    installed = []
    for unit in _shipped_units():
        copy = root / "etc/systemd/system" / unit.name
        installed.append(str(copy))
        assert copy.read_text() == unit.read_text().replace(
            "=/usr/bin/mailbridge ", f"={entry} ")
    service = (root / "etc/systemd/system/mailbridge.service").read_text()
    assert f"\nExecStart={entry} run --config /etc/mailbridge/mailbridge.toml\n" in service

    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: run ./scripts/test, which installs it"
    result = subprocess.run([analyze, "verify", "--man=no", *installed], capture_output=True,
                            text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_a_second_run_reinstalls_the_package_and_keeps_the_operators_edits(root: Path) -> None:
    config = root / "etc/mailbridge/mailbridge.toml"
    edited = config.read_text().replace('log_level = "info"', 'log_level = "debug"')
    config.write_text(edited)
    unit = root / "etc/systemd/system/mailbridge.service"
    unit.write_text(unit.read_text() + "# tuned here\n")
    package = next((root / "opt/mailbridge/lib").glob("python3*/site-packages/mailbridge"))
    (package / "cli" / "threads.py").unlink()  # the next run must bring it back

    output = _install(root)

    assert config.read_text() == edited
    assert unit.read_text().endswith("# tuned here\n")
    assert f"{unit}: kept" in output and f"{config}: kept" in output
    assert (package / "cli" / "threads.py").is_file()
    assert f"mailbridge {__version__}, from this checkout" in output


def test_uninstall_removes_the_venv_link_and_units_and_keeps_config_and_state(
        root: Path) -> None:
    output = _install(root, "--uninstall")
    assert not (root / "opt/mailbridge").exists()
    assert not (root / "usr/local/bin/mailbridge").is_symlink()
    for unit in _shipped_units():
        assert not (root / "etc/systemd/system" / unit.name).exists()
    assert (root / "etc/mailbridge/mailbridge.toml").is_file()
    assert (root / "var/lib/mailbridge").is_dir()
    assert "Kept: the configuration" in output
