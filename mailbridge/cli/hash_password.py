"""`mailbridge hash-password`: the password_hash of an agent's relay password.

Public API: `command(args) -> int`. The password is asked for without echo on a terminal,
else read from the first line of standard input; only its scrypt hash is printed.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from mailbridge.config.passwords import hash_password


def command(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("Relay password: ")
        if getpass.getpass("The same again: ") != password:
            print("mailbridge: the two passwords differ; nothing printed", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        print("mailbridge: the password is empty; nothing printed", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0
