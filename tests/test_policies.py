"""build_policies: the calendars and policies of a configuration as core objects."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from mailbridge.config import Config, demo_config, load_config
from mailbridge.core import calendar as cal
from mailbridge.core.model import Address, InboundMessage
from mailbridge.daemon.policies import build_policies
from tests.configs import MINIMAL

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"


@pytest.fixture
def example(tmp_path: Path) -> Config:
    (tmp_path / "imap-password").write_text("imap-secret\n")
    (tmp_path / "smtp-password").write_text("smtp-secret\n")
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path), "STATE_DIRECTORY": str(tmp_path)}
    return load_config(EXAMPLE, environ=environ)


def message(addr: str, subject: str = "Help") -> InboundMessage:
    return InboundMessage(
        message_id="<1@example.org>", from_=(Address("", addr),), sender=None, reply_to=(),
        to=(Address("", "support@example.com"),), cc=(), return_path=addr, subject=subject,
        date=None, in_reply_to=(), references=())


def test_example_calendars(example: Config) -> None:
    """The example has the built-in 24/7 calendar and the Berlin office calendar."""
    policies = build_policies(example)
    assert set(policies.calendars) == {"24/7", "office"}
    always = policies.calendars["24/7"]
    assert always.always_open and always.timezone == "Europe/Berlin"
    office = policies.calendars["office"]
    assert (office.timezone, office.holiday_country, office.holiday_subdivision) == (
        "Europe/Berlin", "DE", "BE")
    assert office.hours[0] == ((time(9), time(17)),) and 5 not in office.hours
    assert date(2026, 12, 24) in office.closed
    assert cal.is_holiday(office, date(2026, 3, 8))  # Internationaler Frauentag, Berlin only
    monday_nine = datetime(2026, 11, 30, 8, tzinfo=UTC)  # 09:00 in Berlin
    friday_late = datetime(2026, 11, 27, 13, 30, tzinfo=UTC)  # 14:30, half an hour to close
    assert cal.add_business_time(office, friday_late, timedelta(hours=1)) == (
        monday_nine + timedelta(minutes=30))


def test_example_policies(example: Config) -> None:
    """The example has the default policy from [sla] and the vip policy, in that order."""
    policies = build_policies(example)
    default, (vip,) = policies.default, policies.policies
    assert (default.name, default.priority, default.first_response) == (
        "default", "normal", timedelta(hours=4))
    assert default.calendar is policies.calendars["24/7"]
    # No next_response in [sla]: a follow-up is due within first_response.
    assert (default.next_response, default.escalate_to, default.objective) == (
        timedelta(hours=4), None, 0.95)
    assert (vip.name, vip.priority, vip.first_response, vip.next_response) == (
        "vip", "high", timedelta(hours=1), timedelta(hours=2))
    assert (vip.periodic_update, vip.resolution, vip.objective) == (
        timedelta(hours=4), timedelta(days=2), 0.98)
    assert vip.calendar is policies.calendars["office"]
    assert vip.escalate_to == "support-lead@example.com"
    assert vip.match.senders == ("*@bigcustomer.example", "ceo@example.org")
    assert dict(policies.by_name) == {"default": default, "vip": vip}


def test_next_response_defaults_to_first_response(tmp_path: Path) -> None:
    """Policies without next_response get their own first_response; explicit ones stay."""
    path = tmp_path / "mailbridge.toml"
    path.write_text(MINIMAL + '[sla]\nfirst_response = "2h"\n'
                    '[[policies]]\nname = "vip"\nfirst_response = "1h"\n'
                    '[[policies]]\nname = "slow"\nfirst_response = "1d"\n'
                    'next_response = "3h"\n')
    policies = build_policies(load_config(path, environ={"STATE_DIRECTORY": str(tmp_path)}))
    assert [p.next_response for p in (policies.default, *policies.policies)] == [
        timedelta(hours=2), timedelta(hours=1), timedelta(hours=3)]


def test_example_choose(example: Config) -> None:
    """choose() gives vip to the big customer and to outages, the default to the rest."""
    policies = build_policies(example)
    vip = policies.by_name["vip"]
    assert policies.choose(message("ana@bigcustomer.example"), "INBOX") == (
        vip, "sender matches *@bigcustomer.example")
    assert policies.choose(message("bo@example.net", "Site down?"), "INBOX")[0] is vip
    assert policies.choose(message("bo@example.net"), "INBOX") == (
        policies.default, "default policy")


def test_defaults_fill_in(tmp_path: Path) -> None:
    """A calendar without a zone takes [support]'s; a policy without one takes [sla]'s."""
    base = demo_config(tmp_path).model_dump()
    base["sla"] = {"calendar": "office"}
    base["calendars"] = [{"name": "office", "hours": {"mon": ["08:00-12:00"]}}]
    base["policies"] = [{"name": "fast", "first_response": "30m",
                         "match": {"keywords": ["outage"]}}]
    policies = build_policies(Config.model_validate(base))
    assert policies.calendars["office"].timezone == "Europe/Berlin"
    assert policies.default.calendar is policies.calendars["office"]
    assert policies.by_name["fast"].calendar is policies.calendars["office"]


def test_demo_config_has_only_the_default(tmp_path: Path) -> None:
    """Without [[policies]], every message gets the default policy on the 24/7 calendar."""
    policies = build_policies(demo_config(tmp_path))
    assert policies.policies == () and set(policies.by_name) == {"default"}
    assert policies.default.calendar.always_open
