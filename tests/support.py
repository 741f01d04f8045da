"""Helpers shared by mcresolve's tests: the one polling helper (:func:`until`, with its
synchronous twin for tests that run on no event loop), the fast watch policy, and the emulated
two-datacenter Consul the pool and source tests start (:func:`consul_cluster`)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.blocking import BlockingPolicy
from mcresolve.consul.watch import WatchPolicy, WatchRegistry
from mcresolve.testing.consul import ConsulEmulator
from mcresolve.timing import BackoffPolicy

T = TypeVar("T")

#: Fast watch retries, so that recovery after an agent restart takes milliseconds, not the
#: production backoff.
FAST_WATCH = WatchPolicy(
    blocking=BlockingPolicy(wait=30.0, min_interval=0.0, burst=10),
    backoff=BackoffPolicy(base=0.02, multiplier=2.0, cap=0.2),
)

#: (service ID, port, tags); each instance gets a passing TTL check "<id>-ttl".
Instance = tuple[str, int, list[str]]


# -- waiting -----------------------------------------------------------------------------------


def _pauses(within: float, what: object) -> Iterator[float]:
    """The pauses between two polls (5 ms growing to 100 ms, gentle on a loaded machine); raises
    ``AssertionError`` once ``within`` seconds have passed. ``within`` bounds a wait for something
    that must happen, it measures nothing."""
    deadline = time.monotonic() + within
    pause = 0.005
    while True:
        yield pause
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        pause = min(pause * 1.5, 0.1)


async def until(
    predicate: Callable[[], T | Awaitable[T]], *, within: float = 20.0, what: str = ""
) -> T:
    """Poll ``predicate`` (plain or async) until it returns a truthy value, and return that value;
    fail after ``within`` seconds."""
    for pause in _pauses(within, what or predicate):
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        await asyncio.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


def until_sync(predicate: Callable[[], T], *, within: float = 20.0, what: str = "") -> T:
    """:func:`until` for synchronous tests (a blocking client driven from the test's thread)."""
    for pause in _pauses(within, what or predicate):
        value = predicate()
        if value:
            return value
        time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


# -- an emulated two-datacenter Consul ----------------------------------------------------------


@dataclass
class Cluster:
    """The emulator plus clients on each agent and a fast watch registry on dc1's."""

    consul: ConsulEmulator
    dc1: ConsulClient
    dc2: ConsulClient
    registry: WatchRegistry

    @property
    def dns_server(self) -> str:
        return f"127.0.0.1:{self.consul.dc('dc1').dns_port}"

    def flip(self, dc: str, service_id: str, status: str) -> None:
        """Set the TTL check of ``service_id`` in ``dc`` to ``status``."""
        self.consul.dc(dc).set_check_status(f"{service_id}-ttl", status)


async def register(client: ConsulClient, service: str, instances: Sequence[Instance]) -> None:
    """Register ``instances`` of ``service`` on the agent, each with a passing TTL check."""
    for service_id, port, tags in instances:
        await client.agent_service_register(
            {
                "Name": service,
                "ID": service_id,
                "Port": port,
                "Address": "127.0.0.1",
                "Tags": tags,
                "Check": {"CheckID": f"{service_id}-ttl", "TTL": "15m", "Status": "passing"},
            }
        )


def consul_client(emulator: ConsulEmulator, dc: str) -> ConsulClient:
    """A client on ``dc``'s agent with short timeouts (loopback)."""
    return ConsulClient(
        ConsulConfig.for_addresses(
            emulator.dc(dc).http_url, connect_timeout=0.5, request_timeout=2.0
        )
    )


@asynccontextmanager
async def consul_cluster(
    version: str,
    service: str,
    dc1: Sequence[Instance],
    dc2: Sequence[Instance],
    *,
    query: dict[str, Any] | None = None,
) -> AsyncIterator[Cluster]:
    """``dc1`` and ``dc2`` (40 ms apart) answering like Consul ``version``, with ``service``'s
    instances registered, and the prepared query ``query`` created in dc1 if given."""
    async with ConsulEmulator(
        ["dc1", "dc2"], rtt_ms={("dc1", "dc2"): 40.0}, version=version
    ) as consul:
        client1, client2 = consul_client(consul, "dc1"), consul_client(consul, "dc2")
        registry = WatchRegistry(client1, FAST_WATCH)
        try:
            await register(client1, service, dc1)
            await register(client2, service, dc2)
            if query is not None:
                await client1.query_create(query)
            yield Cluster(consul, client1, client2, registry)
        finally:
            await registry.aclose()
            await client1.aclose()
            await client2.aclose()
