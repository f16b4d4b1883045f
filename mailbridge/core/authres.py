"""Reading an `Authentication-Results` field (RFC 8601).

Public API: `parse(value) -> AuthResults`, `AuthResults`, `AuthResult`.

A mail server that checked a message (DKIM, SPF, DMARC, ...) says so in this field, one
field per server, the newest on top. `parse` reads one field's value as the grammar of
RFC 8601 section 2.2 has it: comments in parentheses (nested, with `\\` escapes) and folding
whitespace anywhere between the parts, quoted strings, an optional version after the
authserv-id, several results separated by ";", and "none" for no result. Method, result,
property type and property names are case-insensitive and are returned lower-case.

Input is hostile and real servers stray from the grammar: a result that does not parse is
dropped and reading goes on after the next ";". A field whose authserv-id part does not
parse has `authserv_id == ""`, which matches no configured id: what cannot be read is
never trusted. Which field to believe is `mailbridge.core.trust`'s decision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEYWORD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?")
# RFC 2045 token: any printable ASCII but space and tspecials ()<>@,;:\"/[]?=
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
# A property value: a quoted string, or a token, an address or "@domain" (RFC 8601 pvalue);
# real servers also put base64 (header.b=) here, so anything up to space, ";" or "(".
_PVALUE = re.compile(r"[^\s;()\"]+")
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class AuthResult:
    """One result: `dkim=pass header.d=example.com` is method "dkim", result "pass" and
    the property "header.d" = "example.com"."""

    method: str
    result: str
    properties: tuple[tuple[str, str], ...] = ()
    """("ptype.property", value) pairs in their order; the names lower-case."""
    reason: str = ""

    def get(self, name: str) -> str | None:
        """The first value of property `name` ("header.d", "smtp.mailfrom"), or None."""
        wanted = name.lower()
        return next((value for key, value in self.properties if key == wanted), None)


@dataclass(frozen=True)
class AuthResults:
    """One Authentication-Results field: who checked, and what they found."""

    authserv_id: str
    """The checking server's id as written; "" when the field does not start with one."""
    results: tuple[AuthResult, ...] = ()
    version: str = ""


class _Malformed(Exception):
    """This part of the field does not follow the grammar."""


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_cfws(self) -> None:
        """Skip whitespace and comments; an unclosed comment runs to the end."""
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char.isspace():
                self.pos += 1
            elif char == "(":
                self._skip_comment()
            else:
                return

    def _skip_comment(self) -> None:
        depth = 0
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            self.pos += 1
            if char == "\\":
                self.pos += 1
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth == 0:
                    return

    def match(self, pattern: re.Pattern[str]) -> str:
        found = pattern.match(self.text, self.pos)
        if found is None:
            raise _Malformed
        self.pos = found.end()
        return found.group(0)

    def expect(self, char: str) -> None:
        self.skip_cfws()
        if self.peek() != char:
            raise _Malformed
        self.pos += 1
        self.skip_cfws()

    def quoted(self) -> str:
        """A quoted string at the cursor (which is at its opening quote), unquoted."""
        out = []
        self.pos += 1
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            self.pos += 1
            if char == "\\" and self.pos < len(text):
                out.append(text[self.pos])
                self.pos += 1
            elif char == '"':
                return "".join(out)
            else:
                out.append(char)
        raise _Malformed

    def value(self, pattern: re.Pattern[str] = _TOKEN) -> str:
        return self.quoted() if self.peek() == '"' else self.match(pattern)

    def skip_past_semicolon(self) -> None:
        """Recover from a malformed result: go on after the next ";" outside quotes and
        comments, or to the end."""
        while not self.at_end():
            self.skip_cfws()
            char = self.peek()
            if char == ";":
                return
            if char == '"':
                try:
                    self.quoted()
                except _Malformed:
                    self.pos = len(self.text)
            elif char:
                self.pos += 1


def parse(value: str) -> AuthResults:
    """Read one Authentication-Results field value (after "Authentication-Results:")."""
    scanner = _Scanner(value)
    scanner.skip_cfws()
    try:
        authserv_id = scanner.value()
        scanner.skip_cfws()
        version = scanner.match(_DIGITS) if scanner.peek().isdigit() else ""
        scanner.skip_cfws()
        if not scanner.at_end() and scanner.peek() != ";":
            raise _Malformed
    except _Malformed:
        return AuthResults("")
    results: list[AuthResult] = []
    while not scanner.at_end():
        scanner.pos += 1  # the ";"
        scanner.skip_cfws()
        if scanner.at_end():
            break
        start = scanner.pos
        try:
            result = _result(scanner)
        except _Malformed:
            scanner.pos = start
            scanner.skip_past_semicolon()
            continue
        if result is not None:
            results.append(result)
        scanner.skip_cfws()
        if not scanner.at_end() and scanner.peek() != ";":
            scanner.skip_past_semicolon()
    return AuthResults(authserv_id, tuple(results), version)


def _result(scanner: _Scanner) -> AuthResult | None:
    """One resinfo: `method[/version] = result [reason=...] [ptype.property=value ...]`;
    None for the no-result `none`."""
    method = scanner.match(_KEYWORD).lower()
    scanner.skip_cfws()
    if method == "none" and scanner.peek() in ("", ";"):
        return None
    if scanner.peek() == "/":
        scanner.expect("/")
        scanner.match(_KEYWORD)
    scanner.expect("=")
    result = scanner.match(_KEYWORD).lower()
    properties: list[tuple[str, str]] = []
    reason = ""
    while True:
        scanner.skip_cfws()
        if scanner.peek() in ("", ";"):
            break
        name = scanner.match(_KEYWORD).lower()
        scanner.skip_cfws()
        if name == "reason" and scanner.peek() == "=":
            scanner.expect("=")
            reason = scanner.value()
            continue
        scanner.expect(".")
        prop = scanner.match(_KEYWORD).lower()
        scanner.expect("=")
        found = scanner.value(_PVALUE) if scanner.peek() not in ("", ";", "(") else ""
        properties.append((f"{name}.{prop}", found))
    return AuthResult(method, result, tuple(properties), reason)
