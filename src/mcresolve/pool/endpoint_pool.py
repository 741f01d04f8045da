"""The endpoint pool: what mcresolve knows about each endpoint, and calls that fail over.

:class:`EndpointPool` consumes a :class:`~mcresolve.sources.Source` (or a target string) and keeps,
per endpoint, the source's health (an endpoint is in the set only while Consul says it passes),
passive outlier state (:mod:`mcresolve.balancer.outlier`), in-flight count and latency EWMA
(:mod:`mcresolve.balancer.ewma`). From these it builds an immutable picker
(:mod:`mcresolve.balancer.picker`) restricted to the active datacenter
(:mod:`mcresolve.balancer.locality`), rebuilt only when something changes (set change,
ejection, un-ejection, datacenter switch); :meth:`EndpointPool.pick` reads the current picker
without a lock.

:meth:`EndpointPool.call` (asyncio) and :meth:`EndpointPool.call_sync` (worker threads) run a
function on endpoints following the pure planner of :mod:`mcresolve.pool.planner`: per-attempt
timeout, overall deadline, retry on a different endpoint, retry budget, backoff once every
endpoint was tried, optional hedging, outcomes fed back into the outlier state. When every
endpoint is ejected or none exists, the pool asks the source to re-resolve
(:meth:`~mcresolve.sources.Source.refresh_now`; stage 3 re-executes its prepared query) and waits
for a new set within the deadline.

Threading: the pool lives on one event loop (its "loop thread"). ``pick``, ``snapshot``,
``call_sync``, :meth:`EndpointPool.attempt` and ``report_*`` are thread-safe; ``call_sync`` must
not run on a thread with a running event loop (it blocks). :class:`BackgroundPool` runs a pool on
the process-wide loop thread of :mod:`mcresolve.pool.loop_thread` for synchronous programs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

from mcresolve.consul.client import ConsulClient
from mcresolve.consul.config import ConsulConfig
from mcresolve.consul.watch import WatchRegistry
from mcresolve.endpoint import Endpoint, Key
from mcresolve.errors import PoolClosed
from mcresolve.pool.aio import AsyncCalls
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.pool.core import (
    AttemptHandle,
    EndpointStatus,
    PoolPolicy,
    PoolSnapshot,
    check_timeout,
)
from mcresolve.pool.loop_thread import SHARED_LOOP_THREAD
from mcresolve.pool.planner import Classifier, default_classify
from mcresolve.pool.sync import SyncCalls
from mcresolve.sources.base import Source
from mcresolve.sources.target import Target
from mcresolve.sources.wiring import is_target

__all__ = [
    "AttemptHandle",
    "BackgroundPool",
    "EndpointPool",
    "EndpointStatus",
    "PoolPolicy",
    "PoolSnapshot",
    "check_timeout",
]

_log = logging.getLogger(__name__)

T = TypeVar("T")


class EndpointPool(AsyncCalls, SyncCalls):
    """A health-aware failover pool over the endpoints of one source.

    ``source``: a :class:`~mcresolve.sources.Source`, a target string
    (``consul://svc?tag=x``, ``consul+query://svc``, ``dns://...``, ``static://...``) or a parsed
    target. A source built here is stopped by :meth:`aclose`; a source passed in is started (if
    needed) but left running.

    ``local_datacenter``: which datacenter is local; when None it is, in order: the target's
    ``dc=``, the Consul agent's datacenter (``/v1/agent/self``, when ``consul`` is given), the
    first resolution's datacenter. Endpoints without a datacenter count as local.

    ``consul`` / ``registry``: used to build the source from a target string and to ask the
    agent for its datacenter. ``classify``: default :data:`~mcresolve.pool.planner.Classifier` of
    every call. ``clock``: monotonic seconds (thread-safe; default :func:`time.monotonic`).
    ``rng``: randomness of pickers, ejection jitter and backoff.
    """

    # --- introspection -----------------------------------------------------------------------

    def __repr__(self) -> str:
        balancer = self._balancer
        return (
            f"<EndpointPool {self.name} {len(balancer.endpoints)} endpoint(s) {balancer.picker!r}>"
        )

    def __str__(self) -> str:
        return self.name

    # --- background thread -------------------------------------------------------------------

    @classmethod
    def start_in_thread(
        cls,
        source: str | Target | Callable[[], Source],
        *,
        ready_timeout: float | None = 10.0,
        local_datacenter: str | None = None,
        policy: PoolPolicy | None = None,
        consul: ConsulClient | ConsulConfig | None = None,
        registry: WatchRegistry | None = None,
        classify: Classifier = default_classify,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        name: str | None = None,
    ) -> BackgroundPool:
        """Run a pool on the process-wide event-loop thread (for synchronous programs; pools
        started this way share it, and with it their Consul watches); returns the
        started :class:`BackgroundPool` once the pool has an endpoint
        (:class:`~mcresolve.errors.NoEndpointAvailable` after ``ready_timeout`` seconds), or
        at once with ``ready_timeout=None``. The other parameters are :class:`EndpointPool`'s.
        See :class:`BackgroundPool`."""
        from mcresolve.pool.endpoint_pool import BackgroundPool

        check_timeout("ready_timeout", ready_timeout)
        background = BackgroundPool(
            source,
            local_datacenter=local_datacenter,
            policy=policy,
            consul=consul,
            registry=registry,
            classify=classify,
            clock=clock,
            rng=rng,
            name=name,
        )
        background.start(ready_timeout=ready_timeout)
        return background


class BackgroundPool:
    """An :class:`EndpointPool` running on the process-wide event-loop thread
    (:data:`~mcresolve.pool.loop_thread.SHARED_LOOP_THREAD`), for synchronous programs.

    Every background pool of the process (each synchronous
    :class:`~mcresolve.minio.ResilientMinio` built from a target has one) runs on that one
    loop, so sources built from targets share their Consul watches
    (:data:`~mcresolve.consul.watch.SHARED_WATCHES` keys them by configuration and loop). The
    thread starts with the first background pool and stops when the last one closes.

    ``source``: a target string / parsed target, or a zero-argument factory returning a
    :class:`~mcresolve.sources.Source` (called on the loop thread, so the source binds to its
    loop). Keyword arguments go to :class:`EndpointPool`. Use as a context manager, or call
    :meth:`start` / :meth:`close`. :meth:`close` closes the pool (and a source from the
    factory) and releases the loop thread. Do not call :meth:`start` or :meth:`close` on the
    loop thread itself (from a callback of the pool).
    """

    def __init__(
        self,
        source: str | Target | Callable[[], Source],
        *,
        local_datacenter: str | None = None,
        policy: PoolPolicy | None = None,
        consul: ConsulClient | ConsulConfig | None = None,
        registry: WatchRegistry | None = None,
        classify: Classifier = default_classify,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        name: str | None = None,
    ) -> None:
        if not (isinstance(source, str | Source) or callable(source) or is_target(source)):
            raise TypeError(
                "source must be a target string, a parsed target or a function returning a "
                f"Source, not {type(source).__name__}"
            )
        self._source_spec = source
        self._kwargs: dict[str, Any] = {
            "local_datacenter": local_datacenter,
            "policy": policy,
            "consul": consul,
            "registry": registry,
            "classify": classify,
            "clock": clock,
            "rng": rng,
            "name": name,
        }
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: EndpointPool | None = None
        self._factory_source: Source | None = None

    @property
    def pool(self) -> EndpointPool:
        """The running pool (use its thread-safe methods from other threads)."""
        if self._pool is None:
            raise PoolClosed("background pool is not running")
        return self._pool

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The pool's event loop (the process-wide one)."""
        if self._loop is None:
            raise PoolClosed("background pool is not running")
        return self._loop

    def start(self, *, ready_timeout: float | None = 10.0) -> None:
        """Start the pool on the shared loop thread (starting the thread if needed) and, when
        ``ready_timeout`` is not None, wait for its first endpoint
        (:class:`NoEndpointAvailable` after that many seconds). Idempotent."""
        ready_timeout = check_timeout("ready_timeout", ready_timeout)
        if threading.current_thread() is SHARED_LOOP_THREAD.thread:
            raise RuntimeError("BackgroundPool.start() would block the shared loop thread")
        with self._lock:
            if self._loop is not None:
                return
            loop = SHARED_LOOP_THREAD.acquire()
            try:
                future = asyncio.run_coroutine_threadsafe(self._open(ready_timeout), loop)
                self._pool = future.result()
            except BaseException:
                SHARED_LOOP_THREAD.release()
                raise
            self._loop = loop
            self._thread = SHARED_LOOP_THREAD.thread

    async def _open(self, ready_timeout: float | None) -> EndpointPool:
        spec = self._source_spec
        source: Source | str | Target = spec() if callable(spec) else spec
        if isinstance(source, Source) and callable(spec):
            self._factory_source = source
        try:
            pool = EndpointPool(source, **self._kwargs)
            try:
                await pool.start()
                if ready_timeout is not None:
                    await pool.wait_ready(ready_timeout)
            except BaseException:
                await pool.aclose()
                raise
        except BaseException:
            await self._stop_factory_source()
            raise
        return pool

    async def _shutdown(self, pool: EndpointPool) -> None:
        try:
            await pool.aclose()
        finally:
            await self._stop_factory_source()

    async def _stop_factory_source(self) -> None:
        source, self._factory_source = self._factory_source, None
        if source is not None:
            await source.aclose()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the pool's loop and wait for its result (from another thread)."""
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(
            coroutine, self.loop
        )
        return future.result(timeout)

    def call_sync(
        self,
        fn: Callable[[Endpoint], T],
        *,
        idempotent: bool = True,
        deadline: float | None = None,
        attempt_timeout: float | None = None,
        classify: Classifier | None = None,
        policy: CallPolicy | None = None,
        exclude: Collection[Key] = (),
    ) -> T:
        """:meth:`EndpointPool.call_sync` on the running pool."""
        return self.pool.call_sync(
            fn,
            idempotent=idempotent,
            deadline=deadline,
            attempt_timeout=attempt_timeout,
            classify=classify,
            policy=policy,
            exclude=exclude,
        )

    def pick(self, exclude: Collection[Key] = frozenset()) -> Endpoint:
        """:meth:`EndpointPool.pick` on the running pool."""
        return self.pool.pick(exclude)

    def snapshot(self) -> PoolSnapshot:
        """:meth:`EndpointPool.snapshot` of the running pool."""
        return self.pool.snapshot()

    def close(self, timeout: float | None = 10.0) -> None:
        """Close the pool (waiting up to ``timeout`` seconds) and release the shared loop
        thread; the last background pool to close stops it (idempotent)."""
        if threading.current_thread() is SHARED_LOOP_THREAD.thread:
            raise RuntimeError("BackgroundPool.close() would block the shared loop thread")
        with self._lock:
            loop, pool = self._loop, self._pool
            self._loop = self._pool = self._thread = None
        if loop is None:
            return
        try:
            if pool is not None:
                future = asyncio.run_coroutine_threadsafe(self._shutdown(pool), loop)
                try:
                    future.result(timeout)
                except concurrent.futures.TimeoutError:
                    _log.warning("background pool %s did not close within %s s", pool, timeout)
                except Exception:
                    _log.exception("closing background pool %s failed", pool)
        finally:
            SHARED_LOOP_THREAD.release(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
