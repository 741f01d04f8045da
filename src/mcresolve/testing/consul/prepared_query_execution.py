"""How Consul 1.0.8 executes a prepared query: filtering, ordering, limit and failover. Pure.

Mirrors ``agent/consul/prepared_query_endpoint.go``:

* ``execute``: the service's instances minus those with a ``critical`` check (or any non-passing
  check when ``OnlyPassing``), skipping ``IgnoreCheckIDs``; then ``NodeMeta`` (every pair must
  match) and ``Tags`` (all plain tags required, ``!tag`` excluded, case-insensitively);
* ``Execute``: shuffle, optional distance sort from ``?near=`` / ``Service.Near`` (``_agent`` = the
  agent's node) with that node moved to the front, then ``?limit`` (only when > 0); failover runs
  only when nothing is left;
* ``queryFailover``: the ``NearestN`` nearest other datacenters, then ``Failover.Datacenters``
  entries that are known and not already chosen; each is tried in turn until one returns
  instances. ``Failovers`` counts the attempts, and ``Datacenter`` is the last datacenter that
  answered (a datacenter that errors leaves it unchanged, so a dead remote keeps the local name).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .contracts import HealthEntry

PASSING = "passing"
CRITICAL = "critical"


def _healthy(entry: HealthEntry, only_passing: bool, ignore_check_ids: Sequence[str]) -> bool:
    for check in entry.get("Checks") or []:
        if check.get("CheckID") in ignore_check_ids:
            continue
        status = check.get("Status")
        if status == CRITICAL or (only_passing and status != PASSING):
            return False
    return True


def _meta_matches(entry: HealthEntry, node_meta: dict[str, str]) -> bool:
    meta = (entry.get("Node") or {}).get("Meta") or {}
    return all(key in meta and meta[key] == value for key, value in node_meta.items())


def _tags_match(entry: HealthEntry, tags: Sequence[str]) -> bool:
    present = {tag.lower() for tag in (entry.get("Service") or {}).get("Tags") or []}
    for tag in tags:
        wanted = tag.lower()
        if wanted.startswith("!"):
            if wanted[1:] in present:
                return False
        elif wanted not in present:
            return False
    return True


def filter_instances(entries: Sequence[HealthEntry], service: dict[str, Any]) -> list[HealthEntry]:
    """The instances a query's ``Service`` block keeps (Consul's ``execute`` filters)."""
    only_passing = bool(service.get("OnlyPassing"))
    ignore = list(service.get("IgnoreCheckIDs") or [])
    node_meta = service.get("NodeMeta") or {}
    tags = service.get("Tags") or []
    kept = [entry for entry in entries if _healthy(entry, only_passing, ignore)]
    if node_meta:
        kept = [entry for entry in kept if _meta_matches(entry, node_meta)]
    if tags:
        kept = [entry for entry in kept if _tags_match(entry, tags)]
    return kept


def rpc_rendering(entries: Sequence[HealthEntry]) -> list[HealthEntry]:
    """The instances as an execute answer renders them: ``/v1/health/service`` turns nil tag
    lists into ``[]``, but execute results come through RPC untouched, so an empty
    ``Service.Tags`` or check ``ServiceTags`` is ``null`` there (recorded in 06)."""
    rendered = []
    for entry in entries:
        entry = dict(entry)
        service = entry.get("Service")
        if isinstance(service, dict) and service.get("Tags") == []:
            entry["Service"] = {**service, "Tags": None}
        checks = entry.get("Checks")
        if isinstance(checks, list):
            entry["Checks"] = [
                {**check, "ServiceTags": None} if check.get("ServiceTags") == [] else check
                for check in checks
            ]
        rendered.append(entry)
    return rendered


def shuffled(entries: Sequence[HealthEntry], rng: random.Random) -> list[HealthEntry]:
    """A uniformly shuffled copy (Consul shuffles on every execution)."""
    result = list(entries)
    rng.shuffle(result)
    return result


def move_node_first(entries: Sequence[HealthEntry], node: str) -> list[HealthEntry]:
    """Swap the first instance on ``node`` into position 0 (what Consul does after a distance
    sort when the results come from the source's datacenter)."""
    result = list(entries)
    for index, entry in enumerate(result):
        if (entry.get("Node") or {}).get("Node") == node:
            result[0], result[index] = result[index], result[0]
            break
    return result


def limited(entries: Sequence[HealthEntry], limit: int | None) -> list[HealthEntry]:
    """``?limit``: cut to ``limit`` entries when it is positive; 0, negative or ``None``: all."""
    if limit is not None and limit > 0:
        return list(entries[:limit])
    return list(entries)


def failover_targets(failover: dict[str, Any], others_by_rtt: Sequence[str]) -> list[str]:
    """The datacenters ``queryFailover`` tries, in order.

    ``others_by_rtt``: every other known datacenter, nearest first (the local one excluded).
    Unknown names in ``Failover.Datacenters`` are skipped, duplicates of the ``NearestN`` choice
    are not tried twice (but repeated names in the list itself are, as in Consul).
    """
    nearest_n = int(failover.get("NearestN") or 0)
    targets = list(others_by_rtt[:nearest_n]) if nearest_n > 0 else []
    chosen = set(targets)
    known = set(others_by_rtt)
    for dc in failover.get("Datacenters") or []:
        if dc in known and dc not in chosen:
            targets.append(dc)
    return targets


@dataclass(frozen=True)
class FailoverOutcome:
    """What failover produced: the instances, the datacenter that last answered (``None`` if
    none did) and the number of datacenters tried."""

    nodes: list[HealthEntry]
    datacenter: str | None
    failovers: int


class RemoteFailed(Exception):
    """Raised by a failover attempt when the remote datacenter cannot be queried."""


def run_failover(
    targets: Sequence[str], attempt: Callable[[str], list[HealthEntry]]
) -> FailoverOutcome:
    """Try ``targets`` in order with ``attempt(dc)`` (which returns that datacenter's filtered,
    shuffled, limited instances, or raises :class:`RemoteFailed`) until one has instances."""
    nodes: list[HealthEntry] = []
    answered: str | None = None
    failovers = 0
    for dc in targets:
        failovers += 1
        nodes = []
        try:
            nodes = attempt(dc)
        except RemoteFailed:
            continue
        answered = dc
        if nodes:
            break
    return FailoverOutcome(nodes, answered, failovers)
