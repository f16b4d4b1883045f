"""Config text shared by tests and benchmarks.

`MINIMAL`: the smallest valid mailbridge config, one support address and one agent;
tests add the sections they are about after it. `MAILBOX`: the [imap] and [smtp] sections
that `run` (and so check-config) needs besides, pointing at nothing that is dialled.
"""
from __future__ import annotations

MINIMAL = """
[support]
address = "support@example.com"
name = "Example Support"

[[agents]]
name = "Dana Whitfield"
email = "dana@example.com"
"""

MAILBOX = """
[imap]
host = "127.0.0.1"
username = "support"
password = "imap-secret"

[smtp]
host = "127.0.0.1"
"""
