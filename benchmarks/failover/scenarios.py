"""The faults, one per scenario, each with how to inject it and how to undo it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from benchmarks.failover.environment import LOCAL_DC, BenchEnvironment

__all__ = ["SCENARIOS", "Scenario", "scenario_named"]

SLOW_DELAY = 0.5
"""Seconds the slowed-down node adds to every answer (half the attempt timeout: it never times
out, so only hedging or latency-aware picking avoids it)."""

Action = Callable[[BenchEnvironment], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    """One fault. ``healthy_elsewhere``: a healthy storage node exists in some datacenter while
    it lasts (where mcresolve stage 3 must fail no read). ``consul_fault``: the fault is on
    Consul, not on storage (the longer duration applies)."""

    name: str
    title: str
    inject: Action
    heal: Action
    healthy_elsewhere: bool = True
    consul_fault: bool = False
    flip: bool = False


async def _kill(env: BenchEnvironment) -> None:
    await env.topology.kill_storage_node(LOCAL_DC, env.victim.index)


async def _restart(env: BenchEnvironment) -> None:
    await env.topology.restart_storage_node(LOCAL_DC, env.victim.index)


async def _blackhole(env: BenchEnvironment) -> None:
    env.victim.storage.proxy.blackhole()


async def _slow(env: BenchEnvironment) -> None:
    env.victim.storage.proxy.delay(SLOW_DELAY)


async def _not_initialized(env: BenchEnvironment) -> None:
    env.victim.storage.proxy.answer_error("XMinioServerNotInitialized")


async def _pass(env: BenchEnvironment) -> None:
    env.victim.storage.proxy.pass_through()


async def _kill_dc(env: BenchEnvironment) -> None:
    await env.topology.kill_datacenter_storage(LOCAL_DC)


async def _restart_dc(env: BenchEnvironment) -> None:
    await env.topology.restart_datacenter_storage(LOCAL_DC)


async def _agent_down(env: BenchEnvironment) -> None:
    await env.stop_local_agent()


async def _agent_up(env: BenchEnvironment) -> None:
    await env.start_local_agent()


async def _flip_critical(env: BenchEnvironment) -> None:
    env.flip_maintenance(env.victim, "critical")


async def _flip_passing(env: BenchEnvironment) -> None:
    env.flip_maintenance(env.victim, "passing")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("node-kill", "storage node killed (SIGKILL: connection refused)", _kill, _restart),
    Scenario(
        "node-blackhole", "storage node blackholed (accepts, never answers)", _blackhole, _pass
    ),
    Scenario(
        "node-slow",
        f"storage node slowed down (+{SLOW_DELAY * 1000:.0f} ms per answer)",
        _slow,
        _pass,
    ),
    Scenario(
        "node-503",
        "storage node answers 503 XMinioServerNotInitialized",
        _not_initialized,
        _pass,
    ),
    Scenario("dc-storage-lost", "all storage of the local datacenter lost", _kill_dc, _restart_dc),
    Scenario(
        "consul-agent-lost",
        "local Consul agent lost (HTTP and DNS)",
        _agent_down,
        _agent_up,
        consul_fault=True,
    ),
    Scenario(
        "health-flip",
        "health check flipped to critical while the node still answers",
        _flip_critical,
        _flip_passing,
        flip=True,
    ),
)


def scenario_named(name: str) -> Scenario:
    """The scenario called ``name`` (``KeyError`` listing the known names)."""
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    raise KeyError(f"unknown scenario {name!r}; known: {', '.join(s.name for s in SCENARIOS)}")
