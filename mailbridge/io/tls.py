"""TLS contexts for outgoing connections: verified unless the operator opts out.

Public API: `client_context(verify, ca_file)`.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(*, verify: bool, ca_file: Path | None) -> ssl.SSLContext:
    """A client TLS context; `verify=False` is the operator's explicit choice."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
