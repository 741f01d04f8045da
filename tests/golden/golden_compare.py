"""Rule-based comparison of an emulator answer with a recorded Consul answer.

Compared: status code; Content-Type, Allow and the X-Consul-* headers (presence and values, the
index by its rules); the exact text of text bodies; JSON structure (field names, types, nesting,
list lengths and order) with values that differ by nature compared by their rules:

* indexes (``X-Consul-Index``, ``CreateIndex``, ``ModifyIndex``): 0 stays 0; within one answer
  equal recorded indexes are equal and different ones different, and the header is the highest;
  across answers of one endpoint the index moves (or not) like the recorded one
  (see :class:`IndexHistory`);
* UUIDs (node IDs, prepared-query IDs): UUID-shaped where Consul's were, mapped consistently;
* coordinates: numbers;
* ports of the recording's helpers (the HTTP-check stub) are rewritten before comparing.

Per-endpoint rules (unordered tag unions, unstable member order...) are :class:`Rule` objects in
a :class:`RuleBook`, so other parts (prepared queries) can add their own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from golden_loader import HttpExchange

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
INDEX_FIELDS = {"CreateIndex", "ModifyIndex"}
COORD_FIELDS = {"Vec", "Error", "Adjustment", "Height"}
COMPARED_HEADERS = (
    "Content-Type",
    "Allow",
    "X-Consul-Knownleader",
    "X-Consul-Lastcontact",
    "X-Consul-Effective-Consistency",
)


@dataclass
class Actual:
    """What the emulator answered."""

    status: int
    headers: dict[str, str]
    text: str
    elapsed_s: float

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class CompareContext:
    """State shared by the comparison of one answer (and the replay-wide mappings)."""

    exchange: HttpExchange
    rewrite: Callable[[str], str]
    id_map: dict[str, str]
    index_pairs: list[tuple[int, int, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def compare_value(rec: Any, act: Any, where: str, ctx: CompareContext, key: str = "") -> None:
    """Structural comparison with the value rules described in the module docstring."""
    if key in INDEX_FIELDS and isinstance(rec, int) and isinstance(act, int):
        ctx.index_pairs.append((rec, act, where))
        return
    if key in COORD_FIELDS:
        if _kind(rec) != _kind(act):
            ctx.fail(where, f"type {_kind(act)} != recorded {_kind(rec)}")
        elif isinstance(rec, list) and len(rec) != len(act):
            ctx.fail(where, f"{len(act)} coordinates != recorded {len(rec)}")
        return
    if _kind(rec) != _kind(act):
        ctx.fail(where, f"type {_kind(act)} ({act!r:.80}) != recorded {_kind(rec)} ({rec!r:.80})")
        return
    if isinstance(rec, dict):
        if set(rec) != set(act):
            ctx.fail(where, f"keys {sorted(act)} != recorded {sorted(rec)}")
            return
        for name in rec:
            compare_value(rec[name], act[name], f"{where}.{name}", ctx, name)
        return
    if isinstance(rec, list):
        if len(rec) != len(act):
            ctx.fail(where, f"{len(act)} elements != recorded {len(rec)}")
            return
        for i, (r, a) in enumerate(zip(rec, act, strict=True)):
            compare_value(r, a, f"{where}[{i}]", ctx)
        return
    if isinstance(rec, str):
        if UUID.match(rec):
            if not UUID.match(act):
                ctx.fail(where, f"{act!r} is not a UUID like recorded {rec!r}")
                return
            known = ctx.id_map.setdefault(rec, act)
            if known != act and rec not in ("00000000-0000-0000-0000-000000000000",):
                ctx.fail(where, f"UUID {act} but {rec} was mapped to {known} before")
            return
        expected = ctx.rewrite(rec)
        if expected != act:
            ctx.fail(where, f"{act!r:.200} != recorded {expected!r:.200}")
        return
    if rec != act:
        ctx.fail(where, f"{act!r} != recorded {rec!r}")


def _record_of(where: str) -> str:
    return where.rsplit(".", 1)[0]


def check_index_pairs(ctx: CompareContext) -> None:
    """Index rules within one answer: zero stays zero; a record's CreateIndex equals its
    ModifyIndex exactly when it did in the recording; X-Consul-Index is the highest index of
    the answer exactly when it was (the ModifyIndex of the last write to the service)."""
    pairs = ctx.index_pairs
    for rec, act, where in pairs:
        if (rec == 0) != (act == 0):
            ctx.fail(where, f"index {act} vs recorded {rec} (zero must stay zero)")
    records: dict[str, list[tuple[int, int, str]]] = {}
    for pair in pairs:
        if pair[2] != "X-Consul-Index":
            records.setdefault(_record_of(pair[2]), []).append(pair)
    for fields in records.values():
        if len(fields) == 2:
            (r1, a1, w1), (r2, a2, _w2) = fields
            if (r1 == r2) != (a1 == a2) or (r1 < r2) != (a1 < a2):
                ctx.fail(w1, f"CreateIndex/ModifyIndex {a1}/{a2} unlike recorded {r1}/{r2}")
    header = [p for p in pairs if p[2] == "X-Consul-Index"]
    body = [p for p in pairs if p[2] != "X-Consul-Index" and p[0] != 0]
    if header and body:
        rec_header, act_header, _ = header[0]
        rec_max = max(p[0] for p in body)
        act_max = max(p[1] for p in body)
        if (rec_header == rec_max) != (act_header == act_max):
            ctx.fail(
                "X-Consul-Index",
                f"{act_header} vs highest index in the answer {act_max}; recorded {rec_header} vs "
                f"{rec_max}",
            )
        if act_header < act_max and rec_header >= rec_max:
            ctx.fail("X-Consul-Index", f"{act_header} below an index of the answer ({act_max})")


@dataclass
class Rule:
    """A comparison override: ``applies(exchange)`` selects, ``compare`` does the body part
    (status and headers are always compared by the engine)."""

    name: str
    applies: Callable[[HttpExchange], bool]
    compare: Callable[[HttpExchange, Actual, CompareContext], None]


class RuleBook:
    """Ordered rules; the first that applies compares the body, else the default comparison."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []

    def add(self, rule: Rule, *, first: bool = False) -> None:
        if first:
            self.rules.insert(0, rule)
        else:
            self.rules.append(rule)

    def body_rule(self, exchange: HttpExchange) -> Rule | None:
        for rule in self.rules:
            if rule.applies(exchange):
                return rule
        return None


def compare_headers(exchange: HttpExchange, actual: Actual, ctx: CompareContext) -> None:
    rec_headers = exchange.headers
    for name in COMPARED_HEADERS:
        rec = rec_headers.get(name)
        act = actual.headers.get(name)
        if rec != act:
            ctx.fail(f"header {name}", f"{act!r} != recorded {rec!r}")
    rec_index = rec_headers.get("X-Consul-Index")
    act_index = actual.headers.get("X-Consul-Index")
    if (rec_index is None) != (act_index is None):
        ctx.fail("header X-Consul-Index", f"{act_index!r} != recorded {rec_index!r}")
    elif rec_index is not None and act_index is not None:
        ctx.index_pairs.insert(0, (int(rec_index), int(act_index), "X-Consul-Index"))


def default_body_compare(exchange: HttpExchange, actual: Actual, ctx: CompareContext) -> None:
    fmt = exchange.body_format
    if fmt == "empty":
        if actual.text != "":
            ctx.fail("body", f"expected empty, got {actual.text[:100]!r}")
        return
    if fmt == "text":
        expected = ctx.rewrite(str(exchange.body))
        if actual.text != expected:
            ctx.fail("body", f"{actual.text!r:.300} != recorded {expected!r:.300}")
        return
    try:
        body = actual.json()
    except ValueError:
        ctx.fail("body", f"not JSON: {actual.text[:100]!r}")
        return
    indented = "\n    " in actual.text or not isinstance(body, dict | list) or not body
    if not actual.text.endswith("\n") or not indented:
        ctx.fail("body", "not pretty-printed like the dev agent (4-space indent + newline)")
    if fmt == "json-trimmed":
        compare_subset(exchange.body, body, "body", ctx)
        return
    compare_value(exchange.body, body, "body", ctx)


def compare_subset(rec: Any, act: Any, where: str, ctx: CompareContext) -> None:
    """Only the recorded (trimmed) keys are compared."""
    if isinstance(rec, dict) and isinstance(act, dict):
        for name, value in rec.items():
            if name == "_trimmed":
                continue
            if name not in act:
                ctx.fail(where, f"missing key {name}")
                continue
            if isinstance(value, dict):
                compare_subset(value, act[name], f"{where}.{name}", ctx)
            else:
                compare_value(value, act[name], f"{where}.{name}", ctx, name)
        return
    compare_value(rec, act, where, ctx)


def compare_exchange(
    exchange: HttpExchange, actual: Actual, ctx: CompareContext, rules: RuleBook
) -> list[str]:
    """Every mismatch between the emulator's answer and the recording (empty = equal)."""
    if actual.status != exchange.status:
        ctx.fail("status", f"{actual.status} != recorded {exchange.status} ({actual.text[:200]!r})")
        return ctx.problems
    compare_headers(exchange, actual, ctx)
    rule = rules.body_rule(exchange)
    if rule is not None:
        rule.compare(exchange, actual, ctx)
    else:
        default_body_compare(exchange, actual, ctx)
    check_index_pairs(ctx)
    return ctx.problems


# ---------------------------------------------------------------------------- core rules


def _sorted_copy(value: Any, key: Callable[[Any], Any]) -> Any:
    return sorted(value, key=key) if isinstance(value, list) else value


def _path_is(route: str) -> Callable[[HttpExchange], bool]:
    return lambda ex: ex.route == route and ex.status == 200


def _catalog_services(exchange: HttpExchange, actual: Actual, ctx: CompareContext) -> None:
    body = actual.json()
    rec = exchange.body
    if set(rec) != set(body):
        ctx.fail("body", f"services {sorted(body)} != recorded {sorted(rec)}")
        return
    for name, tags in rec.items():
        if sorted(tags) != sorted(body[name]):
            ctx.fail(f"body.{name}", f"tags {body[name]} != recorded {tags} (as sets)")


def _members(exchange: HttpExchange, actual: Actual, ctx: CompareContext) -> None:
    rec = _sorted_copy(exchange.body, lambda m: m["Name"])
    act = _sorted_copy(actual.json(), lambda m: m.get("Name", ""))
    compare_value(rec, act, "body", ctx)


def _coordinate_datacenters(exchange: HttpExchange, actual: Actual, ctx: CompareContext) -> None:
    rec = _sorted_copy(exchange.body, lambda d: d["Datacenter"])
    act = _sorted_copy(actual.json(), lambda d: d.get("Datacenter", ""))
    compare_value(rec, act, "body", ctx)


def _coordinate_nodes(exchange: HttpExchange, actual: Actual, ctx: CompareContext) -> None:
    act = actual.json()
    if exchange.body == [] and isinstance(act, list):
        # the dev agent had not sent its first coordinate yet; the emulator has one from start
        template = {"Node": "n1", "Segment": "", "Coord": {}}
        for i, item in enumerate(act):
            if not isinstance(item, dict) or set(item) != set(template):
                ctx.fail(f"body[{i}]", f"not a coordinate entry: {item!r:.100}")
        return
    compare_value(exchange.body, act, "body", ctx)


def _node_key(entry: Any) -> tuple[str, str]:
    if not isinstance(entry, dict):
        return ("", "")
    return (str(entry.get("Node", {}).get("Node", "")), str(entry.get("Service", {}).get("ID", "")))


def _query_execute(exchange: HttpExchange, actual: Actual, ctx: CompareContext) -> None:
    rec = dict(exchange.body)
    act = actual.json()
    if isinstance(act, dict) and isinstance(act.get("Nodes"), list):
        act = dict(act)
        rec["Nodes"] = sorted(rec["Nodes"], key=_node_key)
        act["Nodes"] = sorted(act["Nodes"], key=_node_key)
    compare_value(rec, act, "body", ctx)


def _query_list(exchange: HttpExchange, actual: Actual, ctx: CompareContext) -> None:
    rec = _sorted_copy(exchange.body, lambda q: q.get("Name", ""))
    act = _sorted_copy(actual.json(), lambda q: q.get("Name", "") if isinstance(q, dict) else "")
    compare_value(rec, act, "body", ctx)


def core_rules() -> RuleBook:
    """The rules the emulator-core replay needs (other parts add theirs)."""
    book = RuleBook()
    book.add(
        Rule(
            "catalog services: tag unions unordered",
            _path_is("/v1/catalog/services"),
            _catalog_services,
        )
    )
    book.add(Rule("agent members: order unstable", _path_is("/v1/agent/members"), _members))
    book.add(
        Rule(
            "coordinate datacenters: order unstable",
            _path_is("/v1/coordinate/datacenters"),
            _coordinate_datacenters,
        )
    )
    book.add(
        Rule(
            "coordinate nodes: first coordinate timing",
            _path_is("/v1/coordinate/nodes"),
            _coordinate_nodes,
        )
    )
    book.add(
        Rule(
            "prepared query execute: Nodes shuffled (compared as a set)",
            lambda ex: (
                ex.status == 200
                and ex.route.startswith("/v1/query/")
                and ex.route.endswith("/execute")
            ),
            _query_execute,
        )
    )
    book.add(
        Rule(
            "prepared query list: sorted by random IDs (compared by Name)",
            lambda ex: ex.status == 200 and ex.route == "/v1/query" and ex.method == "GET",
            _query_list,
        )
    )
    return book
