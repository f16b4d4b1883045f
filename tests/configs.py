"""Config text shared by tests and benchmarks.

`MINIMAL`: the smallest valid mailbridge config, one support address and one agent;
tests add the sections they are about after it.
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
