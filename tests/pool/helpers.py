"""Test helpers for the pool: waiting for events and snapshots (the source the test drives and
the endpoint builders are in ``tests/manual_source.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mcresolve.events import EventKind, EventStream, PoolEvent
from mcresolve.pool import EndpointPool, PoolSnapshot


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
