"""Prepared-query templates (``Template.Type: "name_prefix_match"``) as Consul 1.0.8 runs them.

Consul parses every string of the ``Service`` block as a HIL template when the query is stored
(``Compile``) and evaluates them for the name being looked up (``Render``). The variables are
``name.full`` (the looked-up name), ``name.prefix`` (the query's own name) and ``name.suffix``
(``name.full`` with the prefix cut off, case-sensitively, as Go's ``strings.TrimPrefix``), and
the function ``match(N)`` returns group ``N`` of ``Template.Regexp`` matched against the full name
(``""`` when out of range or not matching). This module implements the HIL subset those
templates use: literal text, ``$${`` escapes, ``${...}`` with variables, ``match(...)`` calls and
integer or string literals. Pure.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .prepared_query_definition import TEMPLATE_TYPE_NAME_PREFIX_MATCH
from .prepared_query_golang import GoError, compile_go_regexp


class TemplateError(ValueError):
    """A template Consul refuses to compile or render; ``str()`` is Consul's inner text (the
    store prefixes ``failed compiling template: `` where Consul does)."""


class _HilError(Exception):
    pass


# --------------------------------------------------------------------------- HIL subset


@dataclass(frozen=True)
class _Pos:
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Int:
    value: int


@dataclass(frozen=True)
class _Str:
    parts: tuple[_Node, ...]


@dataclass(frozen=True)
class _Var:
    name: str
    pos: _Pos


@dataclass(frozen=True)
class _Call:
    name: str
    args: tuple[_Node, ...]
    pos: _Pos


_Node = _Text | _Int | _Str | _Var | _Call

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.index = 0

    def _pos(self) -> _Pos:
        before = self.text[: self.index]
        line = before.count("\n") + 1
        column = self.index - (before.rfind("\n") + 1) + 1
        return _Pos(line, column)

    def _fail(self, what: str) -> _HilError:
        found = "end of string" if self.index >= len(self.text) else repr(self.text[self.index])
        return _HilError(f"parse error at {self._pos()}: {what}, found {found}")

    def template(self, *, in_string: bool = False) -> tuple[_Node, ...]:
        nodes: list[_Node] = []
        literal: list[str] = []
        while self.index < len(self.text):
            if self.text.startswith("$${", self.index):
                literal.append("${")
                self.index += 3
            elif self.text.startswith("${", self.index):
                if literal:
                    nodes.append(_Text("".join(literal)))
                    literal = []
                self.index += 2
                nodes.append(self._expression())
                self._skip_space()
                if not self.text.startswith("}", self.index):
                    raise self._fail("expected '}'")
                self.index += 1
            elif in_string and self.text[self.index] == '"':
                break
            elif in_string and self.text[self.index] == "\\":
                escaped = self.text[self.index + 1 : self.index + 2]
                if escaped not in ('"', "\\", "n", "t"):
                    self.index += 1
                    raise self._fail("invalid escape sequence")
                literal.append({"n": "\n", "t": "\t"}.get(escaped, escaped))
                self.index += 2
            else:
                literal.append(self.text[self.index])
                self.index += 1
        if literal:
            nodes.append(_Text("".join(literal)))
        return tuple(nodes)

    def _skip_space(self) -> None:
        while self.index < len(self.text) and self.text[self.index] in " \t\r\n":
            self.index += 1

    def _expression(self) -> _Node:
        self._skip_space()
        pos = self._pos()
        rest = self.text[self.index :]
        number = re.match(r"[0-9]+", rest)
        if number:
            self.index += number.end()
            return _Int(int(number.group(0)))
        if rest.startswith('"'):
            self.index += 1
            parts = self.template(in_string=True)
            if not self.text.startswith('"', self.index):
                raise self._fail("expected '\"'")
            self.index += 1
            return _Str(parts)
        ident = _IDENT.match(rest)
        if not ident:
            raise self._fail("expected expression")
        self.index += ident.end()
        self._skip_space()
        if not self.text.startswith("(", self.index):
            return _Var(ident.group(0), pos)
        self.index += 1
        args: list[_Node] = []
        self._skip_space()
        if self.text.startswith(")", self.index):
            self.index += 1
            return _Call(ident.group(0), (), pos)
        while True:
            args.append(self._expression())
            self._skip_space()
            if self.text.startswith(",", self.index):
                self.index += 1
                continue
            if self.text.startswith(")", self.index):
                self.index += 1
                return _Call(ident.group(0), tuple(args), pos)
            raise self._fail("expected ',' or ')'")


def _parse(text: str) -> tuple[_Node, ...]:
    return _Parser(text).template()


_Function = Callable[[list[int]], str]


def _evaluate(
    nodes: tuple[_Node, ...], variables: dict[str, str], functions: dict[str, _Function]
) -> str:
    return "".join(_value(node, variables, functions) for node in nodes)


def _value(node: _Node, variables: dict[str, str], functions: dict[str, _Function]) -> str:
    if isinstance(node, _Text):
        return node.text
    if isinstance(node, _Int):
        return str(node.value)
    if isinstance(node, _Str):
        return _evaluate(node.parts, variables, functions)
    if isinstance(node, _Var):
        if node.name not in variables:
            raise _HilError(f"{node.pos}: unknown variable accessed: {node.name}")
        return variables[node.name]
    function = functions.get(node.name)
    if function is None:
        raise _HilError(f"{node.pos}: unknown function called: {node.name}")
    if len(node.args) != 1:
        raise _HilError(f"{node.pos}: {node.name}: expected 1 arguments, got {len(node.args)}")
    arguments: list[int] = []
    for argument in node.args:
        text = _value(argument, variables, functions)
        try:
            arguments.append(int(text))
        except ValueError:
            raise _HilError(
                f'{node.pos}: strconv.ParseInt: parsing "{text}": invalid syntax'
            ) from None
    return function(arguments)


# --------------------------------------------------------------------------- Service walk

_Visitor = Callable[[str, str], str]


def _walk_service(service: dict[str, Any], visit: _Visitor) -> dict[str, Any]:
    """Apply ``visit(path, value)`` to every string of a ``Service`` block, in Go's field order
    (paths as Consul prints them: ``.Service``, ``.Tags[0]``, ``.NodeMeta[rack]``...)."""
    result = copy.deepcopy(service)
    result["Service"] = visit(".Service", service["Service"])
    failover = result["Failover"]
    if failover["Datacenters"] is not None:
        failover["Datacenters"] = [
            visit(f".Failover.Datacenters[{i}]", dc) for i, dc in enumerate(failover["Datacenters"])
        ]
    if service["IgnoreCheckIDs"] is not None:
        result["IgnoreCheckIDs"] = [
            visit(f".IgnoreCheckIDs[{i}]", check)
            for i, check in enumerate(service["IgnoreCheckIDs"])
        ]
    result["Near"] = visit(".Near", service["Near"])
    if service["Tags"] is not None:
        result["Tags"] = [visit(f".Tags[{i}]", tag) for i, tag in enumerate(service["Tags"])]
    if service["NodeMeta"] is not None:
        result["NodeMeta"] = {
            key: visit(f".NodeMeta[{key}]", value) for key, value in service["NodeMeta"].items()
        }
    return result


# --------------------------------------------------------------------------- compile / render


@dataclass(frozen=True)
class CompiledTemplate:
    """A stored template: its definition, the parsed strings and the compiled regexp."""

    definition: dict[str, Any]
    trees: dict[str, tuple[_Node, ...]]
    regexp: re.Pattern[str] | None

    def render(self, name: str) -> dict[str, Any]:
        """The definition with every ``Service`` string evaluated for ``name`` (``ID``, ``Name``
        and indexes stay the template's own), as ``/explain`` shows it and execute runs it.
        Raises :class:`TemplateError` (``Bad evaluation for ...``)."""
        prefix: str = self.definition["Name"]
        match = self.regexp.search(name) if self.regexp is not None else None
        groups = [match.group(0), *(g or "" for g in match.groups())] if match else []

        def match_group(arguments: list[int]) -> str:
            index = arguments[0]
            return groups[index] if 0 <= index < len(groups) else ""

        variables = {
            "name.full": name,
            "name.prefix": prefix,
            "name.suffix": name[len(prefix) :] if name.startswith(prefix) else name,
        }
        functions: dict[str, _Function] = {"match": match_group}

        def evaluate(path: str, value: str) -> str:
            tree = self.trees.get(path)
            if tree is None:
                return value
            try:
                return _evaluate(tree, variables, functions)
            except _HilError as exc:
                raise TemplateError(
                    f"Bad evaluation for '{value}' in Service{path}: {exc}"
                ) from None

        rendered = copy.deepcopy(self.definition)
        rendered["Service"] = _walk_service(self.definition["Service"], evaluate)
        if self.definition["Template"]["RemoveEmptyTags"]:
            rendered["Service"]["Tags"] = [t for t in rendered["Service"]["Tags"] or [] if t]
        return rendered


def compile_template(definition: dict[str, Any]) -> CompiledTemplate:
    """Consul's ``prepared_query.Compile``: check the type, parse every ``Service`` string, compile
    the regexp and do a test render with the query's own name. Raises :class:`TemplateError`."""
    template_type = definition["Template"]["Type"]
    if template_type != TEMPLATE_TYPE_NAME_PREFIX_MATCH:
        raise TemplateError(f"Bad Template.Type '{template_type}'")
    trees: dict[str, tuple[_Node, ...]] = {}

    def parse(path: str, value: str) -> str:
        try:
            trees[path] = _parse(value)
        except _HilError as exc:
            raise TemplateError(f"Bad format '{value}' in Service{path}: {exc}") from None
        return value

    _walk_service(definition["Service"], parse)
    regexp = None
    if definition["Template"]["Regexp"]:
        try:
            regexp = compile_go_regexp(definition["Template"]["Regexp"])
        except GoError as exc:
            raise TemplateError(f"Bad Regexp: {exc}") from None
    compiled = CompiledTemplate(copy.deepcopy(definition), trees, regexp)
    compiled.render(definition["Name"])
    return compiled
