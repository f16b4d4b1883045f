"""Build mailbridge-sla.json, the Grafana dashboard, from plain dicts.

Run: `python monitoring/grafana/build_dashboard.py` (writes the JSON next to this file),
or `--check` to fail when the committed JSON differs from what this script builds.

The dashboard is made for file provisioning: a `datasource` template variable (not
`__inputs`, which only the import UI resolves), a fixed `uid` and `"id": null`, and
`policy` and `priority` variables read from `mailbridge_sla_objective_ratio`.
Store-derived gauges are the same on every instance sharing a store, so they are
combined with max; counters add up across instances.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "mailbridge-sla.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'policy=~"$policy",priority=~"$priority"'
FR = f'sla="first_response",{SEL}'


def attainment(window: str, by: str = "") -> str:
    group = f" by ({by})" if by else ""
    return (f"1 - sum{group} (increase(mailbridge_sla_breaches_total{{{FR}}}[{window}]))"
            f" / sum{group} (increase(mailbridge_sla_evaluations_total{{{FR}}}[{window}]))")


def target(expr: str, legend: str = "", ref: str = "A") -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref,
            "range": True}


def targets(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [target(expr, legend, chr(ord("A") + n)) for n, (expr, legend) in enumerate(pairs)]


def stat(title: str, expr: str, *, unit: str, x: int, y: int, w: int = 4, h: int = 5,
         steps: list[dict[str, Any]] | None = None, description: str = "",
         legend: str = "") -> dict[str, Any]:
    steps = steps or [{"color": "text", "value": None}]
    return {
        "type": "stat", "title": title, "description": description, "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [target(expr, legend)],
        "fieldConfig": {"defaults": {"unit": unit, "decimals": 1 if unit == "percentunit"
                                     else None,
                                     "thresholds": {"mode": "absolute", "steps": steps},
                                     "color": {"mode": "thresholds"}},
                        "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background", "graphMode": "none", "textMode": "auto",
                    "justifyMode": "auto", "orientation": "auto"},
    }


def series(title: str, pairs: list[tuple[str, str]], *, unit: str, x: int, y: int,
           w: int = 12, h: int = 8, description: str = "", stack: bool = False,
           ) -> dict[str, Any]:
    return {
        "type": "timeseries", "title": title, "description": description, "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets(*pairs),
        "fieldConfig": {"defaults": {"unit": unit, "custom": {
            "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
            "spanNulls": True,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"}}},
            "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def row(title: str, y: int) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}}


ATTAINMENT_STEPS = [{"color": "red", "value": None}, {"color": "orange", "value": 0.9},
                    {"color": "green", "value": 0.95}]
BUDGET_STEPS = [{"color": "red", "value": None}, {"color": "orange", "value": 0.25},
                {"color": "green", "value": 0.5}]
COUNT_STEPS = [{"color": "green", "value": None}, {"color": "orange", "value": 1}]
OVERDUE_STEPS = [{"color": "green", "value": None}, {"color": "red", "value": 1}]

BREACH_RATIO_30D = (
    f"sum by (policy) (increase(mailbridge_sla_breaches_total{{{FR}}}[30d])) / "
    f"sum by (policy) (increase(mailbridge_sla_evaluations_total{{{FR}}}[30d]))")
BUDGET = (f"1 - ({BREACH_RATIO_30D}) / on (policy) "
          f"(1 - max by (policy) (mailbridge_sla_objective_ratio{{{FR}}}))")


def panels() -> list[dict[str, Any]]:
    p: list[dict[str, Any]] = [row("First response against target", 0)]
    for n, window in enumerate(("1d", "7d", "30d")):
        p.append(stat(f"Attainment, {window}", attainment(window), unit="percentunit",
                      x=4 * n, y=1, steps=ATTAINMENT_STEPS,
                      description=f"Share of first-response deadlines met over {window}: "
                                  "1 - breached / evaluated, for the selected policies."))
    p.append(stat("Objective", f"min(mailbridge_sla_objective_ratio{{{FR}}})",
                  unit="percentunit", x=12, y=1,
                  description="The configured objective ([sla] / [[policies]] objective); "
                              "the lowest of the selected policies."))
    p.append(stat("Error budget left, 30d", BUDGET, unit="percentunit", x=16, y=1, w=8,
                  steps=BUDGET_STEPS, legend="{{policy}}",
                  description="1 - breach ratio / (1 - objective), per policy, over 30 days."))
    p.append(series("First-response attainment (1d window) and objective", [
        (attainment("1d", "policy"), "{{policy}}"),
        (f"max by (policy) (mailbridge_sla_objective_ratio{{{FR}}})", "{{policy}} objective"),
    ], unit="percentunit", x=0, y=6))
    p.append(series("First-response business time", [
        ("histogram_quantile(0.5, sum by (le) (rate(mailbridge_sla_elapsed_business_seconds"
         '_bucket{sla="first_response",priority=~"$priority"}[1d])))', "p50"),
        ("histogram_quantile(0.9, sum by (le) (rate(mailbridge_sla_elapsed_business_seconds"
         '_bucket{sla="first_response",priority=~"$priority"}[1d])))', "p90"),
        (f"max(mailbridge_sla_target_business_seconds{{{FR}}})", "target (longest)"),
    ], unit="s", x=12, y=6, description="Business seconds from the customer's message to "
                                        "the first answer, over a 1-day window."))
    p.append(row("Breaches", 14))
    p.append(series("Breaches per hour, by policy and SLA", [
        (f"sum by (policy, sla) (increase(mailbridge_sla_breaches_total{{{SEL}}}[1h]))",
         "{{policy}} {{sla}}")], unit="short", x=0, y=15, stack=True))
    p.append(series("Deadlines evaluated per hour, by policy and SLA", [
        (f"sum by (policy, sla) (increase(mailbridge_sla_evaluations_total{{{SEL}}}[1h]))",
         "{{policy}} {{sla}}")], unit="short", x=12, y=15, stack=True))
    p += threads_panels(23)
    p += ack_panels(40)
    p += health_panels(57)
    return p


def threads_panels(y: int) -> list[dict[str, Any]]:
    open_agent = ("sum(max by (policy, priority) "
                  f'(mailbridge_threads_open{{state="awaiting_agent",{SEL}}}))')
    return [
        row("Threads now", y),
        stat("Awaiting an agent", open_agent, unit="short", x=0, y=y + 1),
        stat("At risk", f"sum(max by (policy, priority, sla) "
                        f"(mailbridge_threads_at_risk{{{SEL}}}))",
             unit="short", x=4, y=y + 1, steps=COUNT_STEPS,
             description="Threads awaiting an agent with a deadline within the at-risk "
                         "horizon ([sla] at_risk_horizon)."),
        stat("Overdue", f"sum(max by (policy, priority, sla) "
                        f"(mailbridge_threads_overdue{{{SEL}}}))",
             unit="short", x=8, y=y + 1, steps=OVERDUE_STEPS),
        stat("Oldest unanswered", f"max(mailbridge_oldest_unanswered_age_seconds{{{SEL}}})",
             unit="s", x=12, y=y + 1, w=6),
        stat("Awaiting the customer", "sum(max by (policy, priority) "
                                      f'(mailbridge_threads_open{{state="awaiting_customer",'
                                      f"{SEL}}}))", unit="short", x=18, y=y + 1, w=6),
        series("Open threads by state", [
            (f"sum by (state) (max by (policy, priority, state) "
             f"(mailbridge_threads_open{{{SEL}}}))", "{{state}}")],
            unit="short", x=0, y=y + 6, w=8),
        series("At risk and overdue, by policy", [
            (f"sum by (policy) (max by (policy, priority, sla) "
             f"(mailbridge_threads_at_risk{{{SEL}}}))", "{{policy}} at risk"),
            (f"sum by (policy) (max by (policy, priority, sla) "
             f"(mailbridge_threads_overdue{{{SEL}}}))", "{{policy}} overdue")],
            unit="short", x=8, y=y + 6, w=8),
        series("Oldest unanswered, by policy", [
            (f"max by (policy) (mailbridge_oldest_unanswered_age_seconds{{{SEL}}})",
             "{{policy}}")], unit="s", x=16, y=y + 6, w=8),
    ]


def ack_panels(y: int) -> list[dict[str, Any]]:
    quantile = ("histogram_quantile({q}, sum by (le) "
                "(rate(mailbridge_ack_latency_seconds_bucket[$__rate_interval])))")
    return [
        row("Acknowledgements", y),
        series("Ack latency (mail server arrival to SMTP accept)", [
            (quantile.format(q=0.5), "p50"), (quantile.format(q=0.99), "p99")],
            unit="s", x=0, y=y + 1),
        series("Acks sent and failed", [
            ("sum(rate(mailbridge_acks_sent_total[$__rate_interval]))", "sent"),
            ("sum by (reason) (rate(mailbridge_ack_failures_total[$__rate_interval]))",
             "failed: {{reason}}")], unit="ops", x=12, y=y + 1),
        series("Messages received, by kind", [
            ("sum by (kind) (rate(mailbridge_messages_received_total[$__rate_interval]))",
             "{{kind}}")], unit="ops", x=0, y=y + 9, stack=True),
        series("No acknowledgement, by rule", [
            ("sum by (reason) (rate(mailbridge_acks_suppressed_total[$__rate_interval]))",
             "{{reason}}")], unit="ops", x=12, y=y + 9, stack=True),
    ]


def health_panels(y: int) -> list[dict[str, Any]]:
    return [
        row("Ingest and outbox health", y),
        series("IMAP connected, by mailbox", [
            ("max by (mailbox) (mailbridge_imap_connected)", "{{mailbox}}")],
            unit="bool", x=0, y=y + 1, w=8),
        series("Since the last IMAP sync", [
            ("time() - max by (mailbox) (mailbridge_imap_last_sync_timestamp_seconds)",
             "{{mailbox}}")], unit="s", x=8, y=y + 1, w=8),
        series("IMAP reconnects", [
            ("sum by (mailbox) (increase(mailbridge_imap_reconnects_total[$__rate_interval]))",
             "{{mailbox}}")], unit="short", x=16, y=y + 1, w=8),
        series("Outbox", [
            ("max(mailbridge_outbox_depth)", "items waiting"),
            ("max(mailbridge_outbox_oldest_age_seconds)", "oldest, seconds")],
            unit="short", x=0, y=y + 9, w=8),
        series("Scrape", [
            ('sum(up{job="mailbridge"})', "instances up"),
            ("max(mailbridge_scrape_store_duration_seconds)", "store query, seconds"),
            ("min(mailbridge_scrape_store_success)", "store readable")],
            unit="short", x=8, y=y + 9, w=8),
        series("Status updates, nudges and escalations sent", [
            ("sum by (kind) (increase(mailbridge_notices_sent_total[$__rate_interval]))",
             "{{kind}}")], unit="short", x=16, y=y + 9, w=8, stack=True),
        series("OAuth2 access token valid for", [
            # 0 where no [oauth2] grant is in use: such instances draw nothing.
            ("max by (instance) (mailbridge_oauth2_token_expiry_timestamp_seconds > 0) - time()",
             "{{instance}}")], unit="s", x=0, y=y + 17, w=12,
            description="Seconds until the access token held expires; it is refreshed ahead "
                        "of expiry, so a line that reaches 0 means refreshes fail."),
        series("OAuth2 refresh failures, by reason", [
            ("sum by (reason) (increase(mailbridge_oauth2_refresh_failures_total"
             "[$__rate_interval])) > 0", "{{reason}}")], unit="short", x=12, y=y + 17, w=12,
            stack=True, description="invalid_grant: the grant was revoked or expired; run "
                                    "`mailbridge oauth2-login` again (/healthz says so)."),
        series("Pushes from the mail server, by outcome", [
            ("sum by (outcome) (increase(mailbridge_push_notifications_total"
             "[$__rate_interval])) > 0", "{{outcome}}")], unit="short", x=0, y=y + 25, w=12,
            stack=True, description="Dovecot's push at /push/dovecot: woken (a watcher looked "
                                    "at once), not_watched, ignored_event; unauthorized or "
                                    "malformed mean its url or password do not match [http] "
                                    "push_username / push_password_file, and new mail waits "
                                    "for IDLE."),
        series("Copies in the Sent folder, by outcome", [
            ("sum by (outcome) (increase(mailbridge_sent_copies_total[$__rate_interval])) > 0",
             "{{outcome}}")], unit="short", x=12, y=y + 25, w=12, stack=True,
            description="Copies of what customers were sent, appended to the Sent folder so "
                        "that agents see them in their mail client; failed ones are retried."),
    ]


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "type": "query", "name": name, "label": label, "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": f"PrometheusVariableQueryEditor-{name}",
                  "qryType": 1},
        "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [], "sort": 1, "hide": 0, "regex": "",
    }


def dashboard() -> dict[str, Any]:
    return {
        "id": None,
        "uid": "mailbridge-sla",
        "title": "mailbridge SLA",
        "description": "First-response attainment, breaches, threads at risk, "
                       "acknowledgements and ingest health of mailbridge.",
        "tags": ["mailbridge", "sla", "support"],
        "timezone": "",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-7d", "to": "now"},
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": [
            {"type": "datasource", "name": "datasource", "label": "Data source",
             "query": "prometheus", "refresh": 1, "hide": 0, "regex": "",
             "current": {}, "options": []},
            variable("policy", "Policy", "label_values(mailbridge_sla_objective_ratio, policy)"),
            variable("priority", "Priority", 'label_values(mailbridge_sla_objective_ratio'
                                             '{policy=~"$policy"}, priority)'),
        ]},
        "panels": [dict(panel, id=n) for n, panel in enumerate(panels(), start=1)],
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
