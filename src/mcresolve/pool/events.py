"""Pool events delivered to callbacks and async iterators.

An :class:`EventHub` fans each :class:`~mcresolve.balancer.events.PoolEvent` (the values live
beside the balancer that decides them; they are re-exported here) out to

* callbacks (:meth:`EventHub.subscribe`), called synchronously in the thread that emitted the
  event (the pool's loop thread, or a worker thread whose ``call_sync`` caused an ejection);
  they must be quick and must not block; an exception in one is logged and ignored;
* async iterators (:meth:`EventHub.stream`), each with its own bounded queue on the hub's event
  loop; a consumer that falls behind loses the *oldest* events (counted in
  :attr:`EventStream.dropped`) rather than holding memory or blocking the pool.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable

from mcresolve.balancer.events import EventKind, PoolEvent
from mcresolve.lifecycle import AsyncClosing

__all__ = ["EventHub", "EventKind", "EventStream", "PoolEvent"]

_log = logging.getLogger(__name__)


Callback = Callable[[PoolEvent], None]


class EventStream(AsyncClosing):
    """An async iterator over the events of one hub (see :meth:`EventHub.stream`)."""

    def __init__(self, hub: EventHub, maxlen: int) -> None:
        self._hub = hub
        self._buffer: collections.deque[PoolEvent] = collections.deque()
        self._maxlen = maxlen
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0
        """Events lost because this consumer fell behind."""

    def _put(self, event: PoolEvent) -> None:  # on the hub's loop
        if self._closed:
            return
        if len(self._buffer) >= self._maxlen:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(event)
        self._ready.set()

    def _end(self) -> None:
        self._closed = True
        self._ready.set()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> PoolEvent:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._buffer.popleft()

    async def aclose(self) -> None:
        """Stop receiving events."""
        self._hub._remove_stream(self)
        self._end()


class EventHub:
    """Fan-out of :class:`PoolEvent` values (thread-safe :meth:`emit`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self._callbacks: list[Callback] = []
        self._streams: list[EventStream] = []
        self._lock = threading.Lock()
        self._closed = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver stream events on ``loop`` (the pool's loop)."""
        self._loop = loop

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns a function that unsubscribes."""
        with self._lock:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def stream(self, maxlen: int = 1000) -> EventStream:
        """A new async iterator receiving every later event (``async for event in ...``), ended
        when the hub closes. Create it on the hub's loop. Keeps at most ``maxlen`` undelivered
        events."""
        stream = EventStream(self, maxlen)
        with self._lock:
            if self._closed:
                stream._end()
            else:
                self._streams.append(stream)
        return stream

    def _remove_stream(self, stream: EventStream) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._streams.remove(stream)

    def emit(self, event: PoolEvent) -> None:
        """Deliver ``event`` to every subscriber (any thread)."""
        with self._lock:
            callbacks = list(self._callbacks)
            streams = list(self._streams)
        for callback in callbacks:
            try:
                callback(event)
            except Exception:
                _log.exception("pool event callback failed on %s", event)
        if streams:

            def deliver() -> None:
                for stream in streams:
                    stream._put(event)

            self._on_loop(deliver)

    def close(self) -> None:
        """End every stream (callbacks stay registered but receive nothing more)."""
        with self._lock:
            self._closed = True
            streams, self._streams = self._streams, []
            self._callbacks = []

        def end() -> None:
            for stream in streams:
                stream._end()

        self._on_loop(end)

    def _on_loop(self, action: Callable[[], object]) -> None:
        loop = self._loop
        if loop is None or _running_loop() is loop:
            action()
        elif not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closing concurrently
                loop.call_soon_threadsafe(action)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def iterate(hub: EventHub) -> AsyncIterator[PoolEvent]:
    """``async for event in iterate(hub)``: :meth:`EventHub.stream` as an async generator."""
    stream = hub.stream()
    try:
        async for event in stream:
            yield event
    finally:
        await stream.aclose()
