"""Test helpers for the pool: a source the test drives, endpoint builders, event waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from mcresolve.endpoint import Endpoint
from mcresolve.events import EventKind, EventStream, PoolEvent
from mcresolve.pool import EndpointPool, PoolSnapshot
from mcresolve.sources.base import PublishingSource, Resolution


def eps(*ports: int, dc: str = "dc1") -> tuple[Endpoint, ...]:
    """Endpoints 127.0.0.1:<port> in ``dc``."""
    return tuple(Endpoint("127.0.0.1", p, datacenter=dc) for p in ports)


class ManualSource(PublishingSource):
    """Publishes what the test tells it to; counts refresh_now() calls and can answer them."""

    def __init__(self, description: str = "manual://pool-test") -> None:
        super().__init__(description)
        self.refreshes = 0
        self.refreshed = asyncio.Event()
        self.on_refresh: Callable[[], None] | None = None

    async def start(self) -> None:
        return None

    async def _run(self) -> None:
        return None

    def answer(self, endpoints: Sequence[Endpoint], datacenter: str | None = "dc1") -> None:
        self._publish(Resolution.answered(endpoints, self.description, datacenter))

    def fail(self, error: Exception) -> None:
        self._publish_error(error)

    def refresh_now(self) -> None:
        self.refreshes += 1
        self.refreshed.set()
        if self.on_refresh is not None:
            self.on_refresh()


async def next_event(
    stream: EventStream, kind: EventKind, within: float = 10.0, **fields: object
) -> PoolEvent:
    """The next event of ``kind`` (whose attributes match ``fields``) within ``within`` s."""
    async with asyncio.timeout(within):
        async for event in stream:
            if event.kind is kind and all(getattr(event, k) == v for k, v in fields.items()):
                return event
    raise AssertionError(f"event stream ended before {kind}")


async def until(
    pool: EndpointPool, predicate: Callable[[PoolSnapshot], bool], within: float = 10.0
) -> PoolSnapshot:
    """Poll the pool's snapshot (on every change, with a deadline) until ``predicate`` holds."""
    async with asyncio.timeout(within):
        while True:
            snapshot = pool.snapshot()
            if predicate(snapshot):
                return snapshot
            await pool._wait_async(0.05, pool._generation)
