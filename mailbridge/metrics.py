"""Every metric mailbridge exports, defined once, on a registry given to it.

Public API: `Metrics`. Labels are bounded and come from configuration only
(mailbox names, outcome kinds): never an address, a subject or a thread id.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from mailbridge import __version__

MESSAGE_KINDS = ("customer", "follow_up", "agent", "automatic", "bounce", "ignored", "error")
FAILURE_REASONS = ("smtp_temporary", "smtp_permanent", "interrupted")
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0)

# Which message kind each rule's "no" counts as.
KIND_BY_RULE = {
    "new_thread": "customer",
    "follow_up": "follow_up",
    "agent_reply": "agent",
    "agent_mail": "agent",
    "agent_auto_reply": "automatic",
    "auto_submitted": "automatic",
    "auto_reply": "automatic",
    "list": "automatic",
    "bulk": "automatic",
    "robot_sender": "automatic",
    "loop": "automatic",
    "bounce": "bounce",
    "null_return_path": "bounce",
    "internal_error": "error",
}


class Metrics:
    """The daemon's metrics; pre-created for every configured mailbox so they read 0."""

    def __init__(self, registry: CollectorRegistry, mailboxes: Iterable[str]) -> None:
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
        for mailbox in mailboxes:
            self.add_mailbox(mailbox)

    def add_mailbox(self, mailbox: str) -> None:
        for kind in MESSAGE_KINDS:
            self.messages_received.labels(mailbox, kind)
        for reason in FAILURE_REASONS:
            self.ack_failures.labels(mailbox, reason)
        self.acks_sent.labels(mailbox)
        self.ack_latency.labels(mailbox)
        self.imap_connected.labels(mailbox)
        self.imap_reconnects.labels(mailbox)

    def message(self, mailbox: str, rule: str) -> None:
        self.messages_received.labels(mailbox, KIND_BY_RULE.get(rule, "ignored")).inc()
