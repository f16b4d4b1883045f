"""A real scrape of the daemon after real traffic through Dovecot: label hygiene, promtool,
and a real Prometheus that finds the acknowledgements and the first-response attainment."""

from __future__ import annotations

import re
import urllib.error
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailbridge.metrics.families import (
    BOUNCE_KINDS,
    COMPONENTS,
    COPY_OUTCOMES,
    FAILURE_REASONS,
    MESSAGE_KINDS,
    NOTICE_KINDS,
    PUSH_OUTCOMES,
    SLA_KINDS,
    SUPPRESSION_REASONS,
)
from mailbridge.store.snapshot import OPEN_STATES
from tests.daemon import Daemon, write_config
from tests.io.test_daemon import DSN
from tests.mails import customer_mail, reply_to
from tests.monitoring.tools import Prometheus, promtool
from tests.servers import Dovecot, SmtpPeer, wait_for

pytestmark = pytest.mark.slow

VIP_POLICY = """
[[policies]]
name = "vip"
priority = "high"
first_response = "{first_response}"
objective = 0.99

[policies.match]
senders = ["*@vip.example"]
"""


def agent_reply(original: bytes) -> bytes:
    """Dana's answer from her own mail client, filed in Sent."""
    parent = message_from_bytes(original, policy=default)
    msg = EmailMessage()
    msg["From"] = "Dana Whitfield <dana@example.com>"
    msg["To"] = str(parent["From"])
    msg["Subject"] = "Re: " + str(parent["Subject"])
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg["In-Reply-To"] = str(parent["Message-ID"])
    msg["References"] = str(parent["Message-ID"])
    msg.set_content("Hello, the second charge is refunded.")
    return msg.as_bytes()


def config_with(tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer, *,
                vip_first_response: str, http: str = "") -> Path:
    path = write_config(tmp_path / "mb", dovecot, smtp_peer,
                        extra_sla=VIP_POLICY.format(first_response=vip_first_response))
    if http:
        text = path.read_text(encoding="utf-8").replace("[http]\n", f"[http]\n{http}\n", 1)
        path.write_text(text, encoding="utf-8")
    return path


def recorded(daemon: Daemon) -> int:
    store = daemon.store()
    try:
        return len(store.messages())
    finally:
        store.close()


def thread_ids(daemon: Daemon) -> list[str]:
    store = daemon.store()
    try:
        with store.reading() as conn:
            return [row[0] for row in conn.exec_driver_sql("SELECT id FROM threads")]
    finally:
        store.close()


def test_labels_after_real_traffic_are_bounded_and_promtool_accepts_the_scrape(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """After customers, robots, a follow-up and an agent's reply, no label carries an
    address, a name, a subject or a thread reference; every value comes from config or a
    fixed set; and `promtool check metrics` accepts the exposition."""
    config = config_with(tmp_path, dovecot, smtp_peer, vip_first_response="1h")
    subjects = ["Invoice 2291 charged twice", "Zugang gesperrt – bitte helfen",
                "URGENT: production outage"]
    names = ["Ana Souza", "Jörg Müller", "Priya Raman"]
    with Daemon(config) as daemon:
        ana = customer_mail(1, name=names[0], addr="ana@example.org", subject=subjects[0])
        dovecot.append(ana)
        dovecot.append(customer_mail(2, name=names[1], addr="joerg@example.de",
                                     subject=subjects[1]))
        dovecot.append(customer_mail(3, name=names[2], addr="priya@vip.example",
                                     subject=subjects[2]))
        smtp_peer.wait_for_count(3, timeout=15)
        dovecot.append(customer_mail(4, addr="ana@example.org",
                                     subject="Automatic reply: " + subjects[0],
                                     body="I am out of the office until Monday.",
                                     X_Auto_Response_Suppress="All"))
        dovecot.append(DSN)
        dovecot.append(customer_mail(5, addr="users@lists.example.org", subject="[users] news",
                                     List_Id="<users.lists.example.org>", Precedence="list"))
        dovecot.append(reply_to(ana, body="Any news?"))
        dovecot.append(agent_reply(ana), folder="Sent")
        wait_for(lambda: recorded(daemon) == 8, timeout=20, message=daemon.log)
        wait_for(lambda: daemon.metric("mailbridge_sla_evaluations_total", sla="first_response",
                                       policy="default", priority="normal") == 1,
                 timeout=10, message=daemon.log)
        exposition = daemon.metrics()
        refs = thread_ids(daemon)
    assert len(refs) == 3
    families = list(text_string_to_metric_families(exposition))
    allowed = {
        "mailbox": {"INBOX", "Sent"}, "policy": {"default", "vip"},
        "priority": {"normal", "high"}, "sla": set(SLA_KINDS), "state": set(OPEN_STATES),
        "kind": set(MESSAGE_KINDS) | set(NOTICE_KINDS) | set(BOUNCE_KINDS),
        "reason": set(SUPPRESSION_REASONS) | set(FAILURE_REASONS),
        "component": set(COMPONENTS), "outcome": set(COPY_OUTCOMES) | set(PUSH_OUTCOMES),
    }
    seen_keys: set[str] = set()
    for family in families:
        assert family.documentation, f"{family.name} has no help text"
        for sample in family.samples:
            for key, value in sample.labels.items():
                seen_keys.add(key)
                assert "@" not in value, (sample.name, key, value)
                assert not any(ref in value for ref in refs), (sample.name, key, value)
                if key == "le":
                    assert value == "+Inf" or float(value) >= 0
                elif key in ("version", "python"):
                    assert re.fullmatch(r"[0-9][0-9a-z.+-]*", value), value
                else:
                    assert value in allowed[key], (sample.name, key, value)
    assert seen_keys <= {*allowed, "le", "version", "python"}
    for text in [*subjects, *names, "ana@", "Souza", "Invoice", "outage", *refs]:
        assert text not in exposition, text

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families for s in f.samples}

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("mailbridge_acks_sent_total", mailbox="INBOX") == 3
    assert value("mailbridge_messages_received_total", mailbox="INBOX", kind="customer") == 3
    assert value("mailbridge_messages_received_total", mailbox="Sent", kind="agent") == 1
    for reason in ("auto_reply", "auto_submitted", "list", "follow_up"):
        assert value("mailbridge_acks_suppressed_total", mailbox="INBOX", reason=reason) == 1
    assert value("mailbridge_threads_open", policy="default", priority="normal",
                 state="awaiting_agent") == 1
    assert value("mailbridge_threads_open", policy="default", priority="normal",
                 state="awaiting_customer") == 1
    assert value("mailbridge_threads_open", policy="vip", priority="high",
                 state="awaiting_agent") == 1
    assert value("mailbridge_threads_at_risk", sla="first_response", policy="vip",
                 priority="high") == 1, "a 1h target is within the 1h horizon"
    assert value("mailbridge_sla_elapsed_business_seconds_count", sla="first_response",
                 priority="normal") == 1
    assert value("mailbridge_ack_latency_seconds_count", mailbox="INBOX") == 3
    assert value("mailbridge_config_last_reload_successful") == 1
    assert value("mailbridge_scrape_store_success") == 1
    assert not any(s.endswith("_created") for s, _ in samples), "no _created series"

    checked = promtool("check", "metrics", stdin=exposition)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_prometheus_scrapes_acks_and_first_response_attainment(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """A real Prometheus, with a bearer token and the shipped rules, scrapes the daemon after
    three customers (two answered in time, one past a 1s VIP deadline) and its HTTP API
    reports 3 acknowledgements and 2/3 first-response attainment."""
    token = tmp_path / "metrics-token"
    token.write_text("scrape-token-123\n", encoding="utf-8")
    config = config_with(tmp_path, dovecot, smtp_peer, vip_first_response="1s",
                         http=f'bearer_token_file = "{token}"')
    with Daemon(config) as daemon:
        first = customer_mail(1, addr="ana@example.org", subject="Charged twice")
        second = customer_mail(2, addr="bo@example.org", subject="Password reset")
        for raw in (first, second, customer_mail(3, addr="vi@vip.example")):
            dovecot.append(raw)
        smtp_peer.wait_for_count(3, timeout=15)
        for raw in (first, second):
            dovecot.append(agent_reply(raw), folder="Sent")
        wait_for(lambda: recorded(daemon) == 5, timeout=20, message=daemon.log)
        with pytest.raises(urllib.error.HTTPError) as refused:
            daemon.metrics()
        assert refused.value.code == 401, "the token is required"
        prometheus = Prometheus(tmp_path / "prometheus", daemon.listen, headers=f"""
    authorization:
      credentials_file: {token}""")
        with prometheus:
            up = 'up{job="mailbridge"}'
            wait_for(lambda: prometheus.scalar(up) == 1, timeout=15, interval=0.2,
                     message=lambda: f"not scraped: {prometheus.query(up)}\n{prometheus.log()}")
            attainment = ('1 - sum(mailbridge_sla_breaches_total{sla="first_response"}) '
                          '/ sum(mailbridge_sla_evaluations_total{sla="first_response"})')
            evaluated = 'sum(mailbridge_sla_evaluations_total{sla="first_response"})'
            wait_for(lambda: prometheus.scalar(evaluated) == 3, timeout=15, interval=0.2,
                     message=lambda: f"{prometheus.query(evaluated)}\n{daemon.log()}")
            assert prometheus.scalar('sum(mailbridge_acks_sent_total{job="mailbridge"})') == 3
            assert prometheus.scalar(attainment) == pytest.approx(2 / 3)
            by_policy = {r["metric"]["policy"]: float(r["value"][1]) for r in prometheus.query(
                '1 - sum by (policy) (mailbridge_sla_breaches_total{sla="first_response"}) '
                '/ sum by (policy) (mailbridge_sla_evaluations_total{sla="first_response"})')}
            assert by_policy == {"default": 1.0, "vip": 0.0}
            within_target = prometheus.scalar(
                'sum(mailbridge_sla_elapsed_business_seconds_bucket{sla="first_response",'
                'priority="normal",le="14400.0"}) / sum(mailbridge_sla_elapsed_business_seconds'
                '_count{sla="first_response",priority="normal"})')
            assert within_target == 1.0, "the 4h target is a bucket bound"
            objective = "policy_priority_sla:mailbridge_sla_objective:ratio"
            wait_for(lambda: prometheus.query(objective), timeout=10, interval=0.2,
                     message="recording rules not evaluated")
            assert {r["metric"]["policy"]: float(r["value"][1])
                    for r in prometheus.query(objective)} == {"default": 0.95, "vip": 0.99}
            groups = prometheus.api("rules")["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            assert len(rules) >= 16
            assert all(rule["health"] in ("ok", "unknown") for rule in rules), [
                (r["name"], r.get("lastError")) for r in rules if r["health"] == "err"]
