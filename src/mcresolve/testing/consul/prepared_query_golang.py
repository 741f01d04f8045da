"""Go standard-library behaviour that Consul 1.0.8's prepared-query code exposes in its answers.

Consul copies Go's error texts verbatim into HTTP bodies, so the emulator reproduces them:
``encoding/json``'s decoder errors, ``time.ParseDuration``, ``strconv.Atoi``, go-memdb's UUID index
check and ``regexp.Compile``. Everything here is pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

NANOSECONDS_PER_SECOND = 1_000_000_000

_INT64_MAX = (1 << 63) - 1


class GoError(ValueError):
    """An error whose ``str()`` is the exact text Go would print."""


# --------------------------------------------------------------------------- encoding/json


def _quote_char(byte: int) -> str:
    """``encoding/json``'s ``quoteChar``: the offending byte as Go prints it."""
    if byte == ord("'"):
        return "'\\''"
    if byte == ord('"'):
        return "'\"'"
    char = chr(byte)
    if char.isprintable():
        return f"'{char}'"
    if byte < 0x80:
        escapes = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}
        return "'" + escapes.get(byte, f"\\x{byte:02x}") + "'"
    return f"'\\u{byte:04x}'"


class _Syntax(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Eof(Exception):
    pass


class _JsonScanner:
    """Validates one JSON value the way ``json.Decoder`` does and reports Go's error texts."""

    _WS = b" \t\r\n"

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _peek(self) -> int:
        if self.pos >= len(self.data):
            raise _Eof
        return self.data[self.pos]

    def _peek_or_end(self) -> int:
        return self.data[self.pos] if self.pos < len(self.data) else -1

    def _skip_ws(self) -> None:
        while self.pos < len(self.data) and self.data[self.pos] in self._WS:
            self.pos += 1

    def _bad(self, context: str) -> _Syntax:
        return _Syntax(f"invalid character {_quote_char(self.data[self.pos])} {context}")

    def value(self) -> None:
        self._skip_ws()
        char = self._peek()
        if char == ord("{"):
            self._object()
        elif char == ord("["):
            self._array()
        elif char == ord('"'):
            self._string()
        elif char == ord("-") or ord("0") <= char <= ord("9"):
            self._number()
        elif char in b"tfn":
            self._literal()
        else:
            raise self._bad("looking for beginning of value")

    def _object(self) -> None:
        self._elements(ord("}"), self._member, "after object key:value pair")

    def _member(self) -> None:
        self._skip_ws()
        if self._peek() != ord('"'):
            raise self._bad("looking for beginning of object key string")
        self._string()
        self._skip_ws()
        if self._peek() != ord(":"):
            raise self._bad("after object key")
        self.pos += 1
        self.value()

    def _array(self) -> None:
        self._elements(ord("]"), self.value, "after array element")

    def _elements(self, close: int, element: Callable[[], None], after_element: str) -> None:
        """An object's or array's comma-separated ``element``s from the opening bracket (at
        ``pos``) through ``close``; ``after_element`` is Go's context for a bad delimiter."""
        self.pos += 1
        self._skip_ws()
        if self._peek() == close:
            self.pos += 1
            return
        while True:
            element()
            self._skip_ws()
            char = self._peek()
            if char == ord(","):
                self.pos += 1
                continue
            if char == close:
                self.pos += 1
                return
            raise self._bad(after_element)

    def _string(self) -> None:
        self.pos += 1
        while True:
            char = self._peek()
            if char == ord('"'):
                self.pos += 1
                return
            if char == ord("\\"):
                self.pos += 1
                escape = self._peek()
                if escape == ord("u"):
                    self.pos += 1
                    for _ in range(4):
                        if chr(self._peek()) not in "0123456789abcdefABCDEF":
                            raise self._bad("in \\u hexadecimal character escape")
                        self.pos += 1
                    continue
                if escape not in b'"\\/bfnrt':
                    raise self._bad("in string escape code")
            elif char < 0x20:
                raise self._bad("in string literal")
            self.pos += 1

    def _digits(self) -> int:
        start = self.pos
        while self.pos < len(self.data) and ord("0") <= self.data[self.pos] <= ord("9"):
            self.pos += 1
        return self.pos - start

    def _number(self) -> None:
        # A top-level number may end with the input; inside a container the caller's next
        # read reports the missing delimiter as an unexpected EOF.
        if self._peek() == ord("-"):
            self.pos += 1
            self._expect_digit("in numeric literal")
        if self._peek() == ord("0"):
            self.pos += 1
        else:
            self._digits()
        if self._peek_or_end() == ord("."):
            self.pos += 1
            self._expect_digit("after decimal point in numeric literal")
            self._digits()
        if self._peek_or_end() in (ord("e"), ord("E")):
            self.pos += 1
            if self._peek() in b"+-":
                self.pos += 1
            self._expect_digit("in exponent of numeric literal")
            self._digits()

    def _expect_digit(self, context: str) -> None:
        """Fail with Go's ``context`` unless a digit comes next (``unexpected EOF`` at the end)."""
        if not ord("0") <= self._peek() <= ord("9"):
            raise self._bad(context)

    def _literal(self) -> None:
        word = {ord("t"): b"true", ord("f"): b"false", ord("n"): b"null"}[self._peek()]
        for expected in word:
            if self._peek() != expected:
                raise self._bad(f"in literal {word.decode()} (expecting {_quote_char(expected)})")
            self.pos += 1


def decode_json_value(body: bytes | None) -> Any:
    """Decode the first JSON value of a request body like Go's ``json.NewDecoder(body).Decode``.

    Raises :class:`GoError` with ``EOF`` (nothing but white space), ``unexpected EOF`` (value cut
    short) or ``invalid character ...`` texts. Bytes after the first value are ignored, as the
    decoder does. Numbers come back as Python ``int``/``float``.
    """
    data = body or b""
    scanner = _JsonScanner(data)
    scanner._skip_ws()
    if scanner.pos >= len(data):
        raise GoError("EOF")
    try:
        scanner.value()
    except _Eof:
        raise GoError("unexpected EOF") from None
    except _Syntax as exc:
        raise GoError(exc.message) from None
    text = data[: scanner.pos].decode("utf-8", errors="replace")
    return json.loads(text)


# --------------------------------------------------------------------------- time.ParseDuration

_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": NANOSECONDS_PER_SECOND,
    "m": 60 * NANOSECONDS_PER_SECOND,
    "h": 3600 * NANOSECONDS_PER_SECOND,
}


def go_quote(text: str) -> str:
    """``time``'s ``quote``: double quotes, ``\\xNN`` for control and non-ASCII bytes."""
    out = ['"']
    for char in text:
        if ord(char) >= 0x80 or char < " ":
            out.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8", errors="replace"))
        else:
            if char in '"\\':
                out.append("\\")
            out.append(char)
    out.append('"')
    return "".join(out)


def parse_duration_ns(text: str) -> int:
    """Go's ``time.ParseDuration``: the duration in nanoseconds, or :class:`GoError`."""
    invalid = GoError("time: invalid duration " + go_quote(text))
    rest = text
    negative = False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise invalid
    total = 0
    while rest:
        if not (rest[0] == "." or rest[0] in "0123456789"):
            raise invalid
        match = re.match(r"[0-9]*", rest)
        assert match is not None
        whole_text = match.group(0)
        rest = rest[len(whole_text) :]
        fraction_text = ""
        had_point = rest[:1] == "."
        if had_point:
            rest = rest[1:]
            fraction_match = re.match(r"[0-9]*", rest)
            assert fraction_match is not None
            fraction_text = fraction_match.group(0)
            rest = rest[len(fraction_text) :]
        if not whole_text and not fraction_text:
            raise invalid
        unit_end = 0
        while unit_end < len(rest) and not (rest[unit_end] == "." or rest[unit_end].isdigit()):
            unit_end += 1
        if unit_end == 0:
            raise GoError("time: missing unit in duration " + go_quote(text))
        unit_name = rest[:unit_end]
        rest = rest[unit_end:]
        if unit_name not in _UNIT_NS:
            raise GoError(
                "time: unknown unit " + go_quote(unit_name) + " in duration " + go_quote(text)
            )
        unit = _UNIT_NS[unit_name]
        whole = int(whole_text) if whole_text else 0
        if whole > (1 << 63) // unit:
            raise invalid
        value = whole * unit
        if fraction_text and int(fraction_text) > 0:
            value += int(float(int(fraction_text)) * (unit / 10 ** len(fraction_text)))
            if value > 1 << 63:
                raise invalid
        total += value
        if total > 1 << 63:
            raise invalid
    if negative:
        return -total
    if total > _INT64_MAX:
        raise invalid
    return total


# --------------------------------------------------------------------------- strconv.Atoi


def go_atoi(text: str) -> int:
    """Go's ``strconv.Atoi`` (64-bit ``int``), raising :class:`GoError` with its message."""
    match = re.fullmatch(r"[+-]?[0-9]+", text)
    if match is None:
        raise GoError(f"strconv.Atoi: parsing {_strconv_quote(text)}: invalid syntax")
    value = int(text)
    if not -(1 << 63) <= value <= _INT64_MAX:
        raise GoError(f"strconv.Atoi: parsing {_strconv_quote(text)}: value out of range")
    return value


def _strconv_quote(text: str) -> str:
    """``strconv.Quote`` for the characters that matter in query strings."""
    return json.dumps(text, ensure_ascii=False)


# --------------------------------------------------------------------------- go-memdb UUID index

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_UUID_PARTS = ((0, 8), (9, 13), (14, 18), (19, 23), (24, 36))


def is_uuid(text: str) -> bool:
    """Consul's ``isUUID``: the 8-4-4-4-12 hexadecimal shape, any case."""
    return _UUID.match(text) is not None


def uuid_index_error(text: str) -> str | None:
    """What go-memdb's UUID index says about ``text`` used as an ID (``None`` = acceptable)."""
    raw = text.encode("utf-8", errors="replace")
    if len(raw) != 36:
        return "UUID must be 36 characters"
    for start, end in _UUID_PARTS:
        for offset in range(start, end):
            byte = raw[offset]
            if chr(byte) not in "0123456789abcdefABCDEF":
                return f"Invalid UUID: encoding/hex: invalid byte: {_go_unicode(byte)}"
    return None


def _go_unicode(byte: int) -> str:
    """``%#U`` of a byte value: ``U+0067 'g'``."""
    char = chr(byte)
    if char.isprintable():
        return f"U+{byte:04X} '{char}'"
    return f"U+{byte:04X}"


# --------------------------------------------------------------------------- regexp


def compile_go_regexp(pattern: str) -> re.Pattern[str]:
    """Compile an RE2 pattern with Python's engine, raising :class:`GoError` with a Go-style
    ``error parsing regexp: <code>: `<expr>``` message when it is invalid."""
    translated = pattern.replace("\\z", "\\Z")
    try:
        return re.compile(translated)
    except re.error as exc:
        message = str(exc.msg)
        if "missing )" in message:
            code = "missing closing )"
        elif "unbalanced parenthesis" in message:
            code = "unexpected )"
        elif "unterminated character set" in message:
            code = "missing closing ]"
        elif "nothing to repeat" in message or "multiple repeat" in message:
            code = "missing argument to repetition operator"
        elif "bad escape" in message:
            code = "invalid escape sequence"
        else:
            code = "invalid syntax"
        raise GoError(f"error parsing regexp: {code}: `{pattern}`") from None
