"""Authentication-Results fields as real mail servers write them, read by `core.authres`."""

from __future__ import annotations

import pytest

from mailbridge.core.authres import AuthResult, parse

# Field values as found in real mail (sample corpora), folded where the servers fold them.
GMAIL = ("mx.google.com;\r\n       dkim=pass header.i=@googlemail.com header.s=20161025 "
         "header.b=MfBfLLZS;\r\n       spf=pass (google.com: best guess record for domain of "
         "postmaster@mail-sor-f69.google.com designates 209.85.220.69 as permitted sender) "
         "smtp.helo=mail-sor-f69.google.com;\r\n       dmarc=pass (p=QUARANTINE sp=QUARANTINE "
         "dis=NONE) header.from=googlemail.com")
HOTMAIL = ("hotmail.com; spf=none (sender IP is 65.54.190.29; identity alignment result is "
           "pass and alignment mode is relaxed) smtp.helo=BAY004-OMC1S18.hotmail.com; "
           "dkim=none (identity alignment result is pass and alignment mode is relaxed) "
           "header.d=mail.hotmail.com; x-hmca=none header.id=postmaster@mail.hotmail.com")
MIMECAST = ("feed.ef.example.org; dkim=pass (1024-bit key, unprotected) header.d=example.com "
            "header.i=@example.com header.a=rsa-sha256 header.s=mimecast20190719 "
            "header.b=cCkHGzXN")
OFFICE365 = ("spf=pass (sender IP is 104.47.124.209) "
             "smtp.helo=APC01-HK2-obe.outbound.protection.outlook.com; outlook.com; dkim=none "
             "(message not signed) header.d=none;outlook.com; dmarc=pass action=none "
             "header.from=outlook.com;")
YAHOO = ("mta508.mail.kks.y.example.co.jp from=y.example.co.jp; domainkeys=pass (ok); "
         "dkim=pass (ok); header.i=@y.example.co.jp")
MAILRU = ("f42.i.mail.ru; auth=pass smtp.auth=mailer-daemon@corp.mail.ru "
          "smtp.mailfrom=mailer-daemon@corp.mail.ru; iprev=pass policy.iprev=127.0.0.1")
NO_ID = "dmarc=fail (p=none; dis=none) header.from=example.org"


def test_several_results_with_comments_and_folding() -> None:
    """Each result keeps its properties; comments and folding are skipped."""
    field = parse(GMAIL)
    assert field.authserv_id == "mx.google.com"
    assert [(r.method, r.result) for r in field.results] == \
        [("dkim", "pass"), ("spf", "pass"), ("dmarc", "pass")]
    assert field.results[0].get("header.i") == "@googlemail.com"
    assert field.results[0].get("header.b") == "MfBfLLZS"
    assert field.results[1].get("smtp.helo") == "mail-sor-f69.google.com"
    assert field.results[2].get("header.from") == "googlemail.com"


def test_a_semicolon_inside_a_comment_does_not_split() -> None:
    """The ";" in "(sender IP is ...; identity ...)" belongs to the comment."""
    field = parse(HOTMAIL)
    assert [(r.method, r.result) for r in field.results] == \
        [("spf", "none"), ("dkim", "none"), ("x-hmca", "none")]
    assert field.results[1].get("header.d") == "mail.hotmail.com"


def test_all_properties_of_a_dkim_result() -> None:
    """header.d, header.i, header.a, header.s and header.b are read in order."""
    [dkim] = parse(MIMECAST).results
    assert dkim.get("header.d") == "example.com"
    assert [key for key, _ in dkim.properties] == \
        ["header.d", "header.i", "header.a", "header.s", "header.b"]


def test_a_field_without_an_authserv_id_names_nobody() -> None:
    """A field starting with a result (as Office 365 and some filters write) has no id."""
    assert parse(OFFICE365).authserv_id == ""
    assert parse(NO_ID).authserv_id == ""


def test_junk_after_the_id_makes_it_unreadable() -> None:
    """Text between the authserv-id and the first ";" is not a version: no id."""
    assert parse(YAHOO).authserv_id == ""


def test_a_malformed_result_is_dropped_and_reading_goes_on() -> None:
    """A result that does not parse is skipped up to the next ";"."""
    field = parse("mx.example.com; header.i=@x.example; dkim = pass header . d = example.com")
    assert field.results == (AuthResult("dkim", "pass", (("header.d", "example.com"),)),)


def test_case_version_quotes_and_reason() -> None:
    """Names are case-insensitive, a version follows the id, values may be quoted."""
    field = parse('MX.Example.COM 1; DKIM/1=PASS reason="good (sig)" Header.D="example.com"; '
                  'SPF=Pass smtp.MailFrom=Dana@Example.com')
    assert (field.authserv_id, field.version) == ("MX.Example.COM", "1")
    dkim, spf = field.results
    assert (dkim.method, dkim.result, dkim.reason) == ("dkim", "pass", "good (sig)")
    assert dkim.get("header.d") == "example.com"
    assert spf.get("smtp.mailfrom") == "Dana@Example.com"


def test_other_methods_and_no_result() -> None:
    """auth and iprev results are read; "none" means no result at all."""
    field = parse(MAILRU)
    assert [(r.method, r.result) for r in field.results] == [("auth", "pass"), ("iprev", "pass")]
    assert field.results[0].get("smtp.mailfrom") == "mailer-daemon@corp.mail.ru"
    assert parse("mx.example.com; none").results == ()
    assert parse("amazonses.com;").results == ()
    assert parse("mx.example.com").results == ()


@pytest.mark.parametrize("value", ["", "(", '"unclosed', "mx; (unclosed", "mx; dkim=",
                                   "mx; dkim=pass header.d=\"x", ";;;", "mx;;; ; dkim=pass"])
def test_broken_fields_never_raise(value: str) -> None:
    """Hostile or truncated values give what can be read and never raise."""
    parse(value)
