"""Pure statistics over request records: percentiles, per-phase summaries, failover windows.

Definitions (also in ``docs/benchmarks.md``):

* Latency is measured from the *scheduled* send time (open loop: queueing behind a stuck
  request counts) to the answer, over *successful* requests only; failures are counted apart.
* Percentiles interpolate linearly between closest ranks (numpy's default ``linear``).
* Time to first success: from the fault to the completion of the first successful request that
  was scheduled at or after the fault.
* Phases: a request belongs to the phase of its scheduled time, except that one scheduled
  before the fault but still running when it began belongs to the fault.
* Time to steady state: from the fault to the send time of the first request of the fault
  phase from which on every request succeeded and at most ``tolerance`` of them were slow
  (latency above ``max(3 x p99 before, p99 before + 50 ms)``), with at least ``min_samples``
  requests left. ``None`` when the fault ended before that happened.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from benchmarks.failover.records import NodeVisit, Phase, RequestRecord, ScenarioTimes

__all__ = [
    "LatencySummary",
    "PhaseStats",
    "VisitSummary",
    "percentile",
    "phase_stats",
    "slow_threshold",
    "split_phases",
    "summarize_latencies",
    "summarize_visits",
    "time_to_first_success",
    "time_to_steady",
]

STEADY_FACTOR = 3.0
STEADY_MARGIN = 0.050


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linear between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class LatencySummary:
    """p50/p99/max in seconds over ``count`` successful requests (``None`` when there were none)."""

    count: int
    p50: float | None
    p99: float | None
    max: float | None


def summarize_latencies(latencies: Sequence[float]) -> LatencySummary:
    """Summary of a list of latencies."""
    if not latencies:
        return LatencySummary(0, None, None, None)
    return LatencySummary(
        len(latencies), percentile(latencies, 50), percentile(latencies, 99), max(latencies)
    )


@dataclass(frozen=True)
class PhaseStats:
    """What happened to the requests scheduled in one phase."""

    requests: int
    failed: int
    latency: LatencySummary
    errors: dict[str, int]


def split_phases(
    records: Iterable[RequestRecord], times: ScenarioTimes
) -> dict[Phase, list[RequestRecord]]:
    """Records grouped by the phase of their scheduled time (every phase present)."""
    phases: dict[Phase, list[RequestRecord]] = {phase: [] for phase in Phase}
    for record in records:
        phases[times.phase_of(record)].append(record)
    return phases


def phase_stats(records: Sequence[RequestRecord]) -> PhaseStats:
    """Counts, latency summary (successes only) and error kinds of a phase's records."""
    failed = [r for r in records if not r.ok]
    errors = Counter(r.error or "unknown" for r in failed)
    return PhaseStats(
        requests=len(records),
        failed=len(failed),
        latency=summarize_latencies([r.latency for r in records if r.ok]),
        errors=dict(sorted(errors.items())),
    )


def time_to_first_success(records: Iterable[RequestRecord], fault: float) -> float | None:
    """Seconds from ``fault`` to the first success among requests scheduled at or after it."""
    finishes = [r.finished for r in records if r.ok and r.scheduled >= fault]
    return min(finishes) - fault if finishes else None


def slow_threshold(baseline_p99: float | None) -> float:
    """Latency above which a request counts as disturbed (``inf`` without a baseline)."""
    if baseline_p99 is None:
        return math.inf
    return max(STEADY_FACTOR * baseline_p99, baseline_p99 + STEADY_MARGIN)


def time_to_steady(
    records: Iterable[RequestRecord],
    times: ScenarioTimes,
    baseline_p99: float | None,
    *,
    tolerance: float = 0.01,
    min_samples: int = 5,
) -> float | None:
    """Seconds from the fault until the peer is steady again (see the module docstring)."""
    during = sorted(
        (r for r in records if times.phase_of(r) is Phase.DURING), key=lambda r: r.scheduled
    )
    threshold = slow_threshold(baseline_p99)
    # Suffix counts: failures and slow successes among during[i:].
    n = len(during)
    failed_after = [0] * (n + 1)
    slow_after = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        record = during[i]
        failed_after[i] = failed_after[i + 1] + (0 if record.ok else 1)
        slow_after[i] = slow_after[i + 1] + (1 if record.ok and record.latency > threshold else 0)
    for index in range(n):
        remaining = n - index
        if remaining < min_samples:
            return None
        if failed_after[index] == 0 and slow_after[index] <= tolerance * remaining:
            return max(0.0, during[index].scheduled - times.fault)
    return None


@dataclass(frozen=True)
class VisitSummary:
    """Attempts a peer sent to one node after a moment: how many, and the last one's delay."""

    attempts: int
    last_after: float | None


def summarize_visits(visits: Iterable[NodeVisit], node: str, since: float) -> VisitSummary:
    """Attempts to ``node`` at or after ``since`` and the delay of the last one."""
    times = [v.at for v in visits if v.node == node and v.at >= since]
    return VisitSummary(len(times), (max(times) - since) if times else None)
