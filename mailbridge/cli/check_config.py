"""`mailbridge check-config FILE`: validate a configuration file, then exit.

Besides the file itself, it loads the operator's templates ([templates] dir) and renders
each one once with sample mail, so that a syntax error, an unknown variable or a refused
operation is reported with its file and line before any customer mail needs it.

Public API: `command(args) -> int`; `run_problems(config, now)`, which `run` checks too
(the sections `run` needs, and `template_problems(config, now)`).
"""

from __future__ import annotations

import argparse
from datetime import datetime

from mailbridge.clock import SystemClock
from mailbridge.config import Config, load_config
from mailbridge.errors import ConfigError, TemplateError
from mailbridge.mail.render import Renderer
from mailbridge.mail.samples import samples


def command(args: argparse.Namespace) -> int:
    path = args.file
    config = load_config(path)
    problems = run_problems(config, SystemClock().now())
    if problems:
        raise ConfigError(str(path), problems)
    print(f"{path}: ok ({len(config.agents)} agents, store {config.store.url.split(':')[0]}"
          f"{', own templates' if config.templates.dir else ''})")
    return 0


def run_problems(config: Config, now: datetime) -> list[str]:
    """Why `mailbridge run` would refuse this configuration: check-config says it first."""
    problems = []
    if config.imap is None:
        problems.append("[imap]: `run` needs an [imap] section to watch a mailbox "
                        "(to try mailbridge without a mail server, use `mailbridge demo`)")
    if config.smtp is None:
        problems.append("[smtp]: `run` needs an [smtp] section to send acknowledgements")
    return problems + template_problems(config, now)


def template_problems(config: Config, now: datetime) -> list[str]:
    """Each problem of the operator's templates as `[templates] dir: FILE, line N: ...`,
    rendering sample mail written at `now`.

    None without a [templates] dir: the shipped templates are tested with the package.
    """
    if config.templates.dir is None:
        return []
    support = config.support
    try:
        renderer = Renderer(config.templates.dir, default_language=support.language)
    except TemplateError as exc:
        found = str(exc).splitlines()
    else:
        found = renderer.check(samples(now, support_name=support.name,
                                       support_address=support.address,
                                       timezone=support.timezone))
    return [f"[templates] dir: {problem}" for problem in found]
