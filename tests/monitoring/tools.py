"""Prometheus's own tools for the monitoring tests: promtool, and a real server.

Public API: `promtool(*args, stdin=None) -> CompletedProcess`, `MONITORING` (the repository's
monitoring/ folder), `Prometheus` (a server as a child process). Imports no pytest.

Both come from Debian's `prometheus` package, which `./scripts/test` installs. The server
runs from a generated config on a free loopback port with its own storage directory and is
stopped by its PID; it never touches a system Prometheus.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.servers import LOOPBACK, free_port, port_accepts, wait_for

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
RULES = MONITORING / "prometheus" / "mailbridge.rules.yml"
INSTALL_HINT = "run the project's test command, `./scripts/test`, which installs prometheus"


def binary(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists()
                                   else None)
    if found is None:
        raise AssertionError(f"{name} is missing: {INSTALL_HINT}")
    return found


def promtool(*args: str, stdin: str | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], input=stdin, capture_output=True,
                          text=True, timeout=60, cwd=cwd, check=False)


class Prometheus:
    """`prometheus` scraping one target every second, with the mailbridge rules loaded."""

    def __init__(self, directory: Path, target: str, *, job: str = "mailbridge",
                 headers: str = "") -> None:
        self.directory = directory
        self.port = free_port()
        self.config = directory / "prometheus.yml"
        self.log_path = directory / "prometheus.log"
        directory.mkdir(parents=True, exist_ok=True)
        self.config.write_text(f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES}
scrape_configs:
  - job_name: {job}
    static_configs:
      - targets: ["{target}"]
{headers}
""", encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Prometheus:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [binary("prometheus"), f"--config.file={self.config}",
                 f"--storage.tsdb.path={self.directory / 'data'}",
                 f"--web.listen-address={LOOPBACK}:{self.port}",
                 "--storage.tsdb.retention.time=1d", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        wait_for(self._ready, timeout=timeout, interval=0.1,
                 message=lambda: f"prometheus did not start; log:\n{self.log()}")
        return self

    def _ready(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"prometheus exited; log:\n{self.log()}")
        if not port_accepts(LOOPBACK, self.port):
            return False
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{self.port}/-/ready",
                                        timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        url = f"http://{LOOPBACK}:{self.port}/api/v1/{path}" + (f"?{query}" if query else "")
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: [{"metric": {...}, "value": [time, "text"]}, ...]."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def scalar(self, expr: str) -> float | None:
        """The value of a query that yields one sample, or None when it yields none."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
