"""Every metric mailbridge exports, defined once, on a registry given to it.

Public API: `Metrics`, `sla_targets(policy)`, `sla_buckets(policies)` and the fixed label
sets (`MESSAGE_KINDS`, `SUPPRESSION_REASONS`, `FAILURE_REASONS`, `NOTICE_KINDS`,
`SLA_KINDS`, `COMPONENTS`, `COPY_OUTCOMES`, `PUSH_OUTCOMES`, `BOUNCE_KINDS`). Labels are
bounded and come from configuration (mailbox, policy and priority names) or from these
fixed sets: never an address, a subject or a thread id. The gauges read from the store at
scrape time live in `mailbridge.metrics.collector`.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)

from mailbridge import __version__
from mailbridge.core.bounces import KINDS as BOUNCE_KINDS
from mailbridge.core.model import SlaOutcome
from mailbridge.core.policy import Policy
from mailbridge.core.rules import RULES

MESSAGE_KINDS = ("customer", "follow_up", "agent", "automatic", "bounce", "ignored", "error")
FAILURE_REASONS = ("smtp_temporary", "smtp_permanent", "interrupted", "internal")
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0)
SUPPRESSION_REASONS = tuple(name for name, _rule in RULES)
"""Why a message got no acknowledgement: the name of the rule that said no."""
NOTICE_KINDS = ("update", "nudge", "escalation", "other")
"""Scheduler mail: status updates to customers, nudges to agents, escalations to leads."""
SLA_KINDS = ("first_response", "next_response", "resolution")
COPY_OUTCOMES = ("appended", "missing_folder", "refused", "unavailable")
"""What an attempt to copy sent mail to the Sent folder came to (`io.sent_folder`)."""
PUSH_OUTCOMES = ("woken", "not_watched", "ignored_event", "unauthorized", "malformed")
"""What became of a push from the mail server (`io.push`)."""
COMPONENTS = ("sender", "scheduler", "membership", "relay", "watcher", "retention",
              "sent_copy", "oauth2")
"""The daemon's supervised parts (`mailbridge.daemon.supervisor`); one "watcher" for all."""
SLA_LADDER = (300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 57600.0, 86400.0,
              144000.0, 288000.0)
"""Business seconds from 5 minutes to 80 hours; every configured target is added to it."""


def sla_targets(policy: Policy) -> dict[str, timedelta]:
    """The policy's targets by SLA kind, for the kinds it has."""
    targets = {"first_response": policy.first_response, "next_response": policy.next_response,
               "resolution": policy.resolution}
    return {kind: target for kind, target in targets.items() if target is not None}


def sla_buckets(policies: Iterable[Policy]) -> tuple[float, ...]:
    """The ladder and every configured target, so attainment at a target is a bucket ratio."""
    targets = {t.total_seconds() for p in policies for t in sla_targets(p).values()}
    return tuple(sorted(set(SLA_LADDER) | targets))

# Which message kind each rule's "no" counts as.
KIND_BY_RULE = {
    "new_thread": "customer",
    "follow_up": "follow_up",
    "agent_reply": "agent",
    "agent_mail": "agent",
    "agent_command": "agent",
    "agent_command_error": "agent",
    "agent_auto_reply": "automatic",
    "auto_submitted": "automatic",
    "auto_reply": "automatic",
    "list": "automatic",
    "bulk": "automatic",
    "robot_sender": "automatic",
    "challenge": "automatic",
    "calendar_reply": "automatic",
    "loop": "automatic",
    "bounce": "bounce",
    "bounce_text": "bounce",
    "null_return_path": "bounce",
    "internal_error": "error",
}


def _by_outcome(registry: CollectorRegistry, name: str, documentation: str,
                outcomes: Iterable[str]) -> Counter:
    """A counter by a fixed set of outcomes, each series at 0 from the start."""
    counter = Counter(name, documentation, ["outcome"], registry=registry)
    for outcome in outcomes:
        counter.labels(outcome)
    return counter


class Metrics:
    """The daemon's metrics; pre-created for every configured mailbox and policy so they
    read 0 rather than being absent."""

    def __init__(self, registry: CollectorRegistry, mailboxes: Iterable[str],
                 policies: Sequence[Policy] = ()) -> None:
        # Process-wide: the _created series would only double the output.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry
        self.build_info = Info("mailbridge_build", "Version of mailbridge and Python.",
                               registry=registry)
        self.build_info.info({"version": __version__, "python": platform.python_version()})
        self.messages_received = Counter(
            "mailbridge_messages_received", "Inbound messages recorded, by kind.",
            ["mailbox", "kind"], registry=registry)
        self.acks_sent = Counter(
            "mailbridge_acks_sent", "Acknowledgements accepted by the SMTP server.",
            ["mailbox"], registry=registry)
        self.ack_failures = Counter(
            "mailbridge_ack_failures", "Failed acknowledgement delivery attempts, by reason.",
            ["mailbox", "reason"], registry=registry)
        self.ack_unknown = Counter(
            "mailbridge_ack_unknown",
            "Acknowledgements whose delivery is unknown: the SMTP connection timed out or "
            "closed after the end of the message, before the server's reply. Never sent "
            "again, so no customer gets two.", ["mailbox"], registry=registry)
        self.ack_latency = Histogram(
            "mailbridge_ack_latency_seconds",
            "Seconds from the message's arrival at the mail server (IMAP INTERNALDATE, "
            "whole seconds) to the acknowledgement being accepted by SMTP.",
            ["mailbox"], buckets=LATENCY_BUCKETS, registry=registry)
        self.imap_connected = Gauge(
            "mailbridge_imap_connected", "1 while the IMAP session for the mailbox is up.",
            ["mailbox"], registry=registry)
        self.imap_last_sync = Gauge(
            "mailbridge_imap_last_sync_timestamp_seconds",
            "Unix time of the last successful look at the mailbox.", ["mailbox"],
            registry=registry)
        self.imap_reconnects = Counter(
            "mailbridge_imap_reconnects", "IMAP connections lost or refused, then retried.",
            ["mailbox"], registry=registry)
        self.ack_bounces = Counter(
            "mailbridge_ack_bounces",
            "Bounces (delivery failures) and spam complaints about our mail to a customer, "
            "recorded on its thread: the customer's address may be broken.",
            ["mailbox", "kind"], registry=registry)
        self.acks_suppressed = Counter(
            "mailbridge_acks_suppressed",
            "Inbound messages that got no acknowledgement, by the rule that said no.",
            ["mailbox", "reason"], registry=registry)
        self.notices_sent = Counter(
            "mailbridge_notices_sent",
            "Scheduler mail accepted by the SMTP server: status updates, nudges, escalations.",
            ["kind"], registry=registry)
        self.notice_failures = Counter(
            "mailbridge_notice_failures", "Failed scheduler mail delivery attempts, by reason.",
            ["kind", "reason"], registry=registry)
        self.notice_unknown = Counter(
            "mailbridge_notice_unknown",
            "Scheduler mail whose delivery is unknown (no reply after the end of the "
            "message); never sent again.", ["kind"], registry=registry)
        self._sla_metrics(registry, policies)
        self.config_reload_ok = Gauge(
            "mailbridge_config_last_reload_successful",
            "1 if the configuration was last loaded without problems.", registry=registry)
        self.config_reload_time = Gauge(
            "mailbridge_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.", registry=registry)
        self.component_up = Gauge(
            "mailbridge_component_up",
            "1 while the part runs; 0 while it waits to restart after an error (for "
            "\"watcher\": while any mailbox's watcher does).", ["component"], registry=registry)
        self.component_restarts = Counter(
            "mailbridge_component_restarts",
            "Parts started again after an unexpected error (a bug), by part.", ["component"],
            registry=registry)
        self._retention_metrics(registry)
        self._oauth2_metrics(registry)
        self.sent_copies = _by_outcome(
            registry, "mailbridge_sent_copies",
            "Attempts to append a copy of mail a customer was sent to the Sent folder, by "
            "outcome (appended, missing_folder, refused, unavailable); failed ones are "
            "retried later.", COPY_OUTCOMES)
        self.push_notifications = _by_outcome(
            registry, "mailbridge_push_notifications",
            "Pushes from the mail server at /push/dovecot, by outcome: woken (a watcher "
            "looks at its mailbox now), not_watched (no watcher here has that user and "
            "folder), ignored_event, unauthorized, malformed.", PUSH_OUTCOMES)
        for mailbox in mailboxes:
            self.add_mailbox(mailbox)
        for kind in NOTICE_KINDS:
            self.notices_sent.labels(kind)
            self.notice_unknown.labels(kind)
            for reason in FAILURE_REASONS:
                self.notice_failures.labels(kind, reason)

    def _sla_metrics(self, registry: CollectorRegistry, policies: Sequence[Policy]) -> None:
        labels = ["sla", "policy", "priority"]
        self.sla_evaluations = Counter(
            "mailbridge_sla_evaluations",
            "SLA deadlines whose outcome is known: met when answered in time, breached when "
            "the deadline passed.", labels, registry=registry)
        self.sla_breaches = Counter(
            "mailbridge_sla_breaches",
            "SLA deadlines missed, counted when the deadline passed (or at a late answer the "
            "scheduler had not yet seen).", labels, registry=registry)
        self.sla_elapsed = Histogram(
            "mailbridge_sla_elapsed_business_seconds",
            "Business seconds from the customer's message to the agent's answer (first or "
            "next response), or to resolution; every configured target is a bucket bound.",
            ["sla", "priority"], buckets=sla_buckets(policies), registry=registry)
        self.sla_target = Gauge(
            "mailbridge_sla_target_business_seconds",
            "The configured target of each SLA of each policy, in business seconds.",
            labels, registry=registry)
        self.sla_objective = Gauge(
            "mailbridge_sla_objective_ratio",
            "The configured share of deadlines each policy should meet (its objective).",
            labels, registry=registry)
        self.add_policies(policies)

    def replace_policies(self, before: Sequence[Policy], after: Sequence[Policy]) -> None:
        """After a reload: the targets and objectives of the policies now configured; those
        of a policy no longer configured are dropped (its counters keep their history)."""
        def series(policies: Sequence[Policy]) -> set[tuple[str, str, str]]:
            return {(kind, p.name, p.priority) for p in policies for kind in sla_targets(p)}

        for gone in series(before) - series(after):
            self.sla_target.remove(*gone)
            self.sla_objective.remove(*gone)
        self.add_policies(after)

    def add_policies(self, policies: Sequence[Policy]) -> None:
        """Pre-create the series of these policies and set their targets and objectives."""
        for policy in policies:
            for kind, target in sla_targets(policy).items():
                series = (kind, policy.name, policy.priority)
                self.sla_evaluations.labels(*series)
                self.sla_breaches.labels(*series)
                self.sla_elapsed.labels(kind, policy.priority)
                self.sla_target.labels(*series).set(target.total_seconds())
                self.sla_objective.labels(*series).set(policy.objective)

    def _retention_metrics(self, registry: CollectorRegistry) -> None:
        self.pruned_threads = Counter(
            "mailbridge_pruned_threads",
            "Resolved threads deleted with their messages, history and outbox rows once "
            "[store] retention had passed since their resolution.", registry=registry)
        self.pruned_messages = Counter(
            "mailbridge_pruned_messages",
            "Messages deleted by retention: those of pruned threads and mail no thread took.",
            registry=registry)
        self.retention_last_run = Gauge(
            "mailbridge_retention_last_run_timestamp_seconds",
            "Unix time the last pruning run (daily) finished.", registry=registry)

    def _oauth2_metrics(self, registry: CollectorRegistry) -> None:
        self.oauth2_refresh_failures = Counter(
            "mailbridge_oauth2_refresh_failures",
            "Failed refreshes of the [oauth2] access token, by reason (the provider's error "
            "code, as invalid_grant, or unreachable, bad_response, ...); retried with backoff.",
            ["reason"], registry=registry)
        self.oauth2_token_expiry = Gauge(
            "mailbridge_oauth2_token_expiry_timestamp_seconds",
            "Unix time the [oauth2] access token held expires.", registry=registry)

    def oauth2_enabled(self, reasons: Iterable[str]) -> None:
        """An [oauth2] grant is in use: its failure series start at zero."""
        for reason in reasons:
            self.oauth2_refresh_failures.labels(reason)

    def oauth2_failed(self, reason: str) -> None:
        self.oauth2_refresh_failures.labels(reason).inc()

    def oauth2_expiry(self, timestamp: float) -> None:
        self.oauth2_token_expiry.set(timestamp)

    def pruned(self, *, threads: int, messages: int) -> None:
        """A pruning step deleted these (`mailbridge.daemon.retention`)."""
        self.pruned_threads.inc(threads)
        self.pruned_messages.inc(messages)

    def add_mailbox(self, mailbox: str) -> None:
        for kind in MESSAGE_KINDS:
            self.messages_received.labels(mailbox, kind)
        for reason in FAILURE_REASONS:
            self.ack_failures.labels(mailbox, reason)
        for reason in SUPPRESSION_REASONS:
            self.acks_suppressed.labels(mailbox, reason)
        for kind in BOUNCE_KINDS:
            self.ack_bounces.labels(mailbox, kind)
        self.acks_sent.labels(mailbox)
        self.ack_unknown.labels(mailbox)
        self.ack_latency.labels(mailbox)
        self.imap_connected.labels(mailbox)
        self.imap_reconnects.labels(mailbox)

    def message(self, mailbox: str, rule: str) -> None:
        """One inbound message recorded; `rule` is the rule of its verdict."""
        self.messages_received.labels(mailbox, KIND_BY_RULE.get(rule, "ignored")).inc()
        if rule in SUPPRESSION_REASONS:
            self.acks_suppressed.labels(mailbox, rule).inc()

    def delivered(self, kind: str, mailbox: str, latency: float) -> None:
        """An outbox item was accepted by SMTP; `latency` counts from the message's arrival."""
        if kind == "ack":
            self.acks_sent.labels(mailbox).inc()
            self.ack_latency.labels(mailbox).observe(latency)
        else:
            self.notices_sent.labels(_notice_kind(kind)).inc()

    def failed(self, kind: str, mailbox: str, reason: str) -> None:
        """A delivery attempt of an outbox item failed, for `reason` (FAILURE_REASONS)."""
        if kind == "ack":
            self.ack_failures.labels(mailbox, reason).inc()
        else:
            self.notice_failures.labels(_notice_kind(kind), reason).inc()

    def unknown(self, kind: str, mailbox: str) -> None:
        """An outbox item may or may not have been delivered; it is not sent again."""
        if kind == "ack":
            self.ack_unknown.labels(mailbox).inc()
        else:
            self.notice_unknown.labels(_notice_kind(kind)).inc()

    def sla_outcome(self, outcome: SlaOutcome) -> None:
        """A deadline met or breached, or an answer timed (`mailbridge.daemon.deadlines`)."""
        series = (outcome.sla, outcome.policy, outcome.priority)
        if outcome.evaluated:
            self.sla_evaluations.labels(*series).inc()
        if outcome.breached:
            self.sla_breaches.labels(*series).inc()
        if outcome.business_seconds is not None:
            self.sla_elapsed.labels(outcome.sla, outcome.priority).observe(
                max(0.0, outcome.business_seconds))

    def config_loaded(self, at: datetime) -> None:
        """The configuration in use was loaded without problems at `at`."""
        self.config_reload_ok.set(1)
        self.config_reload_time.set(at.timestamp())

    def config_refused(self) -> None:
        """A configuration reload found problems; the one in use stays."""
        self.config_reload_ok.set(0)


def _notice_kind(outbox_kind: str) -> str:
    """"update-1", "nudge-0", "escalation-first_response-..." -> a NOTICE_KINDS value."""
    kind = outbox_kind.split("-", 1)[0]
    return kind if kind in NOTICE_KINDS else "other"
