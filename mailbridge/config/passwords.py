"""The agents' relay passwords: a salted, slow scrypt hash, and checking a password against it.

This module owns the hash format. It is pure apart from `os.urandom` for a new salt, which a
caller may replace by passing `salt`. Public API:

- `hash_password(password, *, salt=None, n=DEFAULT_N, r=8, p=1) -> str`, the encoded hash
  `scrypt$<n>$<r>$<p>$<salt>$<hash>` (salt and hash in unpadded base64), as
  `mailbridge hash-password` prints it.
- `parse_hash(encoded) -> ScryptHash`, raising ValueError with a sentence for the operator
  (never showing the value).
- `verify_password(password, encoded_or_parsed) -> bool`, in constant time for the compare.

The cost parameters are stored in each hash, so they can be raised later without breaking the
hashes already handed out; `parse_hash` bounds them so that a configuration file cannot make
one login cost gigabytes of memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

SCHEME = "scrypt"
DEFAULT_N = 2**15
"""About 0.1 s and 32 MiB per check on a current CPU: slow for a guesser, fine for a login."""
SALT_BYTES = 16
HASH_BYTES = 32
MIN_N, MAX_N = 2**10, 2**20
MAX_R, MAX_P = 32, 16
HASH_LIKE = "expected the output of `mailbridge hash-password`, like \"scrypt$32768$8$1$...$...\""


@dataclass(frozen=True)
class ScryptHash:
    """One parsed password hash."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def encode(self) -> str:
        return "$".join((SCHEME, str(self.n), str(self.r), str(self.p), _b64(self.salt),
                         _b64(self.digest)))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _derive(password: str, *, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # scrypt needs 128 * r * n bytes (and a little more); the default maxmem is 32 MiB.
    maxmem = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=maxmem, dklen=length)


def hash_password(password: str, *, salt: bytes | None = None, n: int = DEFAULT_N, r: int = 8,
                  p: int = 1) -> str:
    """The encoded salted hash of `password`; a fresh random salt unless one is given."""
    if not password:
        raise ValueError("the password is empty")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    _check_cost(n, r, p)
    digest = _derive(password, salt=salt, n=n, r=r, p=p, length=HASH_BYTES)
    return ScryptHash(n, r, p, salt, digest).encode()


def _check_cost(n: int, r: int, p: int) -> None:
    if not (MIN_N <= n <= MAX_N and n & (n - 1) == 0):
        raise ValueError(f"the cost n must be a power of 2 from {MIN_N} to {MAX_N}")
    if not (1 <= r <= MAX_R and 1 <= p <= MAX_P):
        raise ValueError(f"the cost r must be 1 to {MAX_R} and p 1 to {MAX_P}")


def parse_hash(encoded: str) -> ScryptHash:
    """Read an encoded hash; raise ValueError saying what is wrong (without the value)."""
    parts = encoded.strip().split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise ValueError(HASH_LIKE)
    try:
        n, r, p = (int(part) for part in parts[1:4])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except (ValueError, binascii.Error):
        raise ValueError(f"{HASH_LIKE}; this one is damaged") from None
    _check_cost(n, r, p)
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError(f"{HASH_LIKE}; its salt or hash is too short")
    return ScryptHash(n, r, p, salt, digest)


def verify_password(password: str, stored: str | ScryptHash) -> bool:
    """True when `password` matches the stored hash; False for a damaged hash."""
    try:
        parsed = stored if isinstance(stored, ScryptHash) else parse_hash(stored)
    except ValueError:
        return False
    derived = _derive(password, salt=parsed.salt, n=parsed.n, r=parsed.r, p=parsed.p,
                      length=len(parsed.digest))
    return hmac.compare_digest(derived, parsed.digest)
