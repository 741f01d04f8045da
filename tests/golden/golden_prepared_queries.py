"""Golden comparison rules for prepared queries (``/v1/query``), loaded by the replay engine
through ``register_rules``.

What differs by nature and how it is compared instead:

* ``/execute``: Consul shuffles ``Nodes`` on every execution, so the instances are compared as a
  set (matched by node name and service ID, each instance compared field by field with the usual
  index/UUID rules). With ``?near=`` the instances on the agent's node must come first (when the
  answer is from the local datacenter). With ``?limit=N`` Consul returns a random N of them: the
  count must match, and each returned instance is compared with the same instance in the nearest
  recorded execute answer that contains it (same file, same health situation).
* ``GET /v1/query``: sorted by ID, and IDs are random: the emulator's list must be sorted by its
  own IDs, and each element is compared with the recorded element whose ID maps to it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from golden_compare import Actual, CompareContext, Rule, RuleBook, compare_value
from golden_loader import HttpExchange, load_recordings

AGENT_NODES = {"dc1": "n1", "dc2": "n2"}


def _instance_key(node: Any) -> tuple[str, str]:
    if not isinstance(node, dict):
        return ("", "")
    return (
        str((node.get("Node") or {}).get("Node", "")),
        str((node.get("Service") or {}).get("ID", "")),
    )


def _is_execute(exchange: HttpExchange) -> bool:
    return (
        exchange.route.startswith("/v1/query/")
        and exchange.route.endswith("/execute")
        and exchange.status == 200
        and isinstance(exchange.body, dict)
    )


def _is_list(exchange: HttpExchange) -> bool:
    return exchange.route == "/v1/query" and exchange.method == "GET" and exchange.status == 200


@cache
def _recorded_executes() -> dict[str, list[HttpExchange]]:
    """Every recorded successful execute answer, per file, in recording order."""
    out: dict[str, list[HttpExchange]] = {}
    for recorded in load_recordings():
        out[recorded.name] = [e for e in recorded.http if _is_execute(e)]
    return out


def _reference_instance(exchange: HttpExchange, key: tuple[str, str]) -> Any | None:
    """The instance ``key`` in the nearest recorded (unlimited) execute answer of the same file
    and query that contains it (searching backwards first, then forwards)."""
    candidates = _recorded_executes().get(exchange.file, [])
    before = [e for e in candidates if e.position < exchange.position]
    after = [e for e in candidates if e.position > exchange.position]
    for other in [*reversed(before), *after]:
        if "limit" in other.query:
            continue
        if other.body.get("Service") != exchange.body.get("Service"):
            continue
        for node in other.body.get("Nodes") or []:
            if _instance_key(node) == key:
                return node
    return None


def _compare_execute(exchange: HttpExchange, actual: Actual, ctx: CompareContext) -> None:
    body = actual.json()
    recorded: dict[str, Any] = exchange.body
    if not isinstance(body, dict) or not isinstance(body.get("Nodes"), list):
        ctx.fail("body", f"not an execute answer: {actual.text[:200]!r}")
        return
    if list(body) != list(recorded):
        ctx.fail("body", f"keys {list(body)} != recorded {list(recorded)} (in order)")
        return
    for name in recorded:
        if name != "Nodes":
            compare_value(recorded[name], body[name], f"body.{name}", ctx, name)
    rec_nodes: list[Any] = recorded["Nodes"]
    act_nodes: list[Any] = body["Nodes"]
    if len(act_nodes) != len(rec_nodes):
        act_ids = sorted(_instance_key(n)[1] for n in act_nodes)
        rec_ids = sorted(_instance_key(n)[1] for n in rec_nodes)
        ctx.fail("body.Nodes", f"{len(act_nodes)} instances {act_ids} != recorded {rec_ids}")
        return
    near = (exchange.query.get("near") or [""])[0]
    if near and body.get("Datacenter") == exchange.datacenter:
        agent = AGENT_NODES[exchange.datacenter] if near == "_agent" else near
        on_agent = [_instance_key(n)[0] == agent for n in act_nodes]
        if on_agent != sorted(on_agent, reverse=True):
            ctx.fail("body.Nodes", f"instances on {agent} are not first with ?near={near}")
    limit = (exchange.query.get("limit") or [""])[0]
    limited = limit.isdigit() and int(limit) > 0 and len(rec_nodes) > 0
    if limited:
        for i, node in enumerate(act_nodes):
            reference = _reference_instance(exchange, _instance_key(node))
            if reference is None:
                ctx.fail(f"body.Nodes[{i}]", f"instance {_instance_key(node)} never recorded")
                continue
            compare_value(reference, node, f"body.Nodes[{i}]", ctx)
        return
    rec_sorted = sorted(rec_nodes, key=_instance_key)
    act_sorted = sorted(act_nodes, key=_instance_key)
    rec_keys = [_instance_key(n) for n in rec_sorted]
    act_keys = [_instance_key(n) for n in act_sorted]
    if rec_keys != act_keys:
        ctx.fail("body.Nodes", f"instances {act_keys} != recorded {rec_keys} (as sets)")
        return
    for rec, act in zip(rec_sorted, act_sorted, strict=True):
        compare_value(rec, act, f"body.Nodes[{_instance_key(rec)[1]}]", ctx)


def _compare_list(exchange: HttpExchange, actual: Actual, ctx: CompareContext) -> None:
    body = actual.json()
    recorded: list[Any] = exchange.body
    if not isinstance(body, list) or len(body) != len(recorded):
        ctx.fail(
            "body",
            f"{len(body) if isinstance(body, list) else body!r} queries != recorded "
            f"{len(recorded)}",
        )
        return
    act_ids = [q.get("ID", "") for q in body]
    if act_ids != sorted(act_ids):
        ctx.fail("body", f"not sorted by ID: {act_ids}")
    by_id = {q.get("ID"): q for q in body}
    for rec in recorded:
        mapped = ctx.id_map.get(rec["ID"])
        if mapped is None:
            # not seen before: map by name (unique among queries)
            mapped = next((q.get("ID") for q in body if q.get("Name") == rec["Name"]), None)
        act = by_id.get(mapped)
        if act is None:
            ctx.fail("body", f"no query for recorded {rec['ID']} ({rec['Name']!r})")
            continue
        compare_value(rec, act, f"body[{rec['Name']!r}]", ctx)


def register_rules(book: RuleBook) -> None:
    """Add the prepared-query rules ahead of the defaults."""
    book.add(
        Rule("prepared query execute: shuffled instances", _is_execute, _compare_execute),
        first=True,
    )
    book.add(Rule("prepared query list: sorted by random IDs", _is_list, _compare_list), first=True)
