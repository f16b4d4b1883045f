"""What `run` needs of a configuration beyond a valid file: its sections and working templates.

Public API: `run_problems(config, now)` and `template_problems(config, now)`. `check-config`
and `run` ask them before starting; a reload (`mailbridge.daemon.reload`) asks them before it
changes anything. `run_warnings(config)`: what works but is likely not meant, which
check-config prints without failing.
"""

from __future__ import annotations

from datetime import datetime

from mailbridge.config import Config
from mailbridge.errors import TemplateError
from mailbridge.mail.render import Branding, Renderer
from mailbridge.mail.samples import samples


def run_problems(config: Config, now: datetime) -> list[str]:
    """Why `mailbridge run` would refuse this configuration: check-config says it first."""
    problems = []
    if config.imap is None:
        problems.append("[imap]: `run` needs an [imap] section to watch a mailbox "
                        "(to try mailbridge without a mail server, use `mailbridge demo`)")
    if config.smtp is None:
        problems.append("[smtp]: `run` needs an [smtp] section to send acknowledgements")
    return problems + template_problems(config, now)


def run_warnings(config: Config) -> list[str]:
    """What `run` accepts but an operator likely did not mean, one line each."""
    warnings = []
    if config.agents and not config.rules.trusted_authserv_id and not config.relay.enabled:
        warnings.append(
            "[rules] trusted_authserv_id: not set and the [relay] is not enabled, so agents' "
            "mail in the INBOX is never authenticated and counts only from a watched Sent "
            "folder; set it to your mail server's authserv-id, or enable the relay")
    return warnings


def template_problems(config: Config, now: datetime) -> list[str]:
    """Each problem of the operator's templates as `[templates] dir: FILE, line N: ...`,
    rendering sample mail written at `now`.

    None without a [templates] dir: the shipped templates are tested with the package.
    """
    if config.templates.dir is None:
        return []
    support = config.support
    try:
        renderer = Renderer(config.templates.dir, default_language=support.language,
                            branding=Branding.of(support))
    except TemplateError as exc:
        found = str(exc).splitlines()
    else:
        found = renderer.check(samples(now, support_name=support.name,
                                       support_address=support.address,
                                       timezone=support.timezone))
    return [f"[templates] dir: {problem}" for problem in found]
