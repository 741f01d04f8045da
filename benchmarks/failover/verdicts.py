"""The issue's targets for mcresolve, checked against a run's summaries (pure)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Verdict", "evaluate"]

STAGE3 = "mcresolve-query"
STAGE3_HEDGED = "mcresolve-query-hedged"
SIDECAR = "sidecar"
WATCHING_STAGES = ("mcresolve-health", "mcresolve-query")
FLIP_TARGET = 0.050
HEDGE_NEAR_FACTOR = 2.0
"""'Near the hedge delay': a hedged read costs the hedge delay plus one normal read, so its p99
should stay within twice (hedge delay + p99 before the fault), far below an attempt timeout."""
DC_LOST = "dc-storage-lost"
DC_LOST_FIRST_SUCCESS = 0.100
"""Standby target: the first request after the whole local datacenter's storage died succeeds
within 100 ms (the peers that simply try the next address do)."""
DATA_PATH_RTT = 0.0
"""Inter-datacenter round trip on the benchmark's data path: every storage node listens on
loopback (the topology's 40 ms RTT applies to Consul's WAN only), so none."""
DC_LOST_P99_FACTOR = 2.0
"""p99 during the datacenter loss at most 2 x (inter-datacenter RTT + p99 before)."""
STATIC_PEERS = ("multiminio", "haproxy")
BLACKHOLE_SLACK = 0.25
"""Seconds allowed above one attempt timeout for the blackholed-node attempt (scheduling on a
loaded 2-core machine)."""


@dataclass(frozen=True)
class Verdict:
    """One target checked on one scenario run."""

    target: str
    scenario: str
    workload: str
    passed: bool
    detail: str


def _failure_window(peer: dict[str, Any], during: float) -> float:
    """Seconds until steady (the whole fault and more when never steady)."""
    steady = peer.get("steady_s")
    return math.inf if steady is None else float(steady)


def evaluate(
    summaries: list[dict[str, Any]],
    *,
    attempt_timeout: float,
    hedge_delay: float | None,
    request_interval: float = 0.0,
) -> list[Verdict]:
    """Every verdict that the runs allow (a target whose peer did not run is not judged).

    ``request_interval`` (1 / the per-peer rate) is the resolution of a steady time: requests
    are scheduled that far apart, so a peer steady less than one interval earlier than stage 3
    with as few failures does not count as better (the same instant, read off another
    request)."""
    out: list[Verdict] = []
    for run in summaries:
        peers = run["peers"]
        scenario, workload = run["scenario"], run["workload"]

        def add(
            target: str, passed: bool, detail: str, where: tuple[str, str] = (scenario, workload)
        ) -> None:
            out.append(Verdict(target, where[0], where[1], passed, detail))

        stage3 = peers.get(STAGE3)
        if stage3 is not None and "unavailable" not in stage3 and run["healthy_elsewhere"]:
            failed = stage3["failed_reads"]
            add("stage 3: zero failed reads", failed == 0, f"{failed} failed reads")
        sidecar = peers.get(SIDECAR)
        if (
            stage3 is not None
            and sidecar is not None
            and "unavailable" not in stage3
            and "unavailable" not in sidecar
            and stage3["failed"] == 0
        ):
            add(
                "sidecar fails no request where stage 3 fails none",
                sidecar["failed"] == 0,
                f"sidecar: {sidecar['failed']} failed ({sidecar['failed_reads']} reads)",
            )
        if scenario == "node-blackhole" and stage3 is not None and "unavailable" not in stage3:
            worst = stage3["phases"]["during"]["latency"]["max"]
            limit = attempt_timeout + BLACKHOLE_SLACK
            add(
                "blackholed node costs at most one attempt timeout",
                worst is not None and worst <= limit and stage3["failed"] == 0,
                f"max latency {_s(worst)} vs {attempt_timeout:g} s attempt timeout; "
                f"{stage3['failed']} failed",
            )
        hedged = peers.get(STAGE3_HEDGED)
        if (
            scenario == "node-blackhole"
            and hedge_delay is not None
            and hedged is not None
            and "unavailable" not in hedged
        ):
            p99 = hedged["phases"]["during"]["latency"]["p99"]
            base = hedged["phases"]["before"]["latency"]["p99"] or 0.0
            limit = HEDGE_NEAR_FACTOR * (hedge_delay + base)
            add(
                "hedging brings blackhole p99 near the hedge delay",
                p99 is not None and p99 <= limit,
                f"p99 {_s(p99)}; limit {HEDGE_NEAR_FACTOR:g} x (hedge delay {hedge_delay:g} s"
                f" + p99 before {_s(base)}) = {_s(limit)}",
            )
        if scenario == DC_LOST and stage3 is not None and "unavailable" not in stage3:
            first = stage3.get("first_success_s")
            add(
                "datacenter lost: first success within 100 ms (stage 3)",
                first is not None and first <= DC_LOST_FIRST_SUCCESS,
                f"first success {_s(first)}",
            )
            p99 = stage3["phases"]["during"]["latency"]["p99"]
            base = stage3["phases"]["before"]["latency"]["p99"] or 0.0
            limit = DC_LOST_P99_FACTOR * (DATA_PATH_RTT + base)
            add(
                "datacenter lost: p99 <= 2 x (inter-DC RTT + p99 before) (stage 3)",
                p99 is not None and p99 <= limit,
                f"p99 {_s(p99)}; limit {_s(limit)}",
            )
            for kind in STATIC_PEERS:
                peer = peers.get(kind)
                if peer is None or "unavailable" in peer:
                    continue
                mine = (first, p99)
                theirs = (peer.get("first_success_s"), peer["phases"]["during"]["latency"]["p99"])
                better = all(
                    m is not None and (t is None or m < t)
                    for m, t in zip(mine, theirs, strict=True)
                )
                add(
                    f"datacenter lost: stage 3 better than {kind} on first success and p99",
                    better,
                    f"stage 3 {_s(mine[0])} / p99 {_s(mine[1])}; "
                    f"{kind} {_s(theirs[0])} / p99 {_s(theirs[1])}",
                )
        if run["flip"]:
            for kind in WATCHING_STAGES:
                peer = peers.get(kind)
                if peer is None or "unavailable" in peer:
                    continue
                last = peer["victim_after_fault"].get("last_after_s")
                dropped = peer.get("victim_dropped_after_s")
                add(
                    f"health flip reflected in < 50 ms ({kind})",
                    dropped is not None
                    and dropped < FLIP_TARGET
                    and (last is None or last < FLIP_TARGET),
                    (
                        "pool never dropped the node"
                        if dropped is None
                        else f"pool dropped the node {dropped * 1000:.1f} ms after the flip"
                    )
                    + (
                        "; no later attempt to it"
                        if last is None
                        else f"; last attempt to it {last * 1000:.1f} ms after the flip"
                    ),
                )
        if stage3 is not None and "unavailable" not in stage3:
            during = run["times"]["heal"] - run["times"]["fault"]
            mine = (stage3["failed"], _failure_window(stage3, during))
            behind = []
            for kind, peer in peers.items():
                if kind.startswith("mcresolve") or "unavailable" in peer:
                    continue
                theirs = (peer["failed"], _failure_window(peer, during))
                if theirs[0] < mine[0] or (
                    theirs[0] == mine[0] and theirs[1] + request_interval < mine[1]
                ):
                    behind.append(f"{kind} ({theirs[0]} failed, steady {_s(theirs[1])})")
            add(
                "no peer beats stage 3 (failed requests, then failover window)",
                not behind,
                f"stage 3: {mine[0]} failed, steady {_s(mine[1])}"
                + (f"; better: {', '.join(behind)}" if behind else ""),
            )
    return out


def _s(value: float | None) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "never"
    return f"{value:.3f} s"


def verdicts_json(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """Verdicts as JSON-able dicts."""
    return [asdict(v) for v in verdicts]
