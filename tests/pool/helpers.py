"""Test helpers for the pool: waiting for events and snapshots (the source the test drives and
the endpoint builders are in ``tests/manual_source.py``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from mcresolve.pool import EndpointPool, PoolSnapshot
from mcresolve.pool.events import EventKind, EventStream, PoolEvent
from support import until


async def next_event(
    stream: EventStream, kind: EventKind, within: float = 10.0, **fields: object
) -> PoolEvent:
    """The next event of ``kind`` (whose attributes match ``fields``) within ``within`` s."""
    async with asyncio.timeout(within):
        async for event in stream:
            if event.kind is kind and all(getattr(event, k) == v for k, v in fields.items()):
                return event
    raise AssertionError(f"event stream ended before {kind}")


async def snapshot_until(
    pool: EndpointPool, predicate: Callable[[PoolSnapshot], bool], within: float = 10.0
) -> PoolSnapshot:
    """The pool's first snapshot for which ``predicate`` holds (polled through the public
    :meth:`EndpointPool.snapshot` by :func:`support.until`)."""

    def matching() -> PoolSnapshot | None:
        snapshot = pool.snapshot()
        return snapshot if predicate(snapshot) else None

    return await until(matching, within=within, what="a matching pool snapshot")


class FakeClock:
    """A pool clock the test moves by hand (``pool = EndpointPool(..., clock=clock)``): time
    passes only through :meth:`advance`, so ejections, backoffs, deadlines and decays follow
    the scenario, not the machine's load. Thread-safe."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock ``seconds`` forward; returns the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += seconds
            return self._now
