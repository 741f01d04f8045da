"""Pure parts of the failover benchmark: statistics, phases, steady state, visits, bins."""

from __future__ import annotations

import math

import pytest
from benchmarks.failover.plots import failure_bins
from benchmarks.failover.records import NodeVisit, Operation, Phase, RequestRecord, ScenarioTimes
from benchmarks.failover.stats import (
    percentile,
    phase_stats,
    slow_threshold,
    split_phases,
    summarize_visits,
    time_to_first_success,
    time_to_steady,
)
from benchmarks.failover.workload import WorkloadSettings, operation_at
from hypothesis import given
from hypothesis import strategies as st

TIMES = ScenarioTimes(fault=10.0, heal=20.0, end=25.0)


def req(
    at: float, latency: float = 0.01, ok: bool = True, error: str | None = None
) -> RequestRecord:
    return RequestRecord(Operation.READ, at, at, at + latency, ok, None if ok else error or "x")


def steady_stream(start: float, stop: float, step: float = 0.1) -> list[RequestRecord]:
    out = []
    t = start
    while t < stop - 1e-9:
        out.append(req(t))
        t += step
    return out


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert percentile([1.0, 2.0], 100) == 2.0
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1), st.floats(0, 100))
def test_percentile_within_range_and_monotonic(values: list[float], q: float) -> None:
    p = percentile(values, q)
    assert min(values) <= p <= max(values)
    assert percentile(values, min(100.0, q + 1)) >= p - 1e-9


def test_phases_put_requests_running_at_the_fault_into_the_fault() -> None:
    before = req(5.0)
    straddling = req(9.99, latency=0.5)
    during = req(15.0)
    after = req(21.0)
    phases = split_phases([before, straddling, during, after], TIMES)
    assert phases[Phase.BEFORE] == [before]
    assert phases[Phase.DURING] == [straddling, during]
    assert phases[Phase.AFTER] == [after]


def test_phase_stats_count_failures_and_summarize_successes_only() -> None:
    records = [req(1.0, 0.010), req(1.1, 0.020), req(1.2, 3.0, ok=False, error="deadline")]
    stats = phase_stats(records)
    assert (stats.requests, stats.failed) == (3, 1)
    assert stats.errors == {"deadline": 1}
    assert stats.latency.count == 2
    assert stats.latency.max == pytest.approx(0.020)
    empty = phase_stats([])
    assert empty.latency.p50 is None and empty.failed == 0


def test_first_success_ignores_requests_scheduled_before_the_fault() -> None:
    records = [req(9.0), req(10.0, ok=False), req(10.5, 0.2), req(11.0)]
    assert time_to_first_success(records, 10.0) == pytest.approx(0.7)
    assert time_to_first_success([req(10.0, ok=False)], 10.0) is None


def test_steady_is_zero_without_disturbance() -> None:
    records = steady_stream(0, 25)
    assert time_to_steady(records, TIMES, baseline_p99=0.01) == 0.0


def test_steady_starts_after_the_last_failure() -> None:
    records = steady_stream(0, 10) + [req(10.0 + i * 0.1, ok=False) for i in range(10)]
    records += steady_stream(11.0, 25)
    steady = time_to_steady(records, TIMES, baseline_p99=0.01)
    assert steady == pytest.approx(1.0, abs=1e-6)


def test_steady_is_none_when_failures_last_until_the_heal() -> None:
    records = [req(10.0 + i * 0.1, ok=False) for i in range(100)]
    assert time_to_steady(records, TIMES, baseline_p99=0.01) is None


def test_steady_counts_slow_requests_as_disturbed() -> None:
    slow = [req(10.0 + i * 0.1, latency=0.5) for i in range(20)]
    records = steady_stream(0, 10) + slow + steady_stream(12.0, 20)
    steady = time_to_steady(records, TIMES, baseline_p99=0.01)
    assert steady == pytest.approx(2.0, abs=1e-6)
    assert slow_threshold(0.01) == pytest.approx(0.06)
    assert slow_threshold(None) == math.inf


def test_steady_tolerates_a_rare_slow_request() -> None:
    records = steady_stream(10, 20, step=0.05)
    records[100] = req(records[100].scheduled, latency=1.0)
    assert time_to_steady(records, TIMES, baseline_p99=0.01, tolerance=0.01) == 0.0
    assert time_to_steady(records, TIMES, baseline_p99=0.01, tolerance=0.0) > 5.0


def test_visit_summary_counts_attempts_to_one_node_after_a_moment() -> None:
    visits = [NodeVisit(9.0, "a"), NodeVisit(10.2, "a"), NodeVisit(10.5, "b"), NodeVisit(11, "a")]
    summary = summarize_visits(visits, "a", 10.0)
    assert summary.attempts == 2
    assert summary.last_after == pytest.approx(1.0)
    assert summarize_visits(visits, "c", 10.0).last_after is None


def test_failure_bins() -> None:
    records = [
        req(0.1, ok=False),
        req(0.2),
        req(0.6, ok=False),
        req(0.7, ok=False),
        req(9.0, ok=False),
    ]
    assert failure_bins(records, 0.5, 0.0, 1.0) == [1, 2]
    with pytest.raises(ValueError):
        failure_bins(records, 0, 0.0, 1.0)


def test_mixed_workload_writes_every_fifth_request() -> None:
    mixed = WorkloadSettings(mixed=True, write_every=5)
    ops = [operation_at(i, mixed) for i in range(10)]
    assert ops.count(Operation.WRITE) == 2 and ops[4] is Operation.WRITE
    assert all(operation_at(i, WorkloadSettings()) is Operation.READ for i in range(10))
