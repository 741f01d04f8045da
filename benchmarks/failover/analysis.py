"""From the raw data of one scenario run to its JSON-able summary (pure)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.failover.records import (
    NodeVisit,
    Operation,
    Phase,
    PoolChange,
    RequestRecord,
    ScenarioTimes,
)
from benchmarks.failover.stats import (
    phase_stats,
    split_phases,
    summarize_visits,
    time_to_first_success,
    time_to_steady,
)

__all__ = ["PeerRun", "ScenarioRun", "summarize_peer", "summarize_run"]

MARKS = ("warm", "fault", "heal", "end")
"""Moments the Consul request counters are read: after warm-up, at fault, at heal, at the end."""


@dataclass
class PeerRun:
    """Raw data of one peer in one scenario run (times relative to the scenario's origin)."""

    kind: str
    description: str
    records: list[RequestRecord] = field(default_factory=list)
    visits: list[NodeVisit] = field(default_factory=list)
    pool_changes: list[PoolChange] = field(default_factory=list)
    knows_nodes: bool = True
    consul_counts: dict[str, int] = field(default_factory=dict)
    consul_breakdown: dict[str, int] = field(default_factory=dict)
    unavailable: str | None = None
    """Why the peer could not take part (it did not start), else None."""


@dataclass
class ScenarioRun:
    """Raw data of one scenario run: the fault's times and every peer's records."""

    scenario: str
    title: str
    workload: str
    times: ScenarioTimes
    warmup: float
    victim: str
    healthy_elsewhere: bool
    flip: bool
    peers: list[PeerRun]
    node_fault: bool = True


def _phase_json(records: list[RequestRecord]) -> dict[str, Any]:
    stats = phase_stats(records)
    return {
        "requests": stats.requests,
        "failed": stats.failed,
        "errors": stats.errors,
        "latency": asdict(stats.latency),
    }


def summarize_peer(peer: PeerRun, run: ScenarioRun) -> dict[str, Any]:
    """One peer's numbers in one scenario (see ``stats`` for the definitions)."""
    if peer.unavailable is not None:
        return {"kind": peer.kind, "description": peer.description, "unavailable": peer.unavailable}
    times = run.times
    records = [r for r in peer.records if r.scheduled >= run.warmup]
    phases = split_phases(records, times)
    before = phase_stats(phases[Phase.BEFORE])
    reads = [r for r in records if r.operation is Operation.READ]
    writes = [r for r in records if r.operation is Operation.WRITE]
    affected = phases[Phase.DURING] + phases[Phase.AFTER]
    counts = peer.consul_counts
    consul: dict[str, int | None] = {
        "before": _delta(counts, "warm", "fault"),
        "during": _delta(counts, "fault", "heal"),
        "after": _delta(counts, "heal", "end"),
    }
    summary: dict[str, Any] = {
        "kind": peer.kind,
        "description": peer.description,
        "requests": len(records),
        "failed": sum(1 for r in affected if not r.ok),
        "failed_reads": sum(1 for r in affected if not r.ok and r.operation is Operation.READ),
        "failed_writes": sum(1 for r in affected if not r.ok and r.operation is Operation.WRITE),
        "reads": len(reads),
        "writes": len(writes),
        "first_success_s": time_to_first_success(records, times.fault),
        "steady_s": time_to_steady(records, times, before.latency.p99),
        "phases": {phase.value: _phase_json(phases[phase]) for phase in Phase},
        "consul_requests": consul,
        "consul_breakdown": dict(sorted(peer.consul_breakdown.items())),
    }
    removals = [
        c.at - times.fault
        for c in peer.pool_changes
        if c.node == run.victim and c.at >= times.fault and c.kind in ("removed", "ejected")
    ]
    summary["victim_dropped_after_s"] = min(removals) if removals else None
    if not run.node_fault:
        summary["victim_after_fault"] = {"unknown": "no node is faulted in this scenario"}
    elif peer.knows_nodes:
        visits = summarize_visits(peer.visits, run.victim, times.fault)
        during_visits = [v for v in peer.visits if times.fault <= v.at < times.heal]
        summary["victim_after_fault"] = {
            "attempts": sum(1 for v in during_visits if v.node == run.victim),
            "attempts_total": len(during_visits),
            "last_after_s": _last_before(peer.visits, run.victim, times.fault, times.heal),
            "any_after_s": visits.last_after,
        }
    else:
        summary["victim_after_fault"] = {
            "unknown": "HAProxy picks the node; the client cannot tell which"
        }
    return summary


def _last_before(visits: list[NodeVisit], node: str, start: float, end: float) -> float | None:
    times = [v.at for v in visits if v.node == node and start <= v.at < end]
    return (max(times) - start) if times else None


def _delta(counts: dict[str, int], start: str, end: str) -> int | None:
    if start not in counts or end not in counts:
        return None
    return counts[end] - counts[start]


def summarize_run(run: ScenarioRun) -> dict[str, Any]:
    """The JSON-able summary of a scenario run."""
    return {
        "scenario": run.scenario,
        "title": run.title,
        "workload": run.workload,
        "victim": run.victim,
        "healthy_elsewhere": run.healthy_elsewhere,
        "flip": run.flip,
        "times": {
            "warmup": run.warmup,
            "fault": run.times.fault,
            "heal": run.times.heal,
            "end": run.times.end,
        },
        "peers": {peer.kind: summarize_peer(peer, run) for peer in run.peers},
    }
