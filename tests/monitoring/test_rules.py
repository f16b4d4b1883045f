"""The shipped Prometheus rules: valid, and every alert unit-tested firing and not firing."""

from __future__ import annotations

from typing import Any

import yaml

from tests.monitoring.tools import MONITORING, RULES, promtool

TESTS = MONITORING / "prometheus" / "mailbridge.rules.test.yml"


def _load(path: Any) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_rules_pass_promtool_check() -> None:
    """`promtool check rules` accepts the rules file."""
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_pass() -> None:
    """`promtool test rules` passes the shipped unit tests."""
    result = promtool("test", "rules", TESTS.name, cwd=TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    """Each alert has a unit test where it fires and one where it stays silent."""
    alerts = {rule["alert"] for group in _load(RULES)["groups"] for rule in group["rules"]
              if "alert" in rule}
    firing: set[str] = set()
    silent: set[str] = set()
    for case in _load(TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    assert alerts - firing == set(), "alerts never shown firing"
    assert alerts - silent == set(), "alerts never shown silent"
    assert len(alerts) >= 8


def test_a_wrong_expectation_fails(tmp_path: Any) -> None:
    """The unit tests are not vacuous: a changed expected value makes promtool fail."""
    text = TESTS.read_text(encoding="utf-8").replace("value: 0.8", "value: 0.5", 1)
    assert "value: 0.5" in text
    broken = tmp_path / "broken.test.yml"
    broken.write_text(text.replace("- mailbridge.rules.yml", f"- {RULES}"), encoding="utf-8")
    result = promtool("test", "rules", str(broken))
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_objectives_are_read_from_the_exported_gauge() -> None:
    """No alert hard-codes an objective: burn thresholds multiply the exported objective."""
    for group in _load(RULES)["groups"]:
        for rule in group["rules"]:
            if "Burn" in rule.get("alert", ""):
                assert "policy_priority_sla:mailbridge_sla_objective:ratio" in rule["expr"]
                assert "0.95" not in rule["expr"] and "0.05" not in rule["expr"]


def test_example_prometheus_config_is_valid(tmp_path: Any) -> None:
    """The example scrape config passes `promtool check config` with the rules file."""
    example = (MONITORING / "prometheus" / "prometheus.example.yml").read_text()
    config = tmp_path / "prometheus.yml"
    config.write_text(example.replace("/etc/prometheus/mailbridge.rules.yml", str(RULES)))
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = [job["job_name"] for job in yaml.safe_load(example)["scrape_configs"]]
    assert jobs == ["mailbridge"], "MailbridgeDown looks for job mailbridge"
