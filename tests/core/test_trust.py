"""Whether our mail server vouches for an agent's address (`core.trust`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailbridge.core.trust import aligned, notice_due, organizational_domain, vouch

OURS = "mx.example.com"
DANA = "dana@example.com"
# Our server's verdicts, in the shapes OpenDKIM/OpenDMARC, rspamd and Exchange write them.
DKIM_PASS = ("mx.example.com; dkim=pass (2048-bit key; unprotected) header.d=example.com "
             "header.i=@example.com header.a=rsa-sha256 header.s=2024 header.b=cCkHGzXN")
SPF_PASS = ("mx.example.com; spf=pass (mx.example.com: domain of dana@example.com designates "
            "192.0.2.7 as permitted sender) smtp.mailfrom=dana@example.com")
FORGED = ("mx.example.com; spf=fail (mx.example.com: domain of attacker@evil.example does not "
          "designate 203.0.113.9 as permitted sender) smtp.mailfrom=attacker@evil.example; "
          "dkim=none (message not signed)")


def test_dkim_pass_for_the_agents_domain_vouches() -> None:
    """Our dkim=pass with header.d the agent's domain is enough."""
    found = vouch([DKIM_PASS], address=DANA, authserv_id=OURS)
    assert found.trusted and found.why == "dkim=pass header.d=example.com"


def test_spf_pass_for_the_agents_domain_vouches() -> None:
    """Our spf=pass with an envelope sender of the agent's domain is enough."""
    assert vouch([SPF_PASS], address=DANA, authserv_id=OURS).trusted


def test_a_subdomain_or_parent_domain_aligns() -> None:
    """Relaxed alignment: a signature of mail.example.com vouches for example.com."""
    field = "mx.example.com; dkim=pass header.d=mail.example.com"
    assert vouch([field], address=DANA, authserv_id=OURS).trusted
    assert vouch([DKIM_PASS], address="dana@eu.example.com", authserv_id=OURS).trusted


def test_header_i_stands_in_for_a_missing_header_d() -> None:
    """Older servers name only header.i (gmail's samples): its domain counts."""
    field = "MX.EXAMPLE.COM; dkim=pass header.i=@example.com; spf=none smtp.helo=x"
    assert vouch([field], address=DANA, authserv_id=OURS).trusted


@pytest.mark.parametrize("field", [
    FORGED,
    "mx.example.com; dkim=pass header.d=evil.example",
    "mx.example.com; dkim=pass header.d=example.com.evil.example",
    "mx.example.com; dkim=fail header.d=example.com; spf=softfail smtp.mailfrom=dana@example.com",
    "mx.example.com; dmarc=pass header.from=example.com",
    "mx.example.com; spf=pass smtp.helo=example.com",
    "mx.example.com; none",
])
def test_no_aligned_pass_does_not_vouch(field: str) -> None:
    """Failures, other domains and methods other than dkim and spf vouch for nothing."""
    assert not vouch([field], address=DANA, authserv_id=OURS).trusted


def test_another_servers_field_counts_for_nothing() -> None:
    """A pass from any other authserv-id, as a sender can write it, is ignored."""
    forged = DKIM_PASS.replace("mx.example.com;", "mx.evil.example;")
    assert not vouch([forged], address=DANA, authserv_id=OURS).trusted
    assert not vouch([FORGED, forged], address=DANA, authserv_id=OURS).trusted


def test_only_the_topmost_field_of_ours_is_read() -> None:
    """A look-alike of our field below ours is the sender's: it cannot vouch."""
    assert not vouch([FORGED, DKIM_PASS], address=DANA, authserv_id=OURS).trusted
    other = "mx.other.example; dkim=fail header.d=example.com"
    assert vouch([other, DKIM_PASS, FORGED], address=DANA, authserv_id=OURS).trusted


def test_without_a_trusted_id_nothing_vouches() -> None:
    """With no [rules] trusted_authserv_id set, no field is believed."""
    found = vouch([DKIM_PASS], address=DANA, authserv_id="")
    assert not found.trusted and "trusted_authserv_id" in found.why
    assert not vouch([], address=DANA, authserv_id=OURS).trusted


@pytest.mark.parametrize(("domain", "org"), [
    ("example.com", "example.com"), ("mail.eu.example.com", "example.com"),
    ("mail.example.co.uk", "example.co.uk"), ("example.co.jp", "example.co.jp"),
    ("y.example.co.jp", "example.co.jp"), ("Example.COM.", "example.com"), ("com", "com"),
])
def test_organizational_domain(domain: str, org: str) -> None:
    """The last two labels, or three under a country code's common second level."""
    assert organizational_domain(domain) == org


def test_alignment_needs_the_same_organization() -> None:
    """co.uk is not an organization: two of its domains do not align."""
    assert aligned("a.example.co.uk", "example.co.uk")
    assert not aligned("example.co.uk", "other.co.uk")
    assert not aligned("", "example.com")


def test_a_notice_at_most_once_an_hour() -> None:
    """The next notice is due an hour after the last one, not earlier."""
    last = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert notice_due(None, last)
    assert not notice_due(last, last + timedelta(minutes=59))
    assert notice_due(last, last + timedelta(hours=1))
