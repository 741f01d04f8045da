"""Watches facing bad answers: unusable instances are rejected while the answer is decoded (once
for every subscriber, logged once naming the agent), no exception ends the loop, and a request
that fails or stalls is shown as ``stale`` by the sources until a good answer arrives."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.blocking import BlockingPolicy
from mcresolve.consul.models import HealthAnswer, Indexed, QueryMeta
from mcresolve.consul.watch import (
    HealthServiceSpec,
    Watch,
    WatchFailure,
    WatchPolicy,
    WatchRegistry,
    WatchUpdate,
)
from mcresolve.pool import EndpointPool
from mcresolve.pool.events import EventKind, PoolEvent
from mcresolve.sources import HealthSource
from mcresolve.sources.target import HealthTarget, parse_target
from mcresolve.testing.consul import ConsulEmulator
from mcresolve.timing import BackoffPolicy

SERVICE = "web"
FAST = WatchPolicy(
    blocking=BlockingPolicy(wait=2.0, min_interval=0.0, burst=10),
    backoff=BackoffPolicy(base=0.02, cap=0.1),
)
DEADLINE = 10.0


@pytest.fixture
async def emulator() -> AsyncIterator[ConsulEmulator]:
    async with ConsulEmulator(["dc1"]) as consul:
        yield consul


async def register(client: ConsulClient, service_id: str, port: int) -> None:
    await client.agent_service_register(
        {
            "Name": SERVICE,
            "ID": service_id,
            "Port": port,
            "Address": "127.0.0.1",
            "Check": {"CheckID": f"{service_id}-ttl", "TTL": "15m", "Status": "passing"},
        }
    )


def warnings_naming(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and text in r.getMessage()
    ]


async def test_unusable_instances_are_rejected_in_the_watch_for_every_subscriber(
    emulator: ConsulEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mcresolve")
    dc1 = emulator.dc("dc1")
    async with ConsulClient(ConsulConfig.for_addresses(dc1.http_url)) as client:
        for i in range(3):
            await register(client, f"web-{i}", 9000 + i)
        await register(client, "web-bad", 70000)  # Consul's catalog accepts it
        async with WatchRegistry(client, FAST) as registry:
            spec = HealthServiceSpec(SERVICE)
            first, second = registry.subscribe(spec), registry.subscribe(spec)
            async with asyncio.timeout(DEADLINE):
                updates = [await first.next_update(), await second.next_update()]
            for update in updates:
                answer = update.value
                assert isinstance(answer, HealthAnswer)
                assert sorted(e.port for e in answer.endpoints) == [9000, 9001, 9002]
                assert [r.reason for r in answer.rejected] == ["port 70000 outside 1..65535"]
                assert "web-bad" in answer.rejected[0].what
            assert updates[0].value is updates[1].value  # decoded once, shared
            named = warnings_naming(caplog, dc1.http_url)
            assert len(named) == 1 and "70000" in named[0], named
            # another change with the same rejection: delivered, not warned about again
            dc1.set_check_status("web-1-ttl", "critical", "down")
            async with asyncio.timeout(DEADLINE):
                update = await first.next_update()
            assert sorted(e.port for e in update.value.endpoints) == [9000, 9002]  # type: ignore[attr-defined]
            assert len(warnings_naming(caplog, dc1.http_url)) == 1
            # the bad instance is deregistered: the answer is clean
            await client.agent_service_deregister("web-bad")
            async with asyncio.timeout(DEADLINE):
                update = await first.next_update()
            assert update.value.rejected == ()  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ExplodingSpec:
    """A spec whose reads raise one exception after another, then answer."""

    failures: tuple[type[BaseException], ...]

    def describe(self) -> str:
        return "exploding"

    async def fetch(self, client: ConsulClient, index: int, wait: float) -> Indexed[str]:
        calls = _calls.setdefault(self, [])
        calls.append(index)
        await asyncio.sleep(0)  # a read is I/O: it yields
        if len(calls) <= len(self.failures):
            raise self.failures[len(calls) - 1]("boom")
        if index == 1:  # nothing changes: block like Consul for the whole wait
            await asyncio.sleep(wait)
        return Indexed("answer", QueryMeta(index=1))


_calls: dict[ExplodingSpec, list[int]] = {}


async def test_no_exception_ends_the_watch_loop() -> None:
    failures: tuple[type[BaseException], ...] = (
        ValueError,
        RecursionError,
        KeyError,
        MemoryError,
        UnicodeError,
    )
    spec = ExplodingSpec(failures)
    async with ConsulClient(ConsulConfig.for_addresses("127.0.0.1:1")) as client:
        watch: Watch[str] = Watch(client, spec, FAST)
        subscription = watch.subscribe()
        watch.start()
        try:
            seen: list[WatchUpdate[str] | WatchFailure[str]] = []
            async with asyncio.timeout(DEADLINE):
                async for event in subscription:
                    seen.append(event)
                    if isinstance(event, WatchUpdate):
                        break
            assert [type(e.error) for e in seen[:-1] if isinstance(e, WatchFailure)] == list(
                failures
            )
            assert isinstance(seen[-1], WatchUpdate) and seen[-1].recovered
            assert watch.running and watch.failure is None
        finally:
            await watch.aclose()


async def test_a_stalled_watch_is_stale_in_the_pool_until_a_good_answer() -> None:
    from sources.helpers import next_matching  # the loopback scripted agent and its helper
    from sources.scripted import HttpAnswer, ScriptedConsul

    def body(*ports: int) -> bytes:
        return json.dumps(
            [
                {
                    "Node": {"Node": f"n{p}", "Address": "127.0.0.1"},
                    "Service": {"ID": f"web-{p}", "Service": SERVICE, "Port": p},
                    "Checks": [],
                }
                for p in ports
            ]
        ).encode()

    consul = ScriptedConsul()
    await consul.start()
    policy = WatchPolicy(
        blocking=BlockingPolicy(wait=0.5, min_interval=0.0, burst=10),
        backoff=BackoffPolicy(base=0.02, cap=0.1),
    )
    events: list[PoolEvent] = []
    target = parse_target(f"consul://{SERVICE}")
    assert isinstance(target, HealthTarget)
    try:
        async with (
            ConsulClient(ConsulConfig.for_addresses(consul.url)) as client,
            WatchRegistry(client, policy) as registry,
        ):
            consul.set_health(HttpAnswer(body(9001, 9002)))
            source = HealthSource(target, registry)
            async with EndpointPool(source) as pool:
                pool.events.subscribe(events.append)
                await pool.wait_ready(DEADLINE)
                assert not pool.snapshot().stale
                consul.set_health(HttpAnswer(body(9003), stall=True))
                await next_matching(source, lambda r: r.stale)
                snapshot = pool.snapshot()  # the pool's listener ran before the iterator woke
                assert snapshot.stale and snapshot.source_error is not None
                assert {e.endpoint.port for e in snapshot.endpoints} == {9001, 9002}
                assert EventKind.SOURCE_ERROR in {e.kind for e in events}
                consul.set_health(HttpAnswer(body(9003)))
                await next_matching(source, lambda r: not r.stale)
                snapshot = pool.snapshot()
                assert not snapshot.stale and snapshot.source_error is None
                assert {e.endpoint.port for e in snapshot.endpoints} == {9003}
                assert EventKind.SOURCE_RECOVERED in {e.kind for e in events}
    finally:
        await consul.stop()
