"""Which robot mail reports a failure of our own mail, and what of ours it names."""

from __future__ import annotations

from dataclasses import replace

from mailbridge.core.bounces import failure_kind, named
from mailbridge.core.model import Address, InboundMessage, Report, Verdict
from mailbridge.core.rules import RuleContext, RulePolicy, evaluate

POLICY = RulePolicy(support_addresses=frozenset({"support@example.com"}))
DAEMON = Address("Mail Delivery System", "MAILER-DAEMON@mx.example.org")
ANA = Address("Ana Souza", "ana@example.org")
DSN_TYPE = "multipart/report; report-type=delivery-status; boundary=b"


def message(*, from_: Address = DAEMON, return_path: str | None = "", subject: str = "",
            content_type: str = "text/plain", content_header: str = "",
            headers: tuple[tuple[str, str], ...] = (), text: str = "",
            report: Report | None = None, in_reply_to: tuple[str, ...] = ()) -> InboundMessage:
    extra = (("content-type", content_header),) if content_header else ()
    return InboundMessage(
        message_id="<m-1@mx.example.org>", from_=(from_,), sender=None, reply_to=(),
        to=(Address("", "support@example.com"),), cc=(), return_path=return_path,
        subject=subject, date=None, in_reply_to=in_reply_to, references=(),
        headers=(*headers, *extra), content_type=content_type, text=text, report=report)


def kind(msg: InboundMessage) -> str | None:
    return failure_kind(msg, evaluate(msg, RuleContext(POLICY)))


def test_a_dsn_that_failed_is_a_bounce_and_one_that_is_delayed_is_not() -> None:
    """RFC 3464: Action: failed is a bounce; delayed (still being tried) or delivered is not."""
    failed = message(content_type="multipart/report", content_header=DSN_TYPE,
                     report=Report(actions=("failed",)))
    assert kind(failed) == "bounce"
    assert kind(replace(failed, report=Report(actions=("delayed",)))) is None
    assert kind(replace(failed, report=Report(actions=("delivered", "relayed")))) is None


def test_a_feedback_report_is_a_complaint_and_a_read_receipt_nothing() -> None:
    """ARF (RFC 5965) is a complaint; an MDN (a read receipt) says the mail arrived."""
    arf = message(from_=Address("", "staff@provider.example"), return_path="x@provider.example",
                  content_type="multipart/report",
                  content_header="multipart/report; report-type=feedback-report; boundary=b",
                  report=Report(returned=True))
    assert kind(arf) == "complaint"
    mdn = replace(arf, headers=(("content-type", "multipart/report; "
                                 "report-type=disposition-notification; boundary=b"),))
    assert kind(mdn) is None


def test_bounces_without_rfc_3464_structure() -> None:
    """X-Failed-Recipients, a returned message from a robot, or plain text from MAILER-DAEMON
    are bounces; a returned message with an abuse desk's subject is a complaint."""
    assert kind(message(headers=(("x-failed-recipients", "ana@example.org"),))) == "bounce"
    returned = message(subject="Returned Mail - Error During Delivery",
                       report=Report(returned=True, message_id="<ack@example.com>"))
    assert kind(returned) == "bounce"
    complaint = replace(returned, subject="complaint about message from 192.0.2.7",
                        from_=(Address("", "abuse@provider.example"),))
    assert kind(complaint) == "complaint"
    assert kind(message(subject="failure notice", text="Sorry, we couldn't deliver")) == "bounce"


def test_people_and_auto_replies_are_no_failure() -> None:
    """A person's mail, or an out-of-office (the address works), reports no failure."""
    person = message(from_=ANA, return_path="ana@example.org", text="Hi, about [#K7M2QD]")
    assert kind(person) is None
    away = message(from_=ANA, return_path="", subject="Out of Office: Re: Hi [#K7M2QD]",
                   in_reply_to=("<ack@example.com>",))
    verdict = evaluate(away, RuleContext(POLICY))
    assert (verdict.rule, failure_kind(away, verdict)) == ("auto_reply", None)
    assert failure_kind(person, Verdict(True, "new_thread", "a person")) is None


def test_what_a_bounce_names_of_ours_most_telling_first() -> None:
    """The returned message's Message-ID and references come first, then In-Reply-To, then
    ids in the text; thread references from the returned subject, the subject and the text."""
    msg = message(report=Report(returned=True, message_id="<ack@example.com>",
                                references=("<q@example.org>",), subject="Re: Hi [#K7M2QD]"),
                  in_reply_to=("<other@example.com>",),
                  text="Original-Message-ID: <ack@example.com>\nSee <x@example.net> [#PQ3RST]")
    found = named(msg)
    assert found.ids == ("<ack@example.com>", "<q@example.org>", "<other@example.com>",
                         "<x@example.net>")
    assert found.refs == ("K7M2QD", "PQ3RST")
