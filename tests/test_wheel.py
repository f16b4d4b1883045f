"""The wheel carries the shipped templates, and an installed mailbridge finds them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_installed_wheel_renders_acknowledgements_from_its_own_templates(
        tmp_path: Path) -> None:
    """Built and installed outside the source tree, the demo still writes its acks."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path / "dist"), str(REPO)], check=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("mailbridge-*.whl"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, timeout=300)
    assert (target / "mailbridge" / "templates" / "en" / "ack.txt.j2").is_file()
    assert (target / "mailbridge" / "templates" / "de" / "ack.html.j2").is_file()

    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run(
        [sys.executable, "-c", "import mailbridge.config.languages as l; print(l.TEMPLATES)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=60)
    assert Path(run.stdout.strip()) == target / "mailbridge" / "templates"
    demo = subprocess.run(
        [sys.executable, "-m", "mailbridge", "demo", "--once", "--listen", "127.0.0.1:0",
         "--state-dir", str(tmp_path / "state")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert demo.returncode == 0, demo.stderr
    assert "will answer you personally" in demo.stdout
