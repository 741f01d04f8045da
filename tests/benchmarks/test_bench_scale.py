"""The scale benchmark: its pairing of changes with pool events, its server's blocking-query
rules, and a tiny run whose measurements must agree with each other."""

from __future__ import annotations

import asyncio
import time

import pytest
from benchmarks.scale.analysis import Answer, Change, Observation, match_changes
from benchmarks.scale.harness import measure_sharing, measure_size, scale_server
from benchmarks.scale.server import parse_wait
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.consul import ConsulClient

# --- pairing (pure) -------------------------------------------------------------------------


def test_each_event_is_paired_with_the_change_it_shows() -> None:
    changes = [
        Change("s", "s-1", "removed", 101, 1.0),
        Change("s", "s-2", "removed", 102, 1.1),
        Change("s", "s-1", "added", 103, 2.0),
    ]
    answers = [Answer("s", 101, 1.01), Answer("s", 102, 1.12), Answer("s", 103, 2.05)]
    events = [
        Observation("s-1", "removed", 1.03, cpu=5.0),
        Observation("s-2", "removed", 1.15, cpu=6.0),
        Observation("s-1", "added", 2.10, cpu=7.0),
    ]
    matched = match_changes(changes, events, answers)
    assert matched.observed == 3 and matched.superseded == 0 and matched.unexplained == 0
    assert matched.latencies == pytest.approx((0.03, 0.05, 0.10))
    assert matched.last_cpu == 7.0 and matched.last_at == 2.10


def test_a_flip_undone_before_any_answer_carried_it_is_superseded() -> None:
    # s-1 removed at index 101, back at 102; the only answer after 100 carries 102.
    changes = [
        Change("s", "s-1", "removed", 101, 1.0),
        Change("s", "s-1", "added", 102, 1.01),
        Change("s", "s-1", "removed", 103, 3.0),
    ]
    answers = [Answer("s", 102, 1.5), Answer("s", 103, 3.1)]
    events = [Observation("s-1", "removed", 3.2)]
    matched = match_changes(changes, events, answers)
    assert matched.observed == 1 and matched.superseded == 2
    assert matched.latencies == pytest.approx((0.2,))


def test_an_event_is_paired_with_what_the_answer_carried_not_the_newest_change() -> None:
    # The client read index 101 (s-1 removed) and emitted the event at 1.6, after s-1 came back
    # (1.5) and went again (1.55): the event shows the first removal, 0.6 s late.
    changes = [
        Change("s", "s-1", "removed", 101, 1.0),
        Change("s", "s-1", "added", 102, 1.5),
        Change("s", "s-1", "removed", 103, 1.55),
    ]
    answers = [Answer("s", 101, 1.05)]
    matched = match_changes(changes, [Observation("s-1", "removed", 1.6)], answers)
    assert matched.latencies == pytest.approx((0.6,))
    assert matched.superseded == 2


def test_an_event_no_change_explains_is_counted() -> None:
    changes = [Change("s", "s-1", "removed", 101, 1.0)]
    answers = [Answer("s", 101, 1.01)]
    events = [
        Observation("s-1", "added", 1.1),  # wrong kind
        Observation("s-9", "removed", 1.1),  # unknown instance
        Observation("s-1", "removed", 0.5),  # before the change
    ]
    matched = match_changes(changes, events, answers)
    assert matched.unexplained == 3 and matched.observed == 0 and matched.superseded == 1


@settings(max_examples=200, deadline=None)
@given(
    flips=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=30),
    read_every=st.integers(min_value=1, max_value=4),
    lag=st.floats(min_value=0.001, max_value=0.5),
)
def test_pairing_of_a_simulated_client_accounts_for_every_change(
    flips: list[int], read_every: int, lag: float
) -> None:
    """A client reading every ``read_every``-th index and emitting the difference ``lag``
    seconds later: every event is explained, observed + superseded = changes, latencies
    are at least the lag."""
    state: dict[str, bool] = {}
    changes: list[Change] = []
    for step, instance in enumerate(flips):
        name = f"s-{instance}"
        removed = not state.get(name, False)
        state[name] = removed
        changes.append(Change("s", name, "removed" if removed else "added", 101 + step, step))
    seen: dict[str, bool] = {}
    answers: list[Answer] = []
    events: list[Observation] = []
    reads = [*range(read_every - 1, len(changes), read_every), len(changes) - 1]
    for position in sorted(set(reads)):
        sent = position + 0.5
        answers.append(Answer("s", 101 + position, sent))
        current: dict[str, bool] = {}
        for change in changes[: position + 1]:
            current[change.instance] = change.kind == "removed"
        for name, removed in sorted(current.items()):
            if seen.get(name, False) != removed:
                events.append(Observation(name, "removed" if removed else "added", sent + lag))
        seen = current
    matched = match_changes(changes, events, answers)
    assert matched.unexplained == 0
    assert matched.observed == len(events)
    assert matched.observed + matched.superseded == len(changes)
    assert all(latency >= lag for latency in matched.latencies)


# --- the server -----------------------------------------------------------------------------


def test_wait_parsing_follows_consul() -> None:
    assert parse_wait(None) == 300.0
    assert parse_wait("60000ms") == 60.0
    assert parse_wait("2m") == 120.0
    assert parse_wait("20m") == 600.0  # capped
    with pytest.raises(ValueError):
        parse_wait("10")  # Go durations need a unit


async def test_server_blocks_until_a_change_and_holds_a_future_index() -> None:
    async with scale_server() as server:
        await server.services([("svc", 3)])
        async with ConsulClient(server.config) as client:
            first = await client.health_service("svc", passing=True, index=0)
            assert len(first.value) == 3
            current = first.meta.index
            assert current is not None
            # a request on the current index is held until the change
            held = asyncio.create_task(
                client.health_service("svc", passing=True, index=current, wait=30)
            )
            await asyncio.sleep(0.2)
            assert not held.done()
            change = await server.change("svc")
            answer = await held
            assert answer.meta.index == change["index"] > current
            assert len(answer.value) == 2
            assert change["service_id"] not in {e.service.id for e in answer.value}
            # an index above the current one is held for the whole wait despite a change
            started = time.monotonic()
            future = asyncio.create_task(
                client.health_service("svc", passing=True, index=change["index"] + 50, wait=0.3)
            )
            await asyncio.sleep(0.05)
            await server.change("svc")
            late = await future
            assert time.monotonic() - started >= 0.3
            assert late.meta.index == change["index"] + 1


# --- a tiny run -----------------------------------------------------------------------------


async def test_tiny_run_measurements_agree() -> None:
    """100 instances, 10 changes/s for 1 s: the pool sees every change (or a later one undid it
    first), after it was applied, and the request counts match the updates.

    Slack: the server counts a request when it arrives and an update when it answers with a
    newer index; the blocking request pending at the window's start is answered in the window
    but was counted before it, and the request following the last update may arrive after the
    report, so the two counts differ by at most one.
    """
    async with scale_server() as server:
        result = await measure_size(
            server, 100, [10.0], 1.0, 5.0, 30.0, memory=True, log=lambda line: None
        )
    (cell,) = result.cells
    assert cell.changes == 10
    assert cell.converged
    assert cell.unexplained == 0
    assert cell.observed + cell.superseded == cell.changes
    assert cell.observed >= 1
    assert cell.latency.p50_ms is not None and cell.latency.p99_ms is not None
    assert 0 < cell.latency.p50_ms <= cell.latency.p99_ms <= cell.latency.max_ms  # type: ignore[operator]
    # one answer with new data per pool update, and one request per answer
    assert 1 <= cell.updates <= cell.changes
    assert cell.pool_updates == cell.updates
    assert abs(cell.health_requests - cell.updates) <= 1
    assert cell.cpu_s > 0 and cell.loads_ms > 0
    assert cell.ratio_to_loads is not None and cell.ratio_to_loads > 0
    # the pool holds its endpoints: retained memory grows with them
    assert result.memory_retained_bytes is not None and result.memory_retained_bytes > 100 * 500
    assert result.update_peak_bytes is not None and result.update_peak_bytes > 0


async def test_sharing_counts_one_health_stream_for_many_pools() -> None:
    """Pools built from one ``consul://`` target string share one watch: 5 pools send no more
    health requests than the changes they were told about (plus the slack above)."""
    async with scale_server() as server:
        shared = await measure_sharing(server, "consul", 5, 1.0, 4.0)
    assert shared.changes == 4
    assert shared.executions_per_min == 0
    requests = round(shared.health_requests_per_min * shared.seconds / 60)
    assert 1 <= requests <= shared.changes + 1


# --- before/after -----------------------------------------------------------------------------


def test_the_comparison_passes_the_options_of_the_run_on_but_its_own() -> None:
    from benchmarks.bench_scale import _without

    argv = ["--against", "abc", "--quick", "--sizes=1,2", "--json", "x.json", "--many", "3"]
    assert _without(argv, {"--against", "--json", "--sizes"}) == ["--quick", "--many", "3"]


def test_the_incremental_step_is_measured_with_this_library() -> None:
    from benchmarks.scale.answers import Instance, fragment, join
    from benchmarks.scale.harness import update_steps

    body = join([fragment(Instance("svc", n)) for n in range(20)])
    steps = update_steps(body, repeat=1)
    assert set(steps) >= {"json.loads", "parse_entries", "incremental (one change)"}
    assert all(value >= 0 for value in steps.values())
