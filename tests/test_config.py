"""Tests of mailbridge.config: the example file, defaults, problems, secrets and durations."""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from mailbridge.config import (
    AgentSettings,
    CalendarSettings,
    Config,
    DaemonSettings,
    FaqMatchSettings,
    FaqSettings,
    HolidaySettings,
    HttpSettings,
    ImapSettings,
    MatchSettings,
    PolicySettings,
    RelaySettings,
    RulesSettings,
    Secret,
    SlaSettings,
    SmtpSettings,
    StoreSettings,
    SupportSettings,
    ThreadsSettings,
    demo_config,
    format_duration,
    load_config,
    parse_duration,
)
from mailbridge.config.oauth2 import OAuth2Settings
from mailbridge.config.problems import file_keys
from mailbridge.config.sections import TemplatesSettings
from mailbridge.errors import ConfigError
from tests.configs import MINIMAL

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"
NO_AGENTS = MINIMAL.split("[[agents]]", maxsplit=1)[0]
IMAP = MINIMAL + """
[imap]
host = "mail.example.com"
username = "support@example.com"
"""


def write(tmp_path: Path, text: str, name: str = "mailbridge.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, **environ: str) -> Config:
    environ.setdefault("STATE_DIRECTORY", str(tmp_path / "state"))
    return load_config(write(tmp_path, text), environ=environ)


def problems(tmp_path: Path, text: str, **environ: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, **environ)
    return caught.value


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    folder = tmp_path / "credentials"
    folder.mkdir()
    (folder / "imap-password").write_text("imap-secret-1\n")
    (folder / "smtp-password").write_text("smtp-secret-2\n")
    return folder


# -- the example file -------------------------------------------------------------------------


def test_example_loads(tmp_path: Path, credentials: Path) -> None:
    """The shipped example validates, with passwords taken from $CREDENTIALS_DIRECTORY."""
    environ = {"CREDENTIALS_DIRECTORY": str(credentials), "STATE_DIRECTORY": str(tmp_path)}
    config = load_config(EXAMPLE, environ=environ)
    assert config.path == EXAMPLE
    assert config.support.addresses == ("support@example.com", "help@example.com")
    assert [agent.name for agent in config.agents] == ["Dana Whitfield", "Sam Okafor"]
    assert config.imap is not None and config.smtp is not None
    assert config.imap.password.reveal() == "imap-secret-1"
    assert config.smtp.password is not None and config.smtp.password.reveal() == "smtp-secret-2"
    assert config.smtp.helo == "example.com"
    assert config.store.url == f"sqlite:///{tmp_path}/mailbridge.sqlite3"
    assert config.sla.first_response == timedelta(hours=4)
    assert config.imap.sent_folders == "auto"
    [office] = config.calendars
    assert (office.name, office.timezone, office.always_open) == (
        "office", "Europe/Berlin", False)
    assert office.hours is not None
    assert office.hours[1] == ((time(9), time(12)), (time(13), time(17)))
    assert office.hours[5] == office.hours[6] == ()
    assert office.holidays == HolidaySettings(country="DE", subdivision="BE")
    assert date(2026, 12, 24) in office.closed and date(2026, 12, 29) in office.closed
    [vip] = config.policies
    assert (vip.name, vip.calendar, vip.priority, vip.first_response) == (
        "vip", "office", "high", timedelta(hours=1))
    assert vip.match.senders == ("*@bigcustomer.example", "ceo@example.org")
    assert [p.pattern for p in vip.match.subject] == [r"(?i)\b(outage|down)\b"]


def test_example_documents_every_key() -> None:
    """Each key of each section and nested table appears in the example, set or commented out."""
    text = EXAMPLE.read_text(encoding="utf-8")
    documented: dict[str, set[str]] = {}
    section = ""
    for line in text.splitlines():
        if header := re.fullmatch(r"\[\[?([\w.]+)\]\]?", line):
            section = header[1]
            parent, _, table = section.rpartition(".")
            if parent:  # [calendars.hours] documents the key "hours" of [[calendars]]
                documented.setdefault(parent, set()).add(table)
        elif key := re.match(r"(?:# )?(\w+) = ", line):
            documented.setdefault(section, set()).add(key[1])
    sections: dict[str, type[BaseModel]] = {
        "support": SupportSettings, "agents": AgentSettings, "sla": SlaSettings,
        "calendars": CalendarSettings, "policies": PolicySettings, "faq": FaqSettings,
        "templates": TemplatesSettings, "rules": RulesSettings, "threads": ThreadsSettings,
        "imap": ImapSettings, "smtp": SmtpSettings, "relay": RelaySettings,
        "oauth2": OAuth2Settings, "store": StoreSettings,
        "http": HttpSettings, "daemon": DaemonSettings,
    }
    assert set(sections) == set(Config.model_fields) - {"path"}
    nested: dict[str, type[BaseModel]] = {
        "calendars.holidays": HolidaySettings, "policies.match": MatchSettings,
        "agents.holidays": HolidaySettings, "faq.match": FaqMatchSettings,
    }
    for name, model in {**sections, **nested}.items():
        extra = {"password_file"} if name in ("imap", "smtp") else set()
        if name == "http":  # secrets come from files only
            extra = {"bearer_token_file", "basic_auth_password_file", "push_password_file"}
        expected = (set(file_keys(model))
                    - {"bearer_token", "basic_auth_password", "push_password"}) | extra
        assert documented.get(name) == expected, name
    assert documented["calendars.hours"] == {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}


# -- defaults ---------------------------------------------------------------------------------


def test_minimal_file_takes_defaults(tmp_path: Path) -> None:
    """Only [support] and one agent are needed; every other value has a default."""
    config = load(tmp_path, MINIMAL)
    assert config.imap is None and config.smtp is None
    assert config.store.url == f"sqlite:///{tmp_path}/state/mailbridge.sqlite3"
    assert (config.http.listen, config.http.host, config.http.port) == (
        "127.0.0.1:9464", "127.0.0.1", 9464)
    assert config.support.timezone == "UTC" and config.support.domain == "example.com"
    assert config.sla.first_response == timedelta(hours=4)
    assert config.daemon.state_dir == tmp_path / "state"
    assert config.daemon.log_level == "info"
    assert config.daemon.shutdown_timeout == timedelta(seconds=10)
    assert config.calendars == () and config.policies == ()


@pytest.mark.parametrize(("smtp", "daemon", "expected"), [
    ("", "", 35),  # the default SMTP timeout, 30 s, and 5 s to record the outcome
    ('timeout = "90s"\n', "", 95),
    ('timeout = "2s"\n', "", 10),
    ('timeout = "90s"\n', 'shutdown_timeout = "20s"\n', 20),  # set: kept as written
])
def test_a_stop_waits_out_the_smtp_timeout_unless_told_otherwise(
        tmp_path: Path, smtp: str, daemon: str, expected: int) -> None:
    """Unset, [daemon] shutdown_timeout outlasts [smtp] timeout, so that a send waiting for
    the server's reply is recorded rather than cut off; a value in the file stays."""
    config = load(tmp_path, f'{MINIMAL}[smtp]\nhost = "mail.example.com"\n{smtp}'
                            f"[daemon]\n{daemon}")
    assert config.daemon.shutdown_timeout == timedelta(seconds=expected)


def test_sla_defaults(tmp_path: Path) -> None:
    """Without [sla] the default policy has only a first-response target, on "24/7"."""
    sla = load(tmp_path, MINIMAL).sla
    assert (sla.next_response, sla.periodic_update, sla.resolution) == (None, None, None)
    assert (sla.calendar, sla.escalate_to, sla.objective) == ("24/7", None, 0.95)
    assert (sla.status_update_before, sla.max_status_updates) == (timedelta(minutes=30), 2)
    assert (sla.eta_percentile, sla.eta_window, sla.eta_min_samples) == (
        80, timedelta(days=30), 10)
    assert sla.resolve_after_quiet == timedelta(days=14)
    assert sla.at_risk_horizon == timedelta(hours=1)


CALENDAR = """
[[calendars]]
name = "office"
[calendars.hours]
mon = ["09:00-17:00"]
"""


def office(line: str) -> str:
    """CALENDAR with one more key of the calendar itself (before its hours table)."""
    return CALENDAR.replace("[calendars.hours]", f"{line}\n[calendars.hours]")


POLICY = """
[[policies]]
name = "vip"
first_response = "1h"
"""


def test_calendar_and_policy_defaults(tmp_path: Path) -> None:
    """A calendar needs only a name and hours; a policy only a name and first_response."""
    config = load(tmp_path, MINIMAL + CALENDAR + POLICY)
    [office] = config.calendars
    assert office.timezone is None  # the [support] timezone
    assert office.hours == {0: ((time(9), time(17)),)}
    assert (office.always_open, office.holidays, office.closed) == (False, None, frozenset())
    [vip] = config.policies
    assert vip.calendar is None  # [sla] calendar
    assert (vip.priority, vip.objective, vip.escalate_to) == ("normal", 0.95, None)
    assert (vip.next_response, vip.periodic_update, vip.resolution) == (None, None, None)
    assert vip.match == MatchSettings() and vip.match.all is False


def test_always_open_calendar_and_toml_dates(tmp_path: Path) -> None:
    """always_open needs no hours; closed takes TOML dates as well as strings."""
    text = MINIMAL + '[[calendars]]\nname = "night"\nalways_open = true\n'
    text += 'closed = [2026-12-24, "2026-12-30..2026-12-31"]\n'
    [night] = load(tmp_path, text).calendars
    assert night.always_open and night.hours is None
    assert night.closed == {date(2026, 12, 24), date(2026, 12, 30), date(2026, 12, 31)}


def test_imap_sent_folders(tmp_path: Path) -> None:
    """sent_folders lists the folders where agents' replies land; [] watches none."""
    imap = load(tmp_path, IMAP + 'password = "pw"\nsent_folders = []\n').imap
    assert imap is not None and imap.sent_folders == ()
    imap = load(tmp_path, IMAP + 'password = "pw"\n').imap
    assert imap is not None and imap.sent_folders == "auto"
    assert "[Gmail]/Sent Mail" in imap.sent_names
    problem = problems(tmp_path, IMAP + 'password = "pw"\nsent_folders = "Sent"\n')
    assert any("[imap] sent_folders" in p for p in problem.problems), problem.problems


def test_sla_settings_round_trip(tmp_path: Path) -> None:
    """Calendars and policies dump to the file's notation and validate back unchanged."""
    config = load(tmp_path, MINIMAL + CALENDAR + POLICY + '[policies.match]\nsubject = ["x+"]\n')
    for settings in (config.calendars[0], config.policies[0]):
        model = type(settings)
        assert model.model_validate(settings.model_dump()) == settings
        assert model.model_validate_json(settings.model_dump_json()) == settings
    dumped = config.calendars[0].model_dump(mode="json")
    assert dumped["hours"] == {"mon": ["09:00-17:00"]}
    assert config.policies[0].model_dump(mode="json")["match"]["subject"] == ["x+"]


def test_imap_defaults(tmp_path: Path, credentials: Path) -> None:
    """An [imap] section with only the required keys gets the documented defaults."""
    imap = load(tmp_path, IMAP, CREDENTIALS_DIRECTORY=str(credentials)).imap
    assert imap is not None
    assert (imap.port, imap.tls, imap.mailbox, imap.verify_tls, imap.ca_file) == (
        993, "implicit", "INBOX", True, None)
    assert (imap.connect_timeout, imap.read_timeout) == (15.0, 60.0)
    assert imap.idle_refresh == timedelta(minutes=10)
    assert imap.poll_interval == timedelta(seconds=60)
    assert imap.fetch_batch == 200


@pytest.mark.parametrize(
    ("section", "tls", "port"),
    [("imap", "implicit", 993), ("imap", "starttls", 143), ("imap", "none", 143),
     ("smtp", "implicit", 465), ("smtp", "starttls", 587), ("smtp", "none", 25),
     ("smtp", None, 587)],
)
def test_default_port_follows_tls(tmp_path: Path, section: str, tls: str | None, port: int) -> None:
    """Without a port, the port is the standard one for the TLS mode."""
    tls_line = f'tls = "{tls}"' if tls else ""
    text = MINIMAL + f'[{section}]\nhost = "mail.example.com"\nusername = "u"\n'
    text += f'password = "pw"\n{tls_line}\n'
    settings = getattr(load(tmp_path, text), section)
    assert settings.port == port


def test_explicit_port_wins(tmp_path: Path) -> None:
    """A port that is set is kept whatever the TLS mode."""
    config = load(tmp_path, IMAP + 'password = "pw"\ntls = "none"\nport = 1143\n')
    assert config.imap is not None and config.imap.port == 1143


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({"STATE_DIRECTORY": "/var/lib/mailbridge"}, "/var/lib/mailbridge"),
     ({"XDG_STATE_HOME": "/home/u/.state", "HOME": "/home/u"}, "/home/u/.state/mailbridge"),
     ({"HOME": "/home/u"}, "/home/u/.local/state/mailbridge")],
)
def test_state_dir_default(tmp_path: Path, environ: dict[str, str], expected: str) -> None:
    """state_dir comes from $STATE_DIRECTORY, else $XDG_STATE_HOME, else ~/.local/state."""
    config = load_config(write(tmp_path, MINIMAL), environ=environ)
    assert config.daemon.state_dir == Path(expected)
    assert config.store.url == f"sqlite:///{expected}/mailbridge.sqlite3"


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    """A relative state_dir or ca_file is found next to the configuration file."""
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    text = IMAP + 'password = "pw"\nca_file = "ca.pem"\n[daemon]\nstate_dir = "state"\n'
    config = load(tmp_path, text)
    assert config.imap is not None and config.imap.ca_file == tmp_path / "ca.pem"
    assert config.daemon.state_dir == tmp_path / "state"


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [("127.0.0.1:9464", "127.0.0.1", 9464), ("[::1]:9100", "::1", 9100),
     ("0.0.0.0:0", "0.0.0.0", 0), ("localhost:65535", "localhost", 65535)],
)
def test_http_listen(tmp_path: Path, listen: str, host: str, port: int) -> None:
    """listen splits into host and port, with IPv6 addresses in brackets."""
    http = load(tmp_path, MINIMAL + f'[http]\nlisten = "{listen}"\n').http
    assert (http.host, http.port) == (host, port)


def test_demo_config_is_valid(tmp_path: Path) -> None:
    """The demo settings have no mail server, two agents and SQLite in the state dir."""
    config = demo_config(tmp_path)
    assert config.imap is None and config.smtp is None and config.path is None
    assert config.support.address == "support@example.com"
    assert config.support.name == "Example Support"
    assert config.support.timezone == "Europe/Berlin"
    assert [(a.name, a.email) for a in config.agents] == [
        ("Dana Whitfield", "dana@example.com"), ("Sam Okafor", "sam@example.com")]
    assert config.store.url == f"sqlite:///{tmp_path}/mailbridge.sqlite3"
    assert config.http.listen == "127.0.0.1:9464"
    assert config.sla.first_response == timedelta(hours=4)
    assert Config.model_validate(config.model_dump()) == config


def test_settings_are_frozen(tmp_path: Path) -> None:
    """Settings cannot be changed after loading."""
    config = demo_config(tmp_path)
    with pytest.raises(ValidationError):
        config.sla.first_response = timedelta(hours=1)


# -- problems ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (IMAP + 'password = "pw"\nport = "nine-nine-three"\n',
         '[imap] port: expected an integer, got "nine-nine-three"'),
        (IMAP + 'password = "pw"\nport = 70000\n', "[imap] port: must be at most 65535, got 70000"),
        (IMAP + 'password = "pw"\ncolour = "red"\n',
         "[imap] colour: unknown key (allowed: host, port, tls, username, password, "
         "password_file,"),
        (IMAP + 'password = "pw"\ntls = "ssl"\n',
         '[imap] tls: expected one of "implicit", "starttls" or "none", got "ssl"'),
        (IMAP + 'password = "pw"\nverify_tls = "yes"\n',
         '[imap] verify_tls: expected true or false, got "yes"'),
        (IMAP + 'password = "pw"\nidle_refresh = "45m"\n',
         '[imap] idle_refresh: must be at most "29m"'),
        (IMAP + 'password = "pw"\nfetch_batch = 0\n',
         "[imap] fetch_batch: must be at least 1, got 0"),
        (IMAP + 'password = "pw"\nread_timeout = 30\n',
         '[imap] read_timeout: expected a duration like "4h", "30m", "1h30m" or "2d", got 30; '
         "a bare number has no unit"),
        (IMAP + 'password_file = "/nonexistent/x"\n',
         "[imap] password_file: cannot read /nonexistent/x: No such file or directory"),
        (IMAP + 'password = "pw"\nca_file = "/nonexistent/ca.pem"\n',
         "[imap] ca_file: cannot read /nonexistent/ca.pem: No such file or directory"),
        (IMAP, '[imap] password: missing; add password_file = "/etc/mailbridge/imap-password"'),
        (MINIMAL + '[imap]\nusername = "u"\npassword = "pw"\n',
         '[imap] host: missing; add host = "mail.example.com"'),
        (MINIMAL + '[smtp]\nport = 25\n', '[smtp] host: missing; add host = "mail.example.com"'),
        (MINIMAL + '[smtp]\nhost = "mail.example.com"\nusername = "u"\n',
         "[smtp] password: username is set but no password"),
        (MINIMAL + '[smtp]\nhost = "mail.example.com"\npassword = "pw"\n',
         "[smtp] username: a password is set but no username"),
        (MINIMAL + '[smtp]\nhost = "mail.example.com"\nenvelope_sender = "bounces"\n',
         '[smtp] envelope_sender: expected an address like "support@example.com", got "bounces"'),
        (MINIMAL + '[sla]\nfirst_response = "one hour"\n',
         '[sla] first_response: expected a duration like "4h", "30m", "1h30m" or "2d", '
         'got "one hour"'),
        (MINIMAL + '[sla]\nfirst_response = "4"\n',
         '[sla] first_response: expected a duration like "4h", "30m", "1h30m" or "2d", got "4"; '
         "a bare number has no unit"),
        (MINIMAL + '[sla]\nfirst_response = "0s"\n',
         '[sla] first_response: must be longer than "0s"'),
        (MINIMAL.replace('name = "Example Support"', 'timezone = "Europe/Berlinn"\nname = "S"'),
         '[support] timezone: unknown IANA time zone "Europe/Berlinn"; '
         'did you mean "Europe/Berlin"?'),
        (MINIMAL.replace('address = "support@example.com"\n', ""),
         '[support] address: missing; add address = "support@example.com"'),
        (MINIMAL.replace('"support@example.com"', '"Support <support@example.com>"'),
         '[support] address: expected an address like "support@example.com", '
         'got "Support <support@example.com>"; write only the address'),
        (NO_AGENTS,
         '[[agents]]: at least one agent is needed, e.g. [[agents]] name = "Dana Whitfield" '
         'email = "dana@example.com"'),
        ("agents = []\n" + NO_AGENTS, "[[agents]]: at least one agent is needed"),
        (MINIMAL + '[[agents]]\nname = "Sam"\nemail = "sam"\n',
         '[[agents]] #2 email: expected an address like "support@example.com", got "sam"'),
        (MINIMAL + '[[agents]]\nname = "  "\nemail = "sam@example.com"\n',
         "[[agents]] #2 name: must not be empty"),
        (MINIMAL + '[[agents]]\nname = "Dana W."\nemail = "DANA@example.com"\n',
         '[[agents]] #2 email: "DANA@example.com" is already the address of #1'),
        ('[agents]\nname = "D"\n' + NO_AGENTS,
         "[[agents]]: expected [[agents]] blocks (an array of tables), not [agents]"),
        (MINIMAL + '[store]\nurl = "mysql://u:hunter2@db/mb"\n',
         '[store] url: expected a URL starting with sqlite://, postgresql://, '
         'postgresql+psycopg://, got "mysql://u:***@db/mb"'),
        (MINIMAL + '[http]\nlisten = "::1:9464"\n',
         '[http] listen: expected "host:port" like "127.0.0.1:9464" or "[::1]:9464", '
         'got "::1:9464"'),
        (MINIMAL + '[daemon]\nlog_level = "verbose"\n',
         '[daemon] log_level: expected one of "debug", "info", "warning" or "error", '
         'got "verbose"'),
        (MINIMAL + "[imapp]\n", "[imapp]: unknown section (allowed: [support], [[agents]], [sla],"),
        ('host = "mail.example.com"\n' + MINIMAL,
         "host: unknown top-level key; keys go under [imap] or [smtp]"),
    ],
)
def test_each_problem_names_file_key_and_reason(tmp_path: Path, text: str, problem: str) -> None:
    """A bad value is reported as `<file>: 1 problem` and `[section] key: reason`."""
    error = problems(tmp_path, text)
    assert str(error).startswith(f"{tmp_path / 'mailbridge.toml'}: 1 problem\n  - ")
    assert len(error.problems) == 1, error.problems
    assert error.problems[0].startswith(problem), error.problems[0]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (MINIMAL + "[sla]\nobjective = 1.5\n",
         "[sla] objective: must lie between 0 and 1 (0.95 is 95%), got 1.5"),
        (MINIMAL + '[sla]\nescalate_to = "lead"\n',
         '[sla] escalate_to: expected an address like "support@example.com", got "lead"'),
        (MINIMAL + "[sla]\neta_percentile = 0\n",
         "[sla] eta_percentile: must be at least 1, got 0"),
        (MINIMAL + '[sla]\nstatus_update_before = "0s"\n',
         '[sla] status_update_before: must be longer than "0s"'),
        (MINIMAL + '[sla]\ncalendar = "office"\n',
         '[sla] calendar: unknown calendar "office" (known: "24/7"); '
         'add a [[calendars]] block with name = "office"'),
        (MINIMAL + CALENDAR + '[sla]\ncalendar = "Ofice"\n',
         '[sla] calendar: unknown calendar "Ofice" (known: "24/7", "office"); '
         'did you mean "office"?'),
        (MINIMAL + CALENDAR.replace('"office"', '"24/7"'),
         '[[calendars]] #1 name: "24/7" is the built-in always-open calendar; '
         "choose another name"),
        (MINIMAL + CALENDAR + CALENDAR.replace('"office"', '"Office"'),
         '[[calendars]] #2 name: "Office" is already the name of #1; '
         "each calendar needs its own name"),
        (MINIMAL + '[[calendars]]\nname = "office"\n',
         '[[calendars]] #1 hours: missing; add [calendars.hours] with mon = ["09:00-17:00"]'),
        (MINIMAL + '[[calendars]]\nname = "night"\nalways_open = true\nhours = { mon = [] }\n',
         "[[calendars]] #1 hours: an always_open calendar has no hours"),
        (MINIMAL + CALENDAR.replace("09:00-17:00", "17:00-09:00"),
         '[[calendars]] #1 hours: mon: "17:00-09:00" must end after it starts'),
        (MINIMAL + CALENDAR + 'tuesday = ["09:00-17:00"]\n',
         '[[calendars]] #1 hours: "tuesday" is not a day'),
        (MINIMAL + office('closed = ["2026-02-30"]'),
         '[[calendars]] #1 closed: "2026-02-30" in "2026-02-30" is not a date like 2026-12-24'),
        (MINIMAL + office('timezone = "Europe/Berln"'),
         '[[calendars]] #1 timezone: unknown IANA time zone "Europe/Berln"; '
         'did you mean "Europe/Berlin"?'),
        (MINIMAL + CALENDAR + '[calendars.holidays]\ncountry = "XX"\n',
         '[[calendars]] #1 holidays country: the holidays package knows no country "XX"'),
        (MINIMAL + CALENDAR + '[calendars.holidays]\ncountry = "DE"\nsubdivision = "BX"\n',
         '[[calendars]] #1 holidays subdivision: the holidays package knows no subdivision "BX" '
         "of DE (known: BB, BE,"),
        (MINIMAL + CALENDAR + '[calendars.holidays]\ncountry = "DE"\nstate = "BE"\n',
         "[[calendars]] #1 holidays state: unknown key (allowed: country, subdivision)"),
        (MINIMAL + office("colour = 1"),
         "[[calendars]] #1 colour: unknown key (allowed: name, timezone, always_open, hours, "
         "holidays, closed)"),
        (MINIMAL + '[calendars]\nname = "office"\n',
         "[[calendars]]: expected [[calendars]] blocks (an array of tables), not [calendars]"),
        (MINIMAL + POLICY.replace('"vip"', '"Default"'),
         '[[policies]] #1 name: "default" is the policy set by [sla]; choose another name'),
        (MINIMAL + '[[policies]]\nname = "vip"\n',
         '[[policies]] #1 first_response: missing; add first_response = "1h"'),
        (MINIMAL + POLICY + POLICY,
         '[[policies]] #2 name: "vip" is already the name of #1; each policy needs its own name'),
        (MINIMAL + CALENDAR + POLICY + 'calendar = "offices"\n',
         '[[policies]] #1 calendar: unknown calendar "offices" (known: "24/7", "office"); '
         'did you mean "office"?'),
        (MINIMAL + POLICY + 'escalate_to = "Lead <lead@example.com>"\n',
         '[[policies]] #1 escalate_to: expected an address like "support@example.com", '
         'got "Lead <lead@example.com>"'),
        (MINIMAL + POLICY + "objective = 95\n",
         "[[policies]] #1 objective: must lie between 0 and 1 (0.95 is 95%), got 95; "
         "write 0.95 for 95%"),
        (MINIMAL + POLICY + '[policies.match]\nsubject = ["ok", "(?i)outage("]\n',
         '[[policies]] #1 match subject #2: "(?i)outage(" is not a regular expression: '
         "missing ), unterminated subpattern"),
        (MINIMAL + POLICY + '[policies.match]\npriority = ["urgent"]\n',
         '[[policies]] #1 match priority #1: expected one of "high", "normal" or "low", '
         'got "urgent"'),
        (MINIMAL + POLICY + '[policies.match]\nsender = ["*@example.org"]\n',
         "[[policies]] #1 match sender: unknown key (allowed: senders, subject, keywords, to, "
         'mailboxes, priority, all); did you mean "senders"?'),
        (MINIMAL + POLICY + '[policies.match]\nto = ["vip"]\n',
         '[[policies]] #1 match to #1: expected an address like "support@example.com", '
         'got "vip"'),
        (MINIMAL + POLICY + '[policies.match]\nall = "yes"\n',
         '[[policies]] #1 match all: expected true or false, got "yes"'),
    ],
)
def test_each_sla_problem_names_entry_key_and_reason(
    tmp_path: Path, text: str, problem: str
) -> None:
    """[sla], [[calendars]] and [[policies]] problems name the entry, the key and the fix."""
    error = problems(tmp_path, text)
    assert len(error.problems) == 1, error.problems
    assert error.problems[0].startswith(problem), error.problems[0]


def test_sla_cross_checks_are_reported_with_every_other_problem(tmp_path: Path) -> None:
    """Unknown calendars and duplicate names are listed even when other keys are wrong."""
    text = IMAP + 'password = "pw"\nport = "x"\n[sla]\ncalendar = "shop"\n' + POLICY + POLICY
    text += 'calendar = "24/7"\n[[policies]]\nname = "late"\nfirst_response = "soon"\n'
    text += 'calendar = "night"\n'
    error = problems(tmp_path, text)
    assert [p.split(":")[0] for p in error.problems] == [
        "[sla] calendar",
        "[[policies]] #2 name",
        "[[policies]] #3 calendar",
        "[[policies]] #3 first_response",
        "[imap] port",
    ]


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    """Every problem in the file is listed, in section order, not only the first."""
    text = """
[support]
address = "support@example.com"
name = "Example Support"
timezone = "Europe/Berlinn"

[imap]
host = "mail.example.com"
port = "nine-nine-three"
username = "support@example.com"
password_file = "/nonexistent/imap-password"
colour = "red"

[sla]
first_response = "one hour"
"""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"STATE_DIRECTORY": str(tmp_path)})
    allowed = ("host, port, tls, username, password, password_file, auth, mailbox, verify_tls, "
               "ca_file, connect_timeout, read_timeout, idle_refresh, poll_interval, fetch_batch, "
               "backfill, sent_folders, copy_sent")
    assert str(caught.value) == "\n".join([
        f"{path}: 6 problems",
        '  - [support] timezone: unknown IANA time zone "Europe/Berlinn"; '
        'did you mean "Europe/Berlin"?',
        '  - [[agents]]: at least one agent is needed, e.g. [[agents]] name = "Dana Whitfield" '
        'email = "dana@example.com"',
        '  - [sla] first_response: expected a duration like "4h", "30m", "1h30m" or "2d", '
        'got "one hour"',
        "  - [imap] password_file: cannot read /nonexistent/imap-password: "
        "No such file or directory",
        '  - [imap] port: expected an integer, got "nine-nine-three"',
        f"  - [imap] colour: unknown key (allowed: {allowed})",
    ])


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    """A TOML syntax error is a ConfigError with tomllib's line and column."""
    error = problems(tmp_path, MINIMAL + "[imap]\nport 993\n")
    assert error.problems == ["line 10, column 6: expected '=' after a key in a key/value pair"]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A file that does not exist is reported with the OS error."""
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.file == str(path)
    assert caught.value.problems == [f"cannot read {path}: No such file or directory"]


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    """A path that cannot be read as a file is reported with the OS error."""
    with pytest.raises(ConfigError, match="Is a directory"):
        load_config(tmp_path, environ={})


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are reported with their line."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(MINIMAL.encode() + b'# caf\xe9\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.problems == ["line 9: not UTF-8 text"]


# -- secrets ----------------------------------------------------------------------------------


def test_password_file_absolute(tmp_path: Path) -> None:
    """password_file gives the first line of the file, without its newline."""
    (tmp_path / "pw").write_text("s3cret with spaces \r\nsecond line\n")
    config = load(tmp_path, IMAP + f'password_file = "{tmp_path / "pw"}"\n')
    assert config.imap is not None and config.imap.password.reveal() == "s3cret with spaces "


def test_password_file_relative_without_credentials_directory(tmp_path: Path) -> None:
    """Without $CREDENTIALS_DIRECTORY a relative password_file is next to the config."""
    (tmp_path / "imap-pw").write_text("beside-the-config\n")
    config = load(tmp_path, IMAP + 'password_file = "imap-pw"\n')
    assert config.imap is not None and config.imap.password.reveal() == "beside-the-config"


def test_password_file_relative_with_credentials_directory(
    tmp_path: Path, credentials: Path
) -> None:
    """With $CREDENTIALS_DIRECTORY a relative password_file is looked up there."""
    (tmp_path / "imap-password").write_text("beside-the-config\n")
    config = load(tmp_path, IMAP + 'password_file = "imap-password"\n',
                  CREDENTIALS_DIRECTORY=str(credentials))
    assert config.imap is not None and config.imap.password.reveal() == "imap-secret-1"


def test_credentials_directory_default_names(tmp_path: Path, credentials: Path) -> None:
    """Without password keys, imap-password and smtp-password come from the credentials dir."""
    text = IMAP + '[smtp]\nhost = "mail.example.com"\nusername = "support@example.com"\n'
    config = load(tmp_path, text, CREDENTIALS_DIRECTORY=str(credentials))
    assert config.imap is not None and config.imap.password.reveal() == "imap-secret-1"
    assert config.smtp is not None and config.smtp.password is not None
    assert config.smtp.password.reveal() == "smtp-secret-2"


def test_a_blank_credential_is_no_password(tmp_path: Path, credentials: Path) -> None:
    """The unit's default for a missing password file (a blank line) counts as no password:
    the problems name the keys to set, not the empty file."""
    for name in ("imap-password", "smtp-password"):
        (credentials / name).write_text("\n")
    text = IMAP + '[smtp]\nhost = "mail.example.com"\nusername = "support@example.com"\n'
    found = problems(tmp_path, text, CREDENTIALS_DIRECTORY=str(credentials)).problems
    assert [p.split(":")[0] for p in found] == ["[imap] password", "[smtp] password"]
    assert "missing" in found[0] and "username is set but no password" in found[1]


def test_smtp_credential_is_unused_without_username(tmp_path: Path, credentials: Path) -> None:
    """An smtp-password credential is not picked up for a relay without a login."""
    config = load(tmp_path, MINIMAL + '[smtp]\nhost = "relay.example.com"\n',
                  CREDENTIALS_DIRECTORY=str(credentials))
    assert config.smtp is not None and config.smtp.password is None


def test_password_and_password_file_conflict(tmp_path: Path) -> None:
    """Setting both password and password_file is a problem."""
    error = problems(tmp_path, IMAP + 'password = "pw"\npassword_file = "pw"\n')
    assert error.problems == ["[imap] password, password_file: set one of them, not both"]


def test_empty_password_file(tmp_path: Path) -> None:
    """A password file whose first line is empty is a problem naming the file."""
    (tmp_path / "pw").write_text("\n")
    error = problems(tmp_path, IMAP + 'password_file = "pw"\n')
    assert error.problems == [
        f"[imap] password_file: the first line of {tmp_path / 'pw'} is empty; "
        "it must hold the password"]


def test_secrets_never_shown(tmp_path: Path, credentials: Path) -> None:
    """Passwords appear in no repr, str, dump or error message."""
    config = load(tmp_path, IMAP + 'password = "inline-secret-3"\n[smtp]\nhost = "h"\n'
                  'username = "u"\n', CREDENTIALS_DIRECTORY=str(credentials))
    shown = repr(config) + str(config) + config.model_dump_json() + str(config.model_dump())
    for secret in ("inline-secret-3", "smtp-secret-2"):
        assert secret not in shown
    assert "Secret('**********')" in repr(config)
    assert repr(Secret("x")) == "Secret('**********')" and str(Secret("x")) == "**********"
    bad = IMAP + 'password = "inline-secret-3"\npasword = "typo-secret-4"\nport = "x"\n'
    bad += '[store]\nurl = "postgres://mb:url-secret-5@db/mb"\n'
    message = str(problems(tmp_path, bad))
    for secret in ("inline-secret-3", "typo-secret-4", "url-secret-5"):
        assert secret not in message
    assert 'did you mean "password"?' in message


def test_store_url_password_is_masked_in_repr(tmp_path: Path) -> None:
    """A password inside the database URL is masked in repr but kept in the value."""
    url = "postgresql+psycopg://mb:url-secret-6@db.example.com/mb"
    config = load(tmp_path, MINIMAL + f'[store]\nurl = "{url}"\n')
    assert config.store.url == url
    assert "url-secret-6" not in repr(config)
    assert "postgresql+psycopg://mb:***@db.example.com/mb" in repr(config.store)


def test_secret_accepts_plain_strings() -> None:
    """Settings built in code may pass a plain string as the password."""
    imap = ImapSettings(host="h", username="u", password="pw")  # type: ignore[arg-type]
    assert imap.password == Secret("pw") and imap.password.reveal() == "pw"


# -- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("45s", timedelta(seconds=45)), ("30m", timedelta(minutes=30)), ("4h", timedelta(hours=4)),
     ("2d", timedelta(days=2)), ("1w", timedelta(weeks=1)), ("1h30m", timedelta(minutes=90)),
     ("1d 12h", timedelta(hours=36)), (" 0s ", timedelta(0)), ("90m", timedelta(minutes=90)),
     ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5))],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    """Durations are numbers with units, largest first."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "expected a duration"), ("4", "has no unit"), ("one hour", "expected a duration"),
     ("1.5h", "expected a duration"), ("-1h", "expected a duration"), ("4H", "expected"),
     ("3x", "expected a duration"), ("30m1h", "largest to smallest"),
     ("1h1h", "largest to smallest"), ("h", "expected a duration"), ("1h 30", "expected"),
     ("__import__('os')", "expected a duration"), ("99999999999999999d", "too long")],
)
def test_parse_duration_rejects(text: str, reason: str) -> None:
    """Anything else is a ValueError that says what a duration looks like."""
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_duration(text)


@pytest.mark.parametrize(
    ("td", "text"),
    [(timedelta(hours=4), "4h"), (timedelta(minutes=90), "1h30m"), (timedelta(0), "0s"),
     (timedelta(days=8, seconds=1), "8d1s")],
)
def test_format_duration(td: timedelta, text: str) -> None:
    """format_duration writes the shortest form parse_duration reads."""
    assert format_duration(td) == text


@pytest.mark.parametrize("td", [timedelta(seconds=-1), timedelta(milliseconds=1500)])
def test_format_duration_rejects(td: timedelta) -> None:
    """Negative and fractional durations have no written form."""
    with pytest.raises(ValueError, match="whole seconds"):
        format_duration(td)


@given(st.timedeltas(min_value=timedelta(0)).map(lambda td: td - td % timedelta(seconds=1)))
def test_duration_round_trip(td: timedelta) -> None:
    """Formatting then parsing a whole-second duration gives it back."""
    assert parse_duration(format_duration(td)) == td
