"""The demo's pure parts: statistics, expectations and verdicts, the table."""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcresolve.demo.measure import (
    LOCAL_ONLY,
    SHOPPERS,
    SIDECAR,
    WRITES,
    PhaseStats,
    Sample,
    percentile,
    summarize,
)
from mcresolve.demo.processes import storefront_code
from mcresolve.demo.report import (
    HEADERS,
    TABLE_WIDTH,
    PhaseResult,
    fault_visible,
    render_table,
    table_rows,
)
from mcresolve.demo.runner import (
    STOREFRONT_ANSWER_MARGIN,
    STOREFRONT_OPERATION_FACTOR,
    DemoOptions,
    storefront_page_limit,
)
from mcresolve.demo.scenarios import (
    RECOVERED,
    Expectation,
    Fault,
    Phase,
    battery,
    judge,
    judge_all,
)
from mcresolve.demo.traffic import TrafficSettings


def _samples(traffic: str, spec: list[tuple[float, float, bool]], by: str = "dc1") -> list[Sample]:
    return [
        Sample(traffic, t, lat, ok, by if ok else "", "" if ok else "refused")
        for t, lat, ok in spec
    ]


def test_percentile_nearest_rank() -> None:
    values = [0.5, 0.1, 0.3, 0.2, 0.4]
    assert percentile(values, 0.5) == 0.3
    assert percentile(values, 0.99) == 0.5
    assert percentile(values, 0.0) == 0.1
    assert percentile([], 0.5) is None


@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=1), st.floats(0, 1))
def test_percentile_is_a_member_and_monotonic(values: list[float], fraction: float) -> None:
    p = percentile(values, fraction)
    assert p in values
    assert p is not None and p <= (percentile(values, 1.0) or 0)


def test_summarize_counts_only_the_window_and_class() -> None:
    samples = [
        *_samples(SHOPPERS, [(9.0, 0.1, False), (10.0, 0.1, True), (10.5, 0.2, False)]),
        *_samples(SHOPPERS, [(11.0, 0.3, True)], by="dc2"),
        *_samples(WRITES, [(10.2, 0.05, False)]),
        *_samples(SHOPPERS, [(20.0, 0.1, False)]),
    ]
    stats = summarize(samples, SHOPPERS, start=10.0, end=20.0)
    assert (stats.served, stats.failed) == (2, 1)
    assert abs(stats.failover_window - 0.7) < 1e-9  # the failure started 0.5 s in and took 0.2 s
    assert dict(stats.served_by) == {"dc1": 1, "dc2": 1}
    assert stats.p50 == 0.1 and stats.p99 == 0.3  # served requests only
    assert dict(stats.errors) == {"refused": 1}


def test_summarize_without_failures_has_no_window() -> None:
    stats = summarize(_samples(SHOPPERS, [(1.0, 0.1, True)]), SHOPPERS, start=0.0, end=5.0)
    assert stats.failover_window == 0.0 and stats.failed_fraction == 0.0


def _stats(traffic: str, spec: list[tuple[float, float, bool]], by: str = "dc1"):  # type: ignore[no-untyped-def]
    return summarize(_samples(traffic, spec, by), traffic, start=0.0, end=100.0)


def test_serving_allows_failures_only_within_the_failover_window() -> None:
    quick_failover = _stats(SHOPPERS, [(0.1, 0.5, False)] + [(1 + i, 0.1, True) for i in range(20)])
    assert judge(Expectation(SHOPPERS, max_window=3.0), quick_failover).ok
    late_failure = _stats(SHOPPERS, [(5.0, 0.1, False)] + [(1 + i, 0.1, True) for i in range(20)])
    verdict = judge(Expectation(SHOPPERS, max_window=3.0), late_failure)
    assert not verdict.ok and "5.1 s" in verdict.reason
    assert not judge(Expectation(SHOPPERS, max_window=0.0), quick_failover).ok


def test_serving_caps_the_failed_fraction() -> None:
    many = _stats(SHOPPERS, [(0.1 * i, 0.1, i % 2 == 0) for i in range(20)])
    assert not judge(Expectation(SHOPPERS, max_window=10.0, max_failed_fraction=0.25), many).ok


def test_expected_failure_must_show() -> None:
    mostly_failed = _stats(LOCAL_ONLY, [(i, 0.1, i == 0) for i in range(10)])
    assert judge(Expectation(LOCAL_ONLY, serves=False), mostly_failed).ok
    all_served = _stats(LOCAL_ONLY, [(i, 0.1, True) for i in range(10)])
    verdict = judge(Expectation(LOCAL_ONLY, serves=False), all_served)
    assert not verdict.ok and "did not show" in verdict.reason


def test_moving_to_the_other_datacenter_must_be_seen() -> None:
    local = _stats(SHOPPERS, [(i, 0.1, True) for i in range(5)], by="dc1")
    remote = _stats(SHOPPERS, [(i, 0.1, True) for i in range(5)], by="dc2")
    expectation = Expectation(SHOPPERS, moves_to="dc2")
    assert not judge(expectation, local).ok
    assert judge(expectation, remote).ok


def test_no_traffic_is_never_a_pass() -> None:
    assert not judge(Expectation(SHOPPERS), None).ok
    assert not judge(Expectation(SHOPPERS, serves=False), _stats(SHOPPERS, [])).ok


def test_battery_covers_the_article() -> None:
    scenarios = battery()
    faults = {s.fault for s in scenarios}
    assert faults == set(Fault)
    by_fault = {s.fault: s for s in scenarios}
    # stage 3 keeps serving, stage 2 local-only does not, when a datacenter's storage is lost
    dc_loss = {e.traffic: e for e in by_fault[Fault.STORAGE_DATACENTER].during}
    assert dc_loss[SHOPPERS].serves and not dc_loss[LOCAL_ONLY].serves
    # writes refused (MinIO's write quorum) with two nodes down, and the note says why
    two = by_fault[Fault.TWO_STORAGE_NODES]
    assert not {e.traffic: e for e in two.during}[WRITES].serves
    assert "XMinioWriteQuorum" in two.note
    assert {e.traffic: e for e in by_fault[Fault.STOREFRONT_DATACENTER].during}[
        SHOPPERS
    ].moves_to == "dc2"
    assert all(s.after == RECOVERED for s in scenarios)
    assert all(e.max_window == 0 for e in RECOVERED)


def _result(phase: Phase, ok: bool) -> PhaseResult:
    scenario = battery()[3]
    stats = {
        SHOPPERS: _stats(SHOPPERS, [(0.1, 0.01, True), (0.2, 0.03, True)], by="dc2"),
        LOCAL_ONLY: _stats(LOCAL_ONLY, [(0.1, 0.01, ok), (0.2, 0.01, False)]),
        SIDECAR: _stats(SIDECAR, [(0.1, 0.01, True)]),
        WRITES: _stats(WRITES, [(0.1, 0.02, True)]),
    }
    return PhaseResult(
        scenario,
        phase,
        stats,
        judge_all(scenario.during, stats),
        4.0,
        settle_seconds=1.5 if phase is Phase.RECOVERY else None,
    )


def test_table_rows_show_counts_latency_and_verdict() -> None:
    fault = _result(Phase.FAULT, ok=False)
    assert fault.ok
    row = dict(zip(HEADERS, table_rows([fault])[0], strict=True))
    assert row["scenario"] == "all storage of dc1 lost"
    assert row["shoppers ok/fail"] == "2/0 (dc2 2)"
    assert row["local-only ok/fail"] == "0/2"
    assert row["sidecar ok/fail"] == "1/0"
    assert row["writes ok/fail"] == "1/0"
    assert row["p50/p99 ms"] == "10/30"
    assert row["verdict"] == "OK"
    recovery = dict(zip(HEADERS, table_rows([_result(Phase.RECOVERY, ok=True)])[0], strict=True))
    assert recovery["scenario"].startswith("  recovery:")
    assert "steady 1.5s" in recovery["fault visible"]


def test_fault_visible_names_the_traffic_that_saw_the_fault() -> None:
    # the local-only storefront failed (as the article says it must): the fault was visible to
    # it for 0.21 s (its last failure started 0.2 s in and took 0.01 s); shoppers saw nothing
    assert fault_visible(_result(Phase.FAULT, ok=False)) == "local-only 0.2s"
    served = {
        name: _stats(name, [(0.1, 0.01, True)]) for name in (SHOPPERS, LOCAL_ONLY, SIDECAR, WRITES)
    }
    scenario = battery()[1]
    quiet = PhaseResult(scenario, Phase.FAULT, served, judge_all(scenario.during, served), 4.0)
    assert fault_visible(quiet) == "none"
    both = {
        **served,
        SHOPPERS: _stats(SHOPPERS, [(1.0, 0.5, False), (2.0, 0.1, True)]),
        WRITES: _stats(WRITES, [(3.0, 1.0, False)]),
    }
    mixed = PhaseResult(scenario, Phase.FAULT, both, judge_all(scenario.during, both), 8.0)
    assert fault_visible(mixed) == "shoppers 1.5s, writes 4.0s"


def test_rendered_wide_table_is_aligned_and_names_mismatches() -> None:
    scenario = battery()[1]
    stats = {SHOPPERS: _stats(SHOPPERS, [(5.0, 0.1, False), (0.1, 0.1, True)])}
    bad = PhaseResult(scenario, Phase.FAULT, stats, judge_all(scenario.during, stats), 4.0)
    text = render_table([bad], wide=True)
    lines = text.splitlines()
    table = [line for line in lines if line.startswith(("|", "+"))]
    assert len({len(line) for line in table}) == 1
    assert "MISMATCH" in text and "no local-only traffic" in text
    assert "1 storage node lost (dc1): shoppers: 1x refused" in text


def test_compact_table_names_mismatches_and_the_article() -> None:
    scenario = battery()[1]
    stats = {SHOPPERS: _stats(SHOPPERS, [(5.0, 0.1, False), (0.1, 0.1, True)])}
    bad = PhaseResult(scenario, Phase.FAULT, stats, judge_all(scenario.during, stats), 4.0)
    text = render_table([bad])
    words = " ".join(text.split())
    assert "MISMATCH" in text and "no local-only traffic" in words
    assert "the article: MinIO keeps serving with a node down" in words
    assert max(len(line) for line in text.splitlines()) <= TABLE_WIDTH


_counts = st.integers(min_value=0, max_value=9999)
_seconds = st.floats(min_value=0.0, max_value=60.0, allow_nan=False)


@st.composite
def _phase(draw: st.DrawFn) -> PhaseResult:
    scenario = draw(st.sampled_from(battery()))
    phase = Phase.FAULT if scenario.fault is Fault.NONE else draw(st.sampled_from(Phase))
    stats = {}
    for name in (SHOPPERS, LOCAL_ONLY, SIDECAR, WRITES):
        served, failed = draw(_counts), draw(_counts)
        by = {"dc1": draw(_counts), "dc2": draw(_counts)} if name == SHOPPERS else {}
        stats[name] = PhaseStats(
            name,
            served,
            failed,
            draw(_seconds),
            draw(_seconds),
            draw(_seconds) if failed else 0.0,
            MappingProxyType(by),
            MappingProxyType({"StorageClusterDegraded(writes, XMinioWriteQuorum, 1 attempts)": 1}),
        )
    settle = draw(_seconds) if phase is Phase.RECOVERY else None
    verdicts = judge_all(scenario.during, stats)
    return PhaseResult(scenario, phase, stats, verdicts, 8.0, settle_seconds=settle)


@given(st.lists(_phase(), min_size=1, max_size=14))
def test_default_table_fits_120_columns(results: list[PhaseResult]) -> None:
    text = render_table(results)
    assert max(len(line) for line in text.splitlines()) <= TABLE_WIDTH
    for result in results:
        assert result.scenario.title in text


def test_options_keep_the_storefront_answering_before_the_visit_limit() -> None:
    options = DemoOptions()
    page = storefront_page_limit(options.storefront_storage_timeout)
    assert options.traffic.visit_timeout >= page + STOREFRONT_ANSWER_MARGIN
    assert DemoOptions.quick().traffic.visit_timeout >= page + STOREFRONT_ANSWER_MARGIN
    with pytest.raises(ValueError, match="page limit"):
        DemoOptions(traffic=TrafficSettings(visit_timeout=page))


def test_page_limit_factor_is_the_storefronts() -> None:
    code = storefront_code()
    assert code.path is not None  # a checkout: the example is the source of truth
    source = (Path(code.path) / "storefront" / "storage.py").read_text()
    found = re.search(r"^OPERATION_DEADLINE_FACTOR: Final = (\d+)$", source, re.MULTILINE)
    assert found is not None
    assert int(found.group(1)) == STOREFRONT_OPERATION_FACTOR
