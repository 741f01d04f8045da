"""The failover benchmark's progress lines: run i of n, the time left estimated from the
planned durations (corrected by what finished runs took beyond their plan, on an injected
clock), and where the results were written; end to end on a tiny real run."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import pytest
from benchmarks.failover.cli import run_benchmark
from benchmarks.failover.progress import Progress, estimate_left, format_duration
from benchmarks.failover.runner import RunConfig
from benchmarks.failover.scenarios import scenario_named
from hypothesis import given
from hypothesis import strategies as st


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_durations_read_at_a_glance() -> None:
    assert format_duration(0.4) == "0 s"
    assert format_duration(45) == "45 s"
    assert format_duration(185) == "3 min 05 s"
    assert format_duration(3725) == "1 h 02 min"
    assert format_duration(-3) == "0 s"


def test_estimate_is_the_plan_plus_the_mean_overrun_per_run_to_come() -> None:
    assert estimate_left([30.0, 90.0], [], extra=60.0) == 180.0
    # Two finished runs took 10 s and 4 s beyond their plan (and one less: no credit).
    assert estimate_left([30.0, 90.0], [(30.0, 40.0), (30.0, 34.0)]) == 120.0 + 2 * 7.0
    assert estimate_left([30.0], [(30.0, 20.0)]) == 30.0


@given(
    planned=st.lists(st.floats(0, 1e4), max_size=20),
    finished=st.lists(st.tuples(st.floats(0, 1e4), st.floats(0, 1e5)), max_size=20),
    extra=st.floats(0, 1e4),
)
def test_estimate_never_below_what_is_planned(
    planned: list[float], finished: list[tuple[float, float]], extra: float
) -> None:
    assert estimate_left(planned, finished, extra) >= sum(planned) + extra - 1e-6


def test_progress_lines_count_runs_and_shrink_the_estimate() -> None:
    clock = FakeClock()
    progress = Progress([24.0, 60.0, 24.0], extra=60.0, clock=clock)
    assert progress.plan_line("results/full") == (
        "3 run(s) planned, about 2 min 48 s (planned durations); results go to results/full"
    )
    clock.now += 5  # the environment starting
    assert progress.starting("scenario node-kill, read workload") == (
        "[1/3] scenario node-kill, read workload: 24 s planned; about 2 min 48 s left, 5 s elapsed"
    )
    clock.now += 30  # 6 s beyond the plan
    assert progress.finished("scenario node-kill, read workload") == (
        "[1/3] scenario node-kill, read workload done in 30 s; about 2 min 36 s left"
    )
    assert progress.starting("scenario consul-kill, read workload").startswith(
        "[2/3] scenario consul-kill, read workload: 1 min 00 s planned; about 2 min 36 s left, "
        "35 s elapsed"
    )


LINE = re.compile(
    r"\[(\d+)/(\d+)\] scenario ([\w-]+), read workload: (.+) planned; about (.+) left, "
    r"(.+) elapsed"
)


async def test_tiny_run_prints_count_estimate_and_where_it_wrote(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = dataclasses.replace(
        RunConfig.quick(),
        warmup=0.3,
        before=0.5,
        during=0.7,
        during_consul=0.7,
        after=0.3,
        scenarios=("node-kill", "health-flip"),
        peers=("mcresolve-query",),
    )
    caplog.set_level(logging.INFO, logger="benchmarks.failover")
    await run_benchmark(
        config, tmp_path, mode="quick", command="test", micro_scripts=False, idle_seconds=0
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "benchmarks.failover"]
    planned = [config.planned_for(scenario_named(n)) for n in ("node-kill", "health-flip")]
    assert lines[0] == (
        f"2 run(s) planned, about {format_duration(sum(planned))} (planned durations); "
        f"results go to {tmp_path}"
    )
    starts = [m for m in map(LINE.fullmatch, lines) if m is not None]
    assert [(m[1], m[2], m[3]) for m in starts] == [
        ("1", "2", "node-kill"),
        ("2", "2", "health-flip"),
    ]
    assert starts[0][4] == format_duration(planned[0])
    assert starts[0][5] == format_duration(sum(planned))  # nothing measured yet: the plan
    done = [line for line in lines if re.fullmatch(r"\[\d/2\] .* done in .+; about .+ left", line)]
    assert len(done) == 2 and done[-1].endswith("about 0 s left")
    wrote = lines[-1]
    assert wrote.startswith("wrote results.json, results.md and 2 timeline PNG(s) in ")
    assert str(tmp_path) in wrote
    assert (tmp_path / "results.json").exists() and (tmp_path / "results.md").exists()
