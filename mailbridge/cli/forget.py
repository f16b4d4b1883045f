"""`mailbridge forget --config FILE ADDRESS`: erase one customer's personal data from the store
on request (GDPR art. 17), also while the daemon runs.

Public API: `forget(store, address, clock, settle, sleep) -> Erased`,
`print_erased(address, erased, out)`, `command(args) -> int`.

The erasure itself is `store.erasure`'s. Here it runs until a pass finds nothing more (mail
the daemon recorded meanwhile is caught by the next pass); an acknowledgement the daemon is
sending right now is waited for, up to `settle`, and then erased anyway.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TextIO

from mailbridge.cli import EX_USAGE
from mailbridge.clock import Clock, SystemClock
from mailbridge.config import load_config
from mailbridge.store.db import Store
from mailbridge.store.erasure import Erased, erase

SETTLE = timedelta(seconds=60)
"""How long to wait for mail being sent to the customer to be done with (sent or failed)."""
POLL_SECONDS = 0.5
MAX_PASSES = 5
_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+")


def forget(store: Store, address: str, clock: Clock, *, settle: timedelta = SETTLE,
           sleep: Callable[[float], None] = time.sleep) -> Erased:
    """Erase `address` from `store`: passes until one changes nothing and nothing of the
    customer's is being sent; after `settle`, what is still being sent is erased too."""
    total = Erased()
    deadline = clock.monotonic() + settle.total_seconds()
    for number in range(MAX_PASSES + 1):
        force = number == MAX_PASSES or clock.monotonic() >= deadline
        found = erase(store, address, clock.now(), known_threads=total.threads, force=force)
        total += found
        if not found.in_flight and not any(found.counts().values()) and number > 0:
            break
        if found.in_flight:
            sleep(POLL_SECONDS)
    return total


def print_erased(address: str, erased: Erased, out: TextIO) -> None:
    counts = erased.counts()
    if not any(v for k, v in counts.items() if k != "in_flight"):
        print(f"nothing of {address} is stored", file=out)
        return
    print(f"erased {address}:", file=out)
    print(f"  threads anonymised: {erased.threads_anonymised}, resolved by the erasure: "
          f"{erased.threads_closed}", file=out)
    print(f"  messages: {erased.messages}", file=out)
    print(f"  history entries: {erased.events}", file=out)
    print(f"  outbox items: {erased.outbox}, unsent and now failed (\"erased\"): "
          f"{erased.outbox_failed}", file=out)
    print(f"  known message ids: {erased.known_ids}", file=out)
    print(f"  other rows: {erased.other}", file=out)
    print("the threads keep their timings, without the customer; backups and logs are not "
          "touched", file=out)


def command(args: argparse.Namespace) -> int:
    address = str(args.address).strip()
    if not _ADDRESS.fullmatch(address):
        print(f"mailbridge forget: not an email address: {address!r}", file=sys.stderr)
        return EX_USAGE
    config = load_config(args.config)
    store = Store.open(config.store.url, migrate=False)
    try:
        erased = forget(store, address, SystemClock())
    finally:
        store.close()
    print_erased(address.lower(), erased, sys.stdout)
    return 0
