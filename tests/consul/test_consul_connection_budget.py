"""The connection budget: watches never hold more blocking queries open on one agent than the
client's ``blocking_connections``, so a process with more watches than a modern agent's
``http_max_conns_per_client`` gets no 429, every watch still sees a change, and non-blocking
requests always find a connection."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.blocking import BlockingPolicy
from mcresolve.consul.config import DEFAULT_BLOCKING_CONNECTIONS, ConsulConfigError
from mcresolve.consul.watch import (
    MIN_SCHEDULED_WAIT,
    ConnectionBudget,
    HealthServiceSpec,
    Slots,
    Subscription,
    WatchFailure,
    WatchPolicy,
    WatchRegistry,
    WatchUpdate,
    connection_budget,
    immediate_slots,
    scheduled_wait,
)
from mcresolve.testing.consul import ConsulEmulator

DEADLINE = 30.0  # a bound for a loaded machine, not a measured duration
WATCHES = 60
AGENT_LIMIT = 20
BUDGET = 15
WAIT = 4.0


def test_the_default_budget_stays_under_the_agents_default_limit() -> None:
    # limits.http_max_conns_per_client defaults to 200 (Consul's agent/config/default.go)
    assert ConsulConfig().blocking_connections == DEFAULT_BLOCKING_CONNECTIONS < 200
    with pytest.raises(ConsulConfigError, match="blocking_connections"):
        ConsulConfig(blocking_connections=0)
    assert "blocking_connections=7" in repr(ConsulConfig(blocking_connections=7))


@given(
    wait=st.floats(min_value=0.001, max_value=600.0),
    watches=st.integers(min_value=0, max_value=100_000),
    budget=st.integers(min_value=1, max_value=1_000),
)
def test_scheduled_waits_keep_one_request_per_watch_per_period_and_never_spin(
    wait: float, watches: int, budget: int
) -> None:
    got = scheduled_wait(wait, watches, budget)
    assert 0 < got <= wait
    if watches <= budget:
        assert got == wait
        return
    assert got >= min(wait, MIN_SCHEDULED_WAIT)  # no busy loop, however many watches
    # the budget's slots, each turned over every `got` seconds, serve at most one request per
    # watch per wait period
    requests_per_period = budget * wait / got
    assert requests_per_period <= watches * (1 + 1e-9)
    if got > MIN_SCHEDULED_WAIT:  # not at the floor: exactly one per watch per period
        assert math.isclose(requests_per_period, watches, rel_tol=1e-9)


async def test_slots_go_first_come_first_served_and_survive_cancellation() -> None:
    slots = Slots(1)
    await slots.acquire()
    order: list[str] = []

    async def take(name: str) -> None:
        await slots.acquire()
        order.append(name)

    first = asyncio.create_task(take("first"))
    cancelled = asyncio.create_task(take("cancelled"))
    last = asyncio.create_task(take("last"))
    await asyncio.sleep(0)  # the three are queued
    cancelled.cancel()
    slots.release()
    await first
    slots.release()
    await last
    assert order == ["first", "last"] and cancelled.cancelled()
    assert slots.in_use == 1 and slots.peak == 1
    slots.release()
    assert slots.in_use == 0


def test_immediate_reads_have_their_own_few_slots() -> None:
    budget = ConnectionBudget(DEFAULT_BLOCKING_CONNECTIONS)
    assert budget.slots(0) is budget.immediate and budget.slots(7) is budget.blocking
    # both together stay under the agent's default limit of 200
    assert budget.blocking.size + budget.immediate.size < 200
    assert [immediate_slots(n) for n in (1, 15, 160, 10_000)] == [1, 1, 16, 16]


@pytest.fixture
async def modern() -> AsyncIterator[ConsulEmulator]:
    async with ConsulEmulator(["dc1"], version="1.21") as emulator:
        dc1 = emulator.dc("dc1")
        dc1.http_max_conns_per_client = AGENT_LIMIT
        for n in range(WATCHES):
            dc1.agent.register_service({"Name": f"svc-{n:02d}", "ID": f"svc-{n:02d}-a", "Port": 80})
        yield emulator


async def test_sixty_watches_under_an_agent_limit_of_twenty(modern: ConsulEmulator) -> None:
    dc1 = modern.dc("dc1")
    peak_open = 0
    admit = dc1.connections.admit

    def counting_admit(ip: str) -> bool:  # the emulator's own count, its peak recorded
        nonlocal peak_open
        allowed = admit(ip)
        peak_open = max(peak_open, dc1.connections.open.get(ip, 0))
        return allowed

    dc1.connections.admit = counting_admit  # type: ignore[method-assign]
    config = ConsulConfig.for_addresses(dc1.http_url, blocking_connections=BUDGET)
    failures: list[WatchFailure[object]] = []

    def on_event(event: WatchUpdate[object] | WatchFailure[object]) -> None:
        if isinstance(event, WatchFailure):
            failures.append(event)

    async with ConsulClient(config) as client:
        policy = WatchPolicy(blocking=BlockingPolicy(wait=WAIT))
        async with WatchRegistry(client, policy) as registry:
            subscriptions: list[Subscription[object]] = [
                registry.subscribe(HealthServiceSpec(f"svc-{n:02d}", passing=False), on_event)
                for n in range(WATCHES)
            ]
            async with asyncio.timeout(DEADLINE):
                for subscription in subscriptions:
                    await subscription.next_update()
            budget = connection_budget(client)
            assert budget.watches == WATCHES
            assert budget.wait_for(WAIT) == WAIT * BUDGET / WATCHES  # 1 s turns
            # a change to every service, while non-blocking requests run beside the watches
            for n in range(WATCHES):
                dc1.agent.register_service(
                    {"Name": f"svc-{n:02d}", "ID": f"svc-{n:02d}-b", "Port": 81}
                )
            answers = await asyncio.gather(
                *(client.agent_self() for _ in range(AGENT_LIMIT - BUDGET - budget.immediate.size))
            )
            assert all("Config" in answer for answer in answers)
            async with asyncio.timeout(DEADLINE):
                for subscription in subscriptions:
                    while True:
                        update = await subscription.next_update()
                        if len(update.value) == 2:  # type: ignore[arg-type]
                            break
            assert budget.peak == BUDGET  # every slot used: the watches took turns
            assert budget.immediate.peak == budget.immediate.size == 1
    assert dc1.connections.refused == 0  # no 429, ever
    assert failures == []
    assert peak_open <= AGENT_LIMIT
