"""Prometheus metrics and the event hub."""

from __future__ import annotations

import asyncio
import threading

import pytest
from prometheus_client import CollectorRegistry

from manual_source import eps
from mcresolve.balancer.outlier import FailureKind
from mcresolve.endpoint import Endpoint
from mcresolve.pool import EndpointPool
from mcresolve.pool.events import EventHub, EventKind, PoolEvent
from mcresolve.pool.metrics import PoolMetrics
from mcresolve.sources.static import StaticSource


async def test_metrics_count_attempts_events_and_states() -> None:
    registry = CollectorRegistry()
    metrics = PoolMetrics(registry=registry)
    down, up = eps(9001, 9002)
    async with EndpointPool(StaticSource((down, up)), name="shop") as pool:
        detach = metrics.observe(pool)
        pool.report_failure(down, FailureKind.CONNECT)  # ejected: every call goes to 9002

        async def ok(endpoint: Endpoint) -> int:
            return endpoint.port

        async def not_found(endpoint: Endpoint) -> int:
            raise KeyError("no such key")

        for _ in range(3):
            assert await pool.call(ok) == 9002
        with pytest.raises(KeyError):
            await pool.call(not_found)
        detach()
        await pool.call(ok)  # not recorded any more

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    attempts = "mcresolve_pool_attempts_total"
    assert value(attempts, pool="shop", endpoint="127.0.0.1:9002", outcome="success") == 3
    assert value(attempts, pool="shop", endpoint="127.0.0.1:9002", outcome="client") == 1
    assert value(attempts, pool="shop", endpoint="127.0.0.1:9001", outcome="node") is None
    assert value("mcresolve_pool_attempt_duration_seconds_count", pool="shop") == 4
    assert value("mcresolve_pool_events_total", pool="shop", kind="ejected") == 1
    assert value("mcresolve_pool_endpoints", pool="shop", state="ejected") == 1
    assert value("mcresolve_pool_endpoints", pool="shop", state="active") == 1
    assert value("mcresolve_pool_failed_over", pool="shop") == 0


async def test_event_stream_drops_oldest_when_a_consumer_falls_behind() -> None:
    hub = EventHub(asyncio.get_running_loop())
    stream = hub.stream(maxlen=3)
    for i in range(5):
        hub.emit(PoolEvent(EventKind.ADDED, float(i), "p"))
    assert stream.dropped == 2
    received = [await anext(stream) for _ in range(3)]
    assert [e.at for e in received] == [2.0, 3.0, 4.0]
    hub.close()
    assert [e async for e in stream] == []


async def test_events_from_another_thread_reach_the_stream_on_the_loop() -> None:
    hub = EventHub(asyncio.get_running_loop())
    stream = hub.stream()
    seen_threads: list[int] = []
    hub.subscribe(lambda e: seen_threads.append(threading.get_ident()))
    thread = threading.Thread(target=hub.emit, args=(PoolEvent(EventKind.EJECTED, 1.0, "p"),))
    thread.start()
    thread.join()
    async with asyncio.timeout(5):
        event = await anext(stream)
    assert event.kind is EventKind.EJECTED
    assert seen_threads == [thread.ident]  # callbacks run in the emitting thread
    await stream.aclose()


async def test_failing_callback_does_not_stop_delivery() -> None:
    hub = EventHub(asyncio.get_running_loop())
    received: list[PoolEvent] = []

    def broken(event: PoolEvent) -> None:
        raise RuntimeError("bug in a subscriber")

    hub.subscribe(broken)
    unsubscribe = hub.subscribe(received.append)
    hub.emit(PoolEvent(EventKind.FAILOVER, 1.0, "p", datacenter="dc2"))
    unsubscribe()
    hub.emit(PoolEvent(EventKind.FAILBACK, 2.0, "p", datacenter="dc1"))
    assert [e.kind for e in received] == [EventKind.FAILOVER]
    assert str(received[0]) == "failover dc2"
