"""The sidecar's health, decided from values: ``/health``'s status and body (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mcresolve.pool import PoolSnapshot
from mcresolve.sidecar.listener import ListenerStats

__all__ = ["HealthReport", "ListenerView", "health_report", "snapshot_json"]


@dataclass(frozen=True, slots=True)
class ListenerView:
    """One listener as the health report sees it."""

    listen: str
    mode: str
    target: str
    snapshot: PoolSnapshot
    stats: ListenerStats


@dataclass(frozen=True, slots=True)
class HealthReport:
    status: int
    """200 ready, 503 not (draining, or a pool without a usable endpoint)."""
    body: dict[str, Any]


def snapshot_json(snapshot: PoolSnapshot) -> dict[str, Any]:
    """What ``/health`` shows of a pool (endpoint addresses and states, no credentials)."""
    return {
        "pool": snapshot.name,
        "usable": snapshot.usable,
        "panic": snapshot.panic,
        "active_datacenter": snapshot.active_datacenter,
        "failed_over": snapshot.failed_over,
        "stale": snapshot.stale,
        "source_error": snapshot.source_error,
        "endpoints": [
            {
                "address": s.endpoint.host_port,
                "node": s.endpoint.node,
                "datacenter": s.datacenter,
                "state": s.state,
                "in_flight": s.in_flight,
                "ejected_reason": None if s.ejected_reason is None else s.ejected_reason.value,
            }
            for s in snapshot.endpoints
        ],
    }


def health_report(listeners: Sequence[ListenerView], *, draining: bool) -> HealthReport:
    """200 when not draining and every listener's pool has a usable endpoint, else 503.

    Every pool, not any: a client given one sidecar address per target cannot route around one
    broken listener, so the process is unready as a whole (Envoy's ``/ready`` is likewise one
    answer for the process, and turns 503 while draining)."""
    missing = [v.listen for v in listeners if v.snapshot.usable == 0]
    ready = not draining and not missing
    body: dict[str, Any] = {
        "status": "draining" if draining else ("ok" if ready else "unavailable"),
        "listeners": [
            {
                "listen": v.listen,
                "mode": v.mode,
                "target": v.target,
                "active_connections": v.stats.active_connections,
                **snapshot_json(v.snapshot),
            }
            for v in listeners
        ],
    }
    if missing:
        body["without_endpoint"] = missing
    return HealthReport(200 if ready else 503, body)
