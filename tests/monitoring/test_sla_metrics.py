"""SLA counters, the elapsed-time histogram and the scrape-time store gauges."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from email.utils import make_msgid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import text, update

from mailbridge import __version__
from mailbridge.clock import FakeClock
from mailbridge.config import Config, load_config
from mailbridge.core.rules import RULES
from mailbridge.daemon.ingest import Ingestor, Outcome, Source
from mailbridge.daemon.policies import build_policies
from mailbridge.mail.parse import parse_message
from mailbridge.metrics.collector import StoreCollector
from mailbridge.metrics.families import SLA_LADDER, Metrics, sla_buckets
from mailbridge.store.db import Store
from mailbridge.store.engine import engine_for
from mailbridge.store.statements import THREADS
from tests.configs import MINIMAL
from tests.mails import TRUSTED_RULES, VOUCHED, customer_mail, reply_to

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CONFIG = MINIMAL + TRUSTED_RULES + """
[sla]
first_response = "4h"
at_risk_horizon = "1h"

[[policies]]
name = "vip"
priority = "high"
first_response = "1h30m"
next_response = "2h"
resolution = "1d"
objective = 0.99

[policies.match]
senders = ["*@vip.example"]
"""


def agent_reply(original: bytes) -> bytes:
    """Dana's answer to `original`, as her mail client sends it (Cc support)."""
    parent = message_from_bytes(original, policy=default)
    msg = EmailMessage()
    msg["Return-Path"] = "<dana@example.com>"
    msg["Authentication-Results"] = VOUCHED
    msg["From"] = "Dana Whitfield <dana@example.com>"
    msg["To"] = str(parent["From"])
    msg["Cc"] = "support@example.com"
    msg["Subject"] = "Re: " + str(parent["Subject"])
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg["In-Reply-To"] = str(parent["Message-ID"])
    msg["References"] = str(parent["Message-ID"])
    msg.set_content("Done.")
    return msg.as_bytes()


class Desk:
    """Ingest, scheduler and metrics on one SQLite file, on a fake clock."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        path = tmp_path / "mailbridge.toml"
        path.write_text(CONFIG + f'\n[daemon]\nstate_dir = "{tmp_path}"\n', encoding="utf-8")
        self.config = load_config(path)
        self.store = Store.open(url)
        self.clock = FakeClock(T0)
        self.ingestor = Ingestor.create(self.config, self.store, self.clock)
        policies = build_policies(self.config)
        self.policies = (policies.default, *policies.policies)
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry, ["INBOX"], self.policies)
        self.ingestor.deadlines.on_outcome = self.metrics.sla_outcome
        self.collector = StoreCollector(self.store, self.policies, horizon=timedelta(hours=1),
                                        now=self.clock.now)
        self.registry.register(self.collector)
        self.uid = 0

    def feed(self, raw: bytes, at: datetime) -> Outcome:
        self.uid += 1
        self.clock.set(at)
        return self.ingestor.ingest(parse_message(raw), Source("INBOX", 1, self.uid),
                                    received=at, now=at)

    def answer(self, original: bytes, at: datetime) -> Outcome:
        outcome = self.feed(agent_reply(original), at)
        assert outcome.verdict.rule == "agent_reply", outcome.verdict
        return outcome

    def tick(self, at: datetime) -> None:
        self.clock.set(at)
        while self.ingestor.deadlines.run_due(at):
            pass

    def value(self, name: str, **labels: str) -> float:
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found


@pytest.fixture(params=["sqlite", "postgresql"])
def desk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Desk]:
    """The same desk on a SQLite file and on a fresh PostgreSQL database."""
    url = f"sqlite:///{tmp_path}/store.sqlite3" if request.param == "sqlite" \
        else str(request.getfixturevalue("postgres_url"))
    opened = Desk(tmp_path, url)
    yield opened
    opened.store.close()


def sqlite_only(desk: Desk) -> None:
    if desk.store.engine.dialect.name != "sqlite":
        pytest.skip("about SQLite's locking and query plans")


def load_config_text(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "mailbridge.toml"
    path.write_text(text + f'\n[daemon]\nstate_dir = "{tmp_path}"\n', encoding="utf-8")
    return load_config(path)


def test_targets_are_exact_bucket_bounds(tmp_path: Path) -> None:
    """The histogram's buckets are the ladder plus every configured target."""
    policies = build_policies(load_config_text(tmp_path, CONFIG))
    buckets = sla_buckets((policies.default, *policies.policies))
    assert set(SLA_LADDER) <= set(buckets)
    assert {5400.0, 7200.0, 14400.0, 86400.0} <= set(buckets)
    assert list(buckets) == sorted(buckets)


def test_met_breached_and_late_answers_are_each_counted_once(desk: Desk) -> None:
    """An answer in time is one evaluation; a breach is counted at the deadline, and a late
    answer the scheduler had not yet seen is counted as one, never twice."""
    fr = {"sla": "first_response"}
    ana = customer_mail(1, addr="ana@example.org")
    bob = customer_mail(2, name="Bob", addr="bob@vip.example")
    cy = customer_mail(3, name="Cy", addr="cy@vip.example")
    for raw in (ana, bob, cy):
        desk.feed(raw, T0)
    desk.answer(ana, T0 + timedelta(hours=1))
    assert desk.value("mailbridge_sla_evaluations_total", **fr, policy="default",
                      priority="normal") == 1
    assert desk.value("mailbridge_sla_breaches_total", **fr, policy="default",
                      priority="normal") == 0
    desk.tick(T0 + timedelta(hours=1, minutes=31))  # bob and cy breach at 1h30m
    vip = {**fr, "policy": "vip", "priority": "high"}
    assert desk.value("mailbridge_sla_evaluations_total", **vip) == 2
    assert desk.value("mailbridge_sla_breaches_total", **vip) == 2
    desk.answer(bob, T0 + timedelta(hours=2))
    assert desk.value("mailbridge_sla_evaluations_total", **vip) == 2, "no second count"
    desk.tick(T0 + timedelta(hours=3))
    assert desk.value("mailbridge_sla_breaches_total", **vip) == 2, "a breach is counted once"
    bucket = "mailbridge_sla_elapsed_business_seconds_bucket"
    assert desk.value(bucket, sla="first_response", priority="normal", le="3600.0") == 1
    assert desk.value(bucket, sla="first_response", priority="high", le="5400.0") == 0
    assert desk.value(bucket, sla="first_response", priority="high", le="7200.0") == 1
    assert desk.value("mailbridge_sla_elapsed_business_seconds_count", sla="first_response",
                      priority="high") == 1


def test_a_late_answer_before_the_scheduler_runs_is_a_breach(desk: Desk) -> None:
    """When the answer comes after the deadline but before any tick, it is evaluated and
    breached at once, and the scheduler does not count it again."""
    bob = customer_mail(2, name="Bob", addr="bob@vip.example")
    desk.feed(bob, T0)
    desk.answer(bob, T0 + timedelta(hours=3))
    desk.tick(T0 + timedelta(hours=4))
    vip = {"sla": "first_response", "policy": "vip", "priority": "high"}
    assert desk.value("mailbridge_sla_evaluations_total", **vip) == 1
    assert desk.value("mailbridge_sla_breaches_total", **vip) == 1


def test_next_response_and_resolution_are_evaluated(desk: Desk) -> None:
    """A follow-up answered in time is a met next response; a quiet thread that resolves
    within its resolution target is a met resolution."""
    bob = customer_mail(2, name="Bob", addr="bob@vip.example")
    desk.feed(bob, T0)
    desk.answer(bob, T0 + timedelta(minutes=30))
    desk.feed(reply_to(bob), T0 + timedelta(hours=1))
    desk.answer(bob, T0 + timedelta(hours=2))
    desk.tick(T0 + timedelta(days=20))
    vip = {"policy": "vip", "priority": "high"}
    for kind in ("first_response", "next_response", "resolution"):
        assert desk.value("mailbridge_sla_evaluations_total", sla=kind, **vip) == 1, kind
        assert desk.value("mailbridge_sla_breaches_total", sla=kind, **vip) == 0, kind
    assert desk.value("mailbridge_sla_elapsed_business_seconds_sum", sla="resolution",
                      priority="high") == 90 * 60


def test_outcomes_are_counted_only_after_commit(desk: Desk) -> None:
    """A transaction that rolls back counts nothing."""
    called: list[str] = []
    with pytest.raises(RuntimeError), desk.store.transaction() as tx:
        tx.after_commit(lambda: called.append("rolled back"))
        raise RuntimeError("boom")
    with desk.store.transaction() as tx:
        tx.after_commit(lambda: called.append("committed"))
        assert called == []
    assert called == ["committed"]


def test_config_gauges_are_exported(desk: Desk) -> None:
    """Targets and objectives are gauges, per SLA kind the policy has."""
    assert desk.value("mailbridge_sla_target_business_seconds", sla="first_response",
                      policy="vip", priority="high") == 5400
    assert desk.value("mailbridge_sla_objective_ratio", sla="resolution", policy="vip",
                      priority="high") == 0.99
    assert desk.value("mailbridge_sla_objective_ratio", sla="first_response",
                      policy="default", priority="normal") == 0.95
    assert desk.registry.get_sample_value("mailbridge_sla_target_business_seconds", {
        "sla": "resolution", "policy": "default", "priority": "normal"}) is None
    assert desk.value("mailbridge_config_last_reload_successful") == 0  # set by the service
    assert desk.value("mailbridge_build_info", version=__version__,
                      python=platform.python_version()) == 1


def test_store_gauges_count_open_overdue_at_risk_and_oldest(desk: Desk) -> None:
    """At scrape time the store gives open threads by state, overdue and at-risk threads,
    the oldest unanswered message and the outbox."""
    late = customer_mail(1, addr="a@example.org")
    desk.feed(late, T0 - timedelta(hours=1))                          # due T0+3h
    desk.feed(customer_mail(2, addr="b@example.org"), T0)             # due T0+4h
    desk.feed(customer_mail(3, addr="c@example.org"), T0 + timedelta(hours=2))  # due T0+6h
    answered = customer_mail(4, addr="d@example.org")
    desk.feed(answered, T0)
    desk.answer(answered, T0 + timedelta(minutes=10))
    desk.feed(customer_mail(5, name="V", addr="v@vip.example"), T0 + timedelta(hours=3))
    desk.clock.set(T0 + timedelta(hours=3, minutes=30))
    default = {"policy": "default", "priority": "normal"}
    vip = {"policy": "vip", "priority": "high"}
    assert desk.value("mailbridge_threads_open", state="awaiting_agent", **default) == 3
    assert desk.value("mailbridge_threads_open", state="awaiting_customer", **default) == 1
    assert desk.value("mailbridge_threads_open", state="awaiting_agent", **vip) == 1
    assert desk.value("mailbridge_threads_overdue", sla="first_response", **default) == 1
    assert desk.value("mailbridge_threads_at_risk", sla="first_response", **default) == 1
    assert desk.value("mailbridge_threads_at_risk", sla="first_response", **vip) == 1
    assert desk.value("mailbridge_threads_at_risk", sla="resolution", **vip) == 0
    assert desk.value("mailbridge_threads_overdue", sla="resolution", **vip) == 0
    assert desk.value("mailbridge_oldest_unanswered_age_seconds", **default) == 4.5 * 3600
    assert desk.value("mailbridge_oldest_unanswered_age_seconds", **vip) == 30 * 60
    assert desk.value("mailbridge_outbox_depth") == 5
    assert desk.value("mailbridge_outbox_oldest_age_seconds") == 4.5 * 3600
    assert desk.value("mailbridge_scrape_store_success") == 1
    # A policy removed from the configuration counts under "default", as the scheduler sees it.
    with desk.store.transaction() as tx:
        tx.session.connection().execute(
            update(THREADS).where(THREADS.c.customer == "v@vip.example").values(policy="gone"))
    assert desk.value("mailbridge_threads_open", state="awaiting_agent", **default) == 4
    assert desk.value("mailbridge_threads_open", state="awaiting_agent", **vip) == 0
    assert desk.value("mailbridge_threads_at_risk", sla="first_response", **default) == 2


def test_quiet_series_read_zero_and_labels_are_bounded(desk: Desk) -> None:
    """Every configured series is exported at 0, and every label value comes from the
    configuration or a fixed set."""
    assert desk.value("mailbridge_threads_overdue", sla="next_response", policy="vip",
                      priority="high") == 0
    assert desk.registry.get_sample_value("mailbridge_acks_suppressed_total", {
        "mailbox": "INBOX", "reason": "auto_submitted"}) == 0
    allowed = {"policy": {"default", "vip"}, "priority": {"normal", "high"},
               "sla": {"first_response", "next_response", "resolution"},
               "state": {"awaiting_agent", "awaiting_customer"}, "mailbox": {"INBOX"},
               "reason": {name for name, _ in RULES} | {"smtp_temporary", "smtp_permanent",
                                                        "interrupted", "internal"}}
    for family in desk.registry.collect():
        for sample in family.samples:
            for key, value in sample.labels.items():
                if key in allowed:
                    assert value in allowed[key], (sample.name, key, value)


def test_suppressions_and_deliveries_are_counted_by_kind(desk: Desk) -> None:
    """A message's rule counts as a suppression reason; scheduler mail is not an ack."""
    desk.metrics.message("INBOX", "auto_reply")
    desk.metrics.message("INBOX", "new_thread")
    desk.metrics.delivered("ack", "INBOX", 1.5)
    desk.metrics.delivered("update-1", "scheduler", 0.0)
    desk.metrics.failed("escalation-first_response-20261123T1000", "scheduler",
                        "smtp_permanent")
    assert desk.value("mailbridge_acks_suppressed_total", mailbox="INBOX",
                      reason="auto_reply") == 1
    assert desk.value("mailbridge_messages_received_total", mailbox="INBOX",
                      kind="automatic") == 1
    assert desk.value("mailbridge_acks_sent_total", mailbox="INBOX") == 1
    assert desk.value("mailbridge_ack_latency_seconds_count", mailbox="INBOX") == 1
    assert desk.value("mailbridge_notices_sent_total", kind="update") == 1
    assert desk.value("mailbridge_notice_failures_total", kind="escalation",
                      reason="smtp_permanent") == 1
    assert b'mailbox="scheduler"' not in generate_latest(desk.registry)


def test_an_unreadable_store_is_reported_not_raised(tmp_path: Path) -> None:
    """When the store cannot be read the scrape still works and says so."""
    store = Store(engine_for(f"sqlite:///{tmp_path}/missing/dir/store.sqlite3"))
    registry = CollectorRegistry()
    policies = build_policies(load_config_text(tmp_path, CONFIG))
    registry.register(StoreCollector(store, (policies.default,), horizon=timedelta(hours=1),
                                     now=lambda: T0))
    output = generate_latest(registry).decode()
    assert "mailbridge_scrape_store_success 0.0" in output
    assert "mailbridge_threads_open" not in output


def test_scrape_reads_without_the_write_lock(desk: Desk) -> None:
    """A scrape during a write transaction neither waits for it nor sees it uncommitted."""
    desk.feed(customer_mail(1), T0)
    with desk.store.transaction() as tx:
        tx.session.connection().execute(text("UPDATE threads SET state = 'resolved'"))
        assert desk.value("mailbridge_threads_open", state="awaiting_agent",
                          policy="default", priority="normal") == 1


def test_the_scrape_query_reads_only_the_covering_index(desk: Desk) -> None:
    """SQLite answers the open-thread query from ix_threads_open_sla alone, skipping
    resolved threads, without a temporary sort."""
    from mailbridge.store.snapshot import threads_query

    sqlite_only(desk)
    compiled = threads_query(T0, timedelta(hours=1)).compile(
        dialect=desk.store.engine.dialect, compile_kwargs={"render_postcompile": True})
    params = tuple("2026-11-23 09:00:00.000000" if isinstance(value, datetime) else value
                   for value in (compiled.params[key] for key in compiled.positiontup or ()))
    with desk.store.engine.connect() as conn:
        plan = [str(row[-1]) for row in conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {compiled}", params)]
    assert any("COVERING INDEX ix_threads_open_sla" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
