"""Consul's ``filter=`` expressions (hashicorp/go-bexpr): a parser that follows go-bexpr's PEG
grammar (``grammar/grammar.peg``) including its error texts, and an evaluator over the JSON
shapes the emulator answers with.

Grammar (whitespace ``_`` is ``[ \\t\\r\\n]+``)::

    Input      <- _? "(" _? Or _? ")" _? EOF / _? Or _? EOF
    Or         <- And _ "or" _ Or / And
    And        <- Not _ "and" _ And / Not
    Not        <- "not" _ Not / Group
    Group      <- "(" _? Or _? ")" / Match
    Match      <- Selector ("==" / "!=" / "contains" / "not contains" / "matches" /
                  "not matches") Value
                / Selector ("is empty" / "is not empty")
                / Value ("in" / "not in") Selector
    Selector   <- Identifier ("." Identifier / "[" _? String _? "]" / "." [0-9]+)*
    Identifier <- [a-zA-Z] [a-zA-Z0-9_]*
    Value      <- Selector / Number / String      (a selector value is its text)

Errors read like go-bexpr's (pigeon's) ``line:col (offset): ...``: ``no match found, expected:
...`` with the sorted expectations at the farthest position (``EOF`` last), or
``rule "number": Invalid number literal`` and the other semantic errors of the grammar.
Consul prefixes them with ``Failed to create boolean expression evaluator: `` (hashicorp/consul
issues #6467, #7338, #9441 quote real ones).

Evaluation (go-bexpr ``evaluate.go``): ``==``/``!=`` compare with the selected value's type
(strings exactly, numbers numerically, booleans with Go's ``ParseBool``); ``in``/``contains``
test list membership, map keys or substrings; ``matches`` is a regular-expression search;
``is empty`` holds for an absent value, ``""``, ``[]``, ``{}``. A selector that names nothing
(an absent map key or field) is *not found*: ``==``/``in``/``matches`` are false, their
negations true. A selector that passes through a list of objects (``Checks.Status``) selects
every element's value; a match holds when one element matches (inferred, see
docs/emulator.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Consul's prefix for a filter that does not parse (agent/consul/*_endpoint.go via
#: go-bexpr's ``CreateFilter``)
ERROR_PREFIX = "Failed to create boolean expression evaluator: "

_WS = " \t\r\n"
_IDENT_START = re.compile(r"[a-zA-Z]")
_IDENT_REST = re.compile(r"[a-zA-Z0-9_]*")


class FilterSyntaxError(ValueError):
    """An expression go-bexpr refuses; ``str()`` is go-bexpr's message (without Consul's
    prefix)."""


# ----------------------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class Value:
    """A literal: ``kind`` is ``string``, ``number`` or ``selector`` (its text is the value)."""

    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class Match:
    operator: str  # ==, !=, in, not in, contains, not contains, matches, not matches,
    # is empty, is not empty
    selector: tuple[str, ...]
    value: Value | None = None


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


@dataclass(frozen=True, slots=True)
class BinaryOp:
    operator: str  # and / or
    left: Expr
    right: Expr


Expr = Match | Not | BinaryOp


# --------------------------------------------------------------------------- the parser


class _Fail(Exception):
    pass


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.max_fail = -1
        self.expected: set[str] = set()
        self.errors: list[str] = []

    # -- primitives ------------------------------------------------------------------

    def _expect(self, pos: int, what: str) -> None:
        if pos > self.max_fail:
            self.max_fail, self.expected = pos, {what}
        elif pos == self.max_fail:
            self.expected.add(what)

    def _position(self, pos: int) -> str:
        before = self.text[:pos]
        line = before.count("\n") + 1
        col = pos - (before.rfind("\n") + 1) + 1
        return f"{line}:{col} ({len(before.encode('utf-8'))})"

    def _error(self, pos: int, rule: str, message: str) -> None:
        text = f'{self._position(pos)}: rule "{rule}": {message}'
        if text not in self.errors:
            self.errors.append(text)

    def lit(self, word: str) -> bool:
        if self.text.startswith(word, self.pos):
            self.pos += len(word)
            return True
        self._expect(self.pos, '"' + word + '"')
        return False

    def ws(self, required: bool) -> bool:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1
        if self.pos == start:
            self._expect(self.pos, "[ \\t\\r\\n]")
            return not required
        return True

    def eof(self) -> bool:
        if self.pos == len(self.text):
            return True
        self._expect(self.pos, "EOF")
        return False

    def attempt(self, *parts: Any) -> bool:
        """Run a sequence; restore the position when it fails."""
        start = self.pos
        for part in parts:
            if not part():
                self.pos = start
                return False
        return True

    # -- rules -----------------------------------------------------------------------

    def parse(self) -> Expr:
        start = self.pos
        for parenthesised in (True, False):
            self.pos = start
            self.ws(False)
            if parenthesised and not self.lit("("):
                continue
            if parenthesised:
                self.ws(False)
            expr = self.or_expr()
            if expr is None:
                continue
            self.ws(False)
            if parenthesised and not self.lit(")"):
                continue
            self.ws(False)
            if self.eof():
                return expr
        if self.errors:
            raise FilterSyntaxError("\n".join(self.errors))
        expected = sorted(self.expected - {"EOF"})
        if "EOF" in self.expected:
            expected.append("EOF")
        if len(expected) > 1:
            listed = ", ".join(expected[:-1]) + " or " + expected[-1]
        else:
            listed = expected[0] if expected else ""
        raise FilterSyntaxError(
            f"{self._position(self.max_fail)}: no match found, expected: {listed}"
        )

    def or_expr(self) -> Expr | None:
        return self._binary("or", self.and_expr)

    def and_expr(self) -> Expr | None:
        return self._binary("and", self.not_expr)

    def _binary(self, word: str, operand: Callable[[], Expr | None]) -> Expr | None:
        left = operand()
        if left is None:
            return None
        mark = self.pos
        if self.attempt(lambda: self.ws(True), lambda: self.lit(word), lambda: self.ws(True)):
            right = self._binary(word, operand)
            if right is not None:
                return BinaryOp(word, left, right)
        self.pos = mark
        return left

    def not_expr(self) -> Expr | None:
        start = self.pos
        if self.attempt(lambda: self.lit("not"), lambda: self.ws(True)):
            operand = self.not_expr()
            if operand is not None:
                return Not(operand)
            self.pos = start
        return self.group()

    def group(self) -> Expr | None:
        start = self.pos
        if self.lit("("):
            self.ws(False)
            inner = self.or_expr()
            if inner is not None:
                self.ws(False)
                if self.lit(")"):
                    return inner
            self.pos = start
        match = self.match()
        if match is not None:
            return match
        self.pos = start
        if self.lit("("):
            self.ws(False)
            if self.or_expr() is not None:
                self.ws(False)
                if not self.text.startswith(")", self.pos):
                    self._error(self.pos, "grouping", "Unmatched parentheses")
        self.pos = start
        return None

    _SELECTOR_OPS = (
        ("==", False),
        ("!=", False),
        ("contains", True),
        ("not contains", True),
        ("matches", True),
        ("not matches", True),
    )

    def _operator(self, word: str, spaced: bool) -> bool:
        """`` _ word _`` (words; inner blanks are ``_`` too) or ``_? word _?`` (symbols)."""
        parts = word.split(" ")
        steps: list[Any] = [lambda: self.ws(spaced)]
        for index, part in enumerate(parts):
            if index:
                steps.append(lambda: self.ws(True))
            steps.append(lambda p=part: self.lit(p))
        steps.append(lambda: self.ws(spaced))
        return self.attempt(*steps)

    def match(self) -> Match | None:
        start = self.pos
        selector = self.selector()
        if selector is not None:
            after = self.pos
            for word, spaced in self._SELECTOR_OPS:
                self.pos = after
                if self._operator(word, spaced):
                    value = self.value()
                    if value is not None:
                        return Match(word, selector, value)
            for word in ("is empty", "is not empty"):
                self.pos = after
                if self._operator_end(word):
                    return Match(word, selector)
        self.pos = start
        value = self.value()
        if value is not None:
            after = self.pos
            for word in ("in", "not in"):
                self.pos = after
                if self._operator(word, True):
                    target = self.selector()
                    if target is not None:
                        return Match(word, target, value)
                    self._error(self.pos, "match", "Invalid selector")
        self.pos = start
        return None

    def _operator_end(self, word: str) -> bool:
        """``_ "is" _ "empty"``: no whitespace after (``MatchIsEmpty``)."""
        steps: list[Any] = []
        for part in word.split(" "):
            steps.append(lambda: self.ws(True))
            steps.append(lambda p=part: self.lit(p))
        return self.attempt(*steps)

    def identifier(self) -> str | None:
        if self.pos < len(self.text) and _IDENT_START.match(self.text, self.pos):
            rest = _IDENT_REST.match(self.text, self.pos + 1)
            end = rest.end() if rest else self.pos + 1
            name = self.text[self.pos : end]
            self.pos = end
            self._expect(self.pos, "[a-zA-Z0-9_]")
            return name
        self._expect(self.pos, "[a-zA-Z]")
        return None

    def selector(self) -> tuple[str, ...] | None:
        first = self.identifier()
        if first is None:
            return None
        parts = [first]
        while True:
            mark = self.pos
            if self.lit("."):
                name = self.identifier()
                if name is not None:
                    parts.append(name)
                    continue
                digits = re.compile(r"[0-9]+").match(self.text, self.pos)
                if digits:
                    parts.append(digits.group())
                    self.pos = digits.end()
                    continue
                self._expect(self.pos, "[0-9]")
                self.pos = mark
                break
            if self.lit("["):
                self.ws(False)
                key = self.string()
                if key is None:
                    self._error(self.pos, "index", "Invalid index")
                    self.pos = mark
                    break
                self.ws(False)
                if not self.lit("]"):
                    self._error(self.pos, "index", "Unclosed index expression")
                    self.pos = mark
                    break
                parts.append(key)
                continue
            self.pos = mark
            break
        return tuple(parts)

    def value(self) -> Value | None:
        start = self.pos
        selector = self.selector()
        if selector is not None:
            return Value("selector", self.text[start : self.pos])
        number = self.number()
        if number is not None:
            return Value("number", number)
        text = self.string()
        if text is not None:
            return Value("string", text)
        return None

    def number(self) -> str | None:
        found = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?").match(self.text, self.pos)
        if found is None:
            self._expect(self.pos, '"-"')
            self._expect(self.pos, '"0"')
            self._expect(self.pos, "[1-9]")
            return None
        end = found.end()
        if end == len(self.text) or self.text[end] in _WS + ")":
            self.pos = end
            return found.group()
        self._error(end, "number", "Invalid number literal")
        return None

    def string(self) -> str | None:
        if self.pos >= len(self.text) or self.text[self.pos] not in '"`':
            self._expect(self.pos, '"\\""')
            self._expect(self.pos, '"`"')
            return None
        quote = self.text[self.pos]
        index = self.pos + 1
        chars: list[str] = []
        while index < len(self.text):
            char = self.text[index]
            if char == quote:
                self.pos = index + 1
                return "".join(chars)
            if char == "\\" and quote == '"' and index + 1 < len(self.text):
                escaped = self.text[index + 1]
                chars.append({"n": "\n", "t": "\t", "r": "\r"}.get(escaped, escaped))
                index += 2
                continue
            chars.append(char)
            index += 1
        self._error(len(self.text), "string", "Unterminated string literal")
        return None


def parse(expression: str) -> Expr:
    """Parse a filter expression (raises :class:`FilterSyntaxError` with go-bexpr's text).

    Regular expressions of ``matches`` are compiled here, as go-bexpr does when it builds the
    evaluator; a bad one is ``error parsing regexp: ...`` (Python's wording after Go's
    prefix)."""
    expr = _Parser(expression).parse()
    _check_patterns(expr)
    return expr


def _check_patterns(expr: Expr) -> None:
    if isinstance(expr, BinaryOp):
        _check_patterns(expr.left)
        _check_patterns(expr.right)
    elif isinstance(expr, Not):
        _check_patterns(expr.operand)
    elif expr.operator in ("matches", "not matches") and expr.value is not None:
        try:
            re.compile(expr.value.text)
        except re.error as exc:
            raise FilterSyntaxError(f"error parsing regexp: {exc}") from None


# ------------------------------------------------------------------------ the evaluator


@dataclass(frozen=True, slots=True)
class _Selected:
    """What a selector names: ``values`` (empty = not found); ``spread`` when it passed
    through a list of objects (each element contributed one value)."""

    values: list[Any]
    spread: bool


def _select(datum: Any, selector: tuple[str, ...]) -> _Selected:
    values: list[Any] = [datum]
    spread = False
    for part in selector:
        found: list[Any] = []
        for value in values:
            if isinstance(value, dict):
                if part in value:
                    found.append(value[part])
            elif isinstance(value, list):
                if part.isdigit() and int(part) < len(value):
                    found.append(value[int(part)])
                else:
                    spread = True
                    found.extend(
                        item[part] for item in value if isinstance(item, dict) and part in item
                    )
        if not found:
            return _Selected([], spread)
        values = found
    return _Selected(values, spread)


def _go_bool(text: str) -> bool | None:
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    return None


def _equal(actual: Any, wanted: str) -> bool:
    if isinstance(actual, bool):
        return _go_bool(wanted) == actual
    if isinstance(actual, int | float):
        try:
            return float(wanted) == float(actual)
        except ValueError:
            return False
    if actual is None:
        return wanted == ""
    return isinstance(actual, str) and actual == wanted


def _contains(container: Any, wanted: str) -> bool:
    if isinstance(container, list):
        return any(_equal(item, wanted) for item in container)
    if isinstance(container, dict):
        return wanted in container
    if isinstance(container, str):
        return wanted in container
    return False


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and len(value) == 0)


def _positive(operator: str, selected: _Selected, wanted: str) -> bool:
    values = selected.values
    if operator == "==":
        return any(_equal(v, wanted) for v in values)
    if operator in ("in", "contains"):
        if selected.spread:
            return _contains(values, wanted) or any(
                isinstance(v, list | dict) and _contains(v, wanted) for v in values
            )
        return any(_contains(v, wanted) for v in values)
    pattern = re.compile(wanted)
    return any(
        isinstance(item, str) and pattern.search(item) is not None
        for v in values
        for item in (v if isinstance(v, list) else [v])
    )


_POSITIVE = {
    "==": "==",
    "!=": "==",
    "in": "in",
    "not in": "in",
    "contains": "contains",
    "not contains": "contains",
    "matches": "matches",
    "not matches": "matches",
}


def evaluate(expr: Expr, datum: Any) -> bool:
    """Whether ``datum`` (one element of an answer, as JSON) matches ``expr``."""
    if isinstance(expr, BinaryOp):
        if expr.operator == "and":
            return evaluate(expr.left, datum) and evaluate(expr.right, datum)
        return evaluate(expr.left, datum) or evaluate(expr.right, datum)
    if isinstance(expr, Not):
        return not evaluate(expr.operand, datum)
    selected = _select(datum, expr.selector)
    if expr.operator in ("is empty", "is not empty"):
        empty = all(_empty(v) for v in selected.values)
        return empty if expr.operator == "is empty" else not empty
    assert expr.value is not None
    negated = expr.operator.startswith("not ") or expr.operator == "!="
    if not selected.values:
        return negated
    result = _positive(_POSITIVE[expr.operator], selected, expr.value.text)
    return not result if negated else result


def filter_items(expression: str, items: list[Any]) -> list[Any]:
    """The items matching a filter expression (all of them when it is empty)."""
    if not expression:
        return list(items)
    expr = parse(expression)
    return [item for item in items if evaluate(expr, item)]


def unparse(expr: Expr) -> str:
    """A canonical text for a tree (fully parenthesised); ``parse(unparse(t)) == t``."""
    if isinstance(expr, BinaryOp):
        return f"({unparse(expr.left)} {expr.operator} {unparse(expr.right)})"
    if isinstance(expr, Not):
        return f"not {unparse(expr.operand)}"
    selector = _unparse_selector(expr.selector)
    if expr.value is None:
        return f"{selector} {expr.operator}"
    value = _unparse_value(expr.value)
    if expr.operator in ("in", "not in"):
        return f"{value} {expr.operator} {selector}"
    return f"{selector} {expr.operator} {value}"


def _unparse_selector(parts: tuple[str, ...]) -> str:
    out = parts[0]
    for part in parts[1:]:
        if re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_]*|[0-9]+", part):
            out += "." + part
        else:
            out += "[" + _quote(part) + "]"
    return out


def _unparse_value(value: Value) -> str:
    if value.kind == "string":
        return _quote(value.text)
    return value.text


def _quote(text: str) -> str:
    if "`" not in text:
        return "`" + text + "`"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
