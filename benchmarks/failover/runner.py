"""Runs the scenarios against every peer, side by side, and collects their raw data."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from benchmarks.failover.analysis import PeerRun, ScenarioRun
from benchmarks.failover.environment import BenchEnvironment, EnvironmentSettings
from benchmarks.failover.peers import DEFAULT_PEERS, Peer, PeerSettings, open_peer
from benchmarks.failover.progress import Progress
from benchmarks.failover.records import NodeVisit, PoolChange, RequestRecord, ScenarioTimes
from benchmarks.failover.scenarios import SCENARIOS, Scenario
from benchmarks.failover.workload import WorkloadSettings, drive

__all__ = ["RunConfig", "run_all", "run_scenario"]

_log = logging.getLogger("benchmarks.failover")


@dataclass(frozen=True)
class RunConfig:
    """Durations (seconds), rates and what to run. ``quick()`` and ``full()`` are the presets."""

    warmup: float = 2.0
    before: float = 8.0
    during: float = 20.0
    during_consul: float = 60.0
    after: float = 12.0
    rate: float = 20.0
    scenarios: tuple[str, ...] = tuple(s.name for s in SCENARIOS)
    peers: tuple[str, ...] = DEFAULT_PEERS
    workloads: tuple[str, ...] = ("read", "mixed")
    peer: PeerSettings = field(default_factory=PeerSettings)
    environment: EnvironmentSettings = field(default_factory=EnvironmentSettings)

    @classmethod
    def full(cls) -> RunConfig:
        """The run the docs present."""
        return cls()

    @classmethod
    def quick(cls) -> RunConfig:
        """A few seconds per scenario (the test suite's mode)."""
        return cls(
            warmup=1.0, before=2.0, during=3.0, during_consul=4.0, after=2.0, workloads=("read",)
        )

    def during_for(self, scenario: Scenario) -> float:
        return self.during_consul if scenario.consul_fault else self.during

    def planned_for(self, scenario: Scenario) -> float:
        """Seconds one run of ``scenario`` is planned to drive traffic (the progress estimate's
        base; starting and closing the peers comes on top)."""
        return self.warmup + self.before + self.during_for(scenario) + self.after


async def run_scenario(
    env: BenchEnvironment, scenario: Scenario, workload: str, config: RunConfig
) -> ScenarioRun:
    """Heal the world, start every peer, drive them all through one fault, close them."""
    await env.heal()
    peers: list[Peer] = []
    runs: dict[str, PeerRun] = {}
    for kind in config.peers:
        try:
            peer = await open_peer(kind, env, config.peer)
        except Exception as exc:
            _log.warning("peer %s could not start: %r", kind, exc)
            runs[kind] = PeerRun(kind, "", unavailable=f"could not start: {exc}")
            continue
        peers.append(peer)
        runs[kind] = PeerRun(kind, peer.description, knows_nodes=peer.knows_nodes)
    workload_settings = WorkloadSettings(
        rate=config.rate, deadline=config.peer.deadline, mixed=workload == "mixed"
    )
    warm = config.warmup
    fault_at = warm + config.before
    heal_at = fault_at + config.during_for(scenario)
    end = heal_at + config.after
    marks: dict[str, float] = {}
    origin = time.monotonic()

    def count(mark: str) -> None:
        marks[mark] = time.monotonic() - origin
        for peer in peers:
            runs[peer.kind].consul_counts[mark] = peer.consul_requests

    async def at(moment: float) -> None:
        delay = origin + moment - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def faults() -> None:
        await at(warm)
        count("warm")
        await at(fault_at)
        count("fault-start")
        await scenario.inject(env)
        count("fault")
        await at(heal_at)
        await scenario.heal(env)
        count("heal")

    def collector(kind: str) -> Callable[[RequestRecord], None]:
        return runs[kind].records.append

    drivers = [
        drive(
            peer,
            bucket=env.settings.bucket,
            keys=env.keys,
            payload=env.payload,
            settings=workload_settings,
            origin=origin,
            start=0.0,
            stop=end,
            workers=config.peer.workers,
            on_record=collector(peer.kind),
        )
        for peer in peers
    ]
    fault_task = asyncio.create_task(faults())
    try:
        await asyncio.gather(*drivers)
        await fault_task
        count("end")
    finally:
        if not fault_task.done():
            fault_task.cancel()
            with contextlib.suppress(BaseException):
                await fault_task
        for peer in peers:
            runs[peer.kind].visits = [NodeVisit(v.at - origin, v.node) for v in peer.visits]
            runs[peer.kind].pool_changes = [
                PoolChange(c.at - origin, c.kind, c.node) for c in peer.pool_changes
            ]
            runs[peer.kind].consul_breakdown = peer.consul_breakdown()
            try:
                await asyncio.wait_for(peer.close(), 15)
            except Exception as exc:
                _log.warning("closing peer %s: %r", peer.kind, exc)
        await env.close_relays()
    times = ScenarioTimes(fault=marks["fault-start"], heal=marks["heal"], end=marks.get("end", end))
    return ScenarioRun(
        scenario=scenario.name,
        title=scenario.title,
        workload=workload,
        times=times,
        warmup=warm,
        victim=env.victim.storage.endpoint,
        healthy_elsewhere=scenario.healthy_elsewhere,
        flip=scenario.flip,
        node_fault=not scenario.consul_fault,
        peers=[runs[kind] for kind in config.peers],
    )


async def run_all(
    config: RunConfig,
    on_run: Callable[[ScenarioRun], None] | None = None,
    scenarios: Sequence[Scenario] | None = None,
) -> list[ScenarioRun]:
    """Every configured scenario × workload in one environment."""
    chosen = scenarios or [s for s in SCENARIOS if s.name in config.scenarios]
    out: list[ScenarioRun] = []
    plan = [(scenario, workload) for workload in config.workloads for scenario in chosen]
    progress = Progress([config.planned_for(scenario) for scenario, _ in plan])
    async with BenchEnvironment(config.environment) as env:
        for scenario, workload in plan:
            label = f"scenario {scenario.name}, {workload} workload"
            _log.info("%s", progress.starting(label))
            run = await run_scenario(env, scenario, workload, config)
            out.append(run)
            _log.info("%s", progress.finished(label))
            if on_run is not None:
                on_run(run)
    return out
