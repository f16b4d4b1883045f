"""The Grafana dashboard: provisionable, every query valid PromQL over metrics we export."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from mailbridge.core.calendar import Calendar
from mailbridge.core.policy import Policy
from mailbridge.metrics.collector import StoreCollector
from mailbridge.metrics.families import Metrics
from mailbridge.store.db import Store
from tests.monitoring.tools import MONITORING, RULES, promtool

GRAFANA = MONITORING / "grafana"
DASHBOARD = GRAFANA / "mailbridge-sla.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's variables, replaced by what Grafana would put there, so promtool can parse.
SUBSTITUTIONS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1d",
                 "${datasource}": "", "$policy": ".*", "$priority": ".*"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def expressions(board: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(board) for t in p["targets"]]
    for var in board["templating"]["list"]:
        if var["type"] == "query":  # label_values(selector, label) -> selector
            match = re.fullmatch(r"label_values\((.*), *\w+\)", var["definition"])
            assert match, var["definition"]
            exprs.append(match[1])
    return exprs


def substituted(expr: str) -> str:
    for name, value in SUBSTITUTIONS.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def test_generated_file_is_up_to_date() -> None:
    """The committed JSON is exactly what build_dashboard.py builds."""
    result = subprocess.run([sys.executable, str(GRAFANA / "build_dashboard.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_dashboard_is_made_for_provisioning(dashboard: dict[str, Any]) -> None:
    """A fixed uid, no id, no __inputs, and a datasource variable every query uses."""
    text = DASHBOARD.read_text(encoding="utf-8")
    assert "__inputs" not in text and "DS_PROMETHEUS" not in text
    assert dashboard["id"] is None and dashboard["uid"] == "mailbridge-sla"
    assert dashboard["title"] == "mailbridge SLA"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("policy", "priority"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == DS
        assert variables[name]["includeAll"] and variables[name]["multi"]
    for panel in panels(dashboard):
        assert panel["datasource"] == DS, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"] == DS for t in panel["targets"]), panel["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_panels_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    """Every panel lies within the 24 columns and no two panels share a cell."""
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, (panel["title"], taken.get((x, y)))
                taken[(x, y)] = panel["title"]


def test_the_issue_s_panels_are_there(dashboard: dict[str, Any]) -> None:
    """Attainment over 1d/7d/30d, budget, breaches, threads, latency, ingest and outbox."""
    titles = " | ".join(p["title"] for p in panels(dashboard)).lower()
    for wanted in ("attainment, 1d", "attainment, 7d", "attainment, 30d", "objective",
                   "error budget left", "breaches", "awaiting an agent", "at risk", "overdue",
                   "oldest unanswered", "ack latency", "imap connected", "outbox",
                   "messages received"):
        assert wanted in titles, wanted


def _exported_names() -> set[str]:
    calendar = Calendar(name="24/7", timezone="UTC", hours={}, always_open=True)
    policy = Policy(name="default", priority="normal", calendar=calendar,
                    first_response=timedelta(hours=4), next_response=timedelta(hours=8),
                    resolution=timedelta(days=5))
    registry = CollectorRegistry()
    Metrics(registry, ["INBOX"], [policy])
    collector = StoreCollector(Store.__new__(Store), [policy], horizon=timedelta(hours=1),
                               now=lambda: None)  # type: ignore[arg-type,return-value]
    names: set[str] = set()
    for family in [*registry.collect(), *collector.describe()]:
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_count", "_sum")}
        if family.type == "info":
            names.add(family.name + "_info")
    return names


def test_every_metric_in_the_dashboard_and_rules_is_exported(
        dashboard: dict[str, Any]) -> None:
    """Each mailbridge_* name in a panel or a rule is a series the daemon exports."""
    exported = _exported_names()
    text = " ".join(expressions(dashboard)) + RULES.read_text(encoding="utf-8")
    used = set(re.findall(r"(?<![:\w])mailbridge_[a-z0-9_]+", text))
    assert used, "no metric found"
    assert used - exported == set()


def test_every_expression_parses(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses every panel and variable query, once Grafana's variables are filled."""
    exprs = [substituted(e) for e in expressions(dashboard)]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{n}:check", "expr": e} for n, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_a_typo_in_an_expression_is_caught(tmp_path: Path) -> None:
    """The parse check is real: a broken expression fails it."""
    path = tmp_path / "broken.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "x:y:z", "expr": "sum(rate(mailbridge_acks_sent_total[5m])"}]}]}))
    assert promtool("check", "rules", str(path)).returncode != 0


def test_attainment_and_budget_panels_compute_what_they_say(
        dashboard: dict[str, Any], tmp_path: Path) -> None:
    """On 8 deadlines a minute with 1 breached, 1d attainment is 87.5% and, with a 75%
    objective, half the error budget is left: 1 - 0.125 / 0.25 = 0.5."""
    by_title = {p["title"]: p["targets"][0]["expr"] for p in panels(dashboard)}
    attainment = substituted(by_title["Attainment, 1d"])
    budget = substituted(by_title["Error budget left, 30d"])
    labels = 'job="mailbridge",instance="mb:9464",sla="first_response",policy="vip",' \
             'priority="high"'
    rules = tmp_path / "panels.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": [
        {"record": "panel:attainment_1d:ratio", "expr": attainment},
        {"record": "panel:budget_30d:ratio", "expr": budget}]}]}))
    tests = tmp_path / "panels.test.yml"
    tests.write_text(yaml.safe_dump({
        "rule_files": [str(rules)], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": [
            {"series": f"mailbridge_sla_evaluations_total{{{labels}}}", "values": "0+8x120"},
            {"series": f"mailbridge_sla_breaches_total{{{labels}}}", "values": "0+1x120"},
            {"series": f"mailbridge_sla_objective_ratio{{{labels}}}", "values": "0.75x120"}],
            "promql_expr_test": [
                {"expr": "panel:attainment_1d:ratio", "eval_time": "120m",
                 "exp_samples": [{"labels": "panel:attainment_1d:ratio", "value": 0.875}]},
                {"expr": "panel:budget_30d:ratio", "eval_time": "120m",
                 "exp_samples": [{"labels": 'panel:budget_30d:ratio{policy="vip"}',
                                  "value": 0.5}]}]}]}))
    result = promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_provisioning_example_points_at_a_folder_of_dashboards() -> None:
    """The provider file is the classic file provider, version 1."""
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "mailbridge.yaml").read_text())
    assert provider["apiVersion"] == 1
    [entry] = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"].startswith("/")
    assert entry["allowUiUpdates"] is False
