"""One prepared-query execution stream per query per process, fanned out to every subscriber.

A prepared query cannot block, so each stage-3 source re-executes it (periodically, on a health
change of the query's service, on ``refresh_now()``). Fifty pools on one ``consul+query://``
target used to execute it fifty times as often as one pool. A :class:`QueryStream` runs the
execution loop once for every source that has the same

* Consul client object (the process-wide shared one per Consul configuration, token and event
  loop when sources are built by :func:`~mcresolve.sources.from_target`),
* watch registry (the shared registry behind a lease, see
  :meth:`~mcresolve.consul.watch.WatchRegistry.shared`),
* event loop,
* target (the query, ``dc``, ``near``, ``limit``, ``refresh`` and every option), and
* execution settings (:class:`StreamSettings`),

and delivers each outcome (:class:`QueryAnswered` or :class:`QueryFailed`) to all of them. A
``refresh_now()`` from any subscriber is a request to the one stream: requests arriving while an
execution is in flight, or while the damping rule (:mod:`mcresolve.sources.refresh`) holds them,
are coalesced into one execution, so a storm of ``refresh_now()`` from many pools costs what one
pool's costs. A subscriber joining a running stream receives its latest outcome at once.

The stream is reference-counted: it stops (its task cancelled, its health subscriptions closed)
when its last subscriber leaves. Should its loop ever end on an unexpected exception (a bug:
failures are outcomes, never raised), every subscriber's :meth:`QuerySubscription.wait` raises
it, the stream leaves the table, and the subscribers' own restart (``PublishingSource``) builds
a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcresolve.consul.client import ConsulClient
from mcresolve.consul.errors import ConsulError
from mcresolve.consul.models import PreparedQueryResult
from mcresolve.consul.watch import (
    HealthServiceSpec,
    Subscription,
    WatchFailure,
    WatchRegistry,
    WatchUpdate,
)
from mcresolve.endpoint import Converted
from mcresolve.sources.refresh import RefreshDamper, RefreshDamping
from mcresolve.sources.target import PreparedQueryTarget
from mcresolve.sources.wakeup import RefreshTrigger, Wake
from mcresolve.tasks import cancel_and_wait
from mcresolve.timing import Backoff, BackoffPolicy, RandomSource, jittered

__all__ = [
    "SHARED_QUERY_STREAMS",
    "QueryAnswered",
    "QueryFailed",
    "QueryOutcome",
    "QueryStream",
    "QueryStreams",
    "QuerySubscription",
    "StreamSettings",
]

_log = logging.getLogger("mcresolve.sources.prepared_query")


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """How a stream executes: at least ``min_interval`` seconds between executions, ``backoff``
    after a failed one, ``damping`` of ``refresh_now()`` requests, jitter from ``random_source``.
    Part of the sharing key: sources asking for different settings get different streams."""

    min_interval: float
    backoff: BackoffPolicy
    damping: RefreshDamping | None
    random_source: RandomSource = random.random


@dataclass(frozen=True, slots=True)
class QueryAnswered:
    """An execution's answer (``result``, with the service, the answering datacenter and the
    failovers tried), converted once for every subscriber."""

    converted: Converted
    datacenter: str
    agent: str
    result: PreparedQueryResult


@dataclass(frozen=True, slots=True)
class QueryFailed:
    """An execution failed (any exception); the stream retries after its backoff."""

    error: Exception


#: Health subscriptions of crashed streams being closed in the background.
_CLOSING: set[asyncio.Task[None]] = set()

QueryOutcome = QueryAnswered | QueryFailed
Deliver = Callable[[QueryOutcome], None]

_Key = tuple[
    ConsulClient,
    WatchRegistry | None,
    asyncio.AbstractEventLoop,
    PreparedQueryTarget,
    StreamSettings,
]


class QueryStream:
    """The execution loop of one prepared query, shared by its subscribers (see the module doc).

    Built and started by :meth:`QueryStreams.subscribe`; not meant to be created directly.
    """

    def __init__(
        self,
        target: PreparedQueryTarget,
        client: ConsulClient,
        registry: WatchRegistry | None,
        settings: StreamSettings,
    ) -> None:
        self.target = target
        self._client = client
        self._registry = registry
        self._settings = settings
        self._backoff = Backoff(settings.backoff, settings.random_source)
        self._trigger = RefreshTrigger(RefreshDamper(settings.damping, settings.random_source))
        self._watches: dict[HealthServiceSpec, Subscription[Any]] = {}
        self._subscribers: list[QuerySubscription] = []
        self._task: asyncio.Task[None] | None = None
        self.latest: QueryOutcome | None = None
        #: Executions sent so far (observability and tests).
        self.executions = 0

    @property
    def subscriber_count(self) -> int:
        """Subscriptions open on this stream."""
        return len(self._subscribers)

    def request(self) -> None:
        """A ``refresh_now()``: execute as soon as the damping rule allows (coalesced)."""
        self._trigger.request()

    def signal(self) -> None:
        """Execute at once (a health change), never damped."""
        self._trigger.signal()

    def _start(self, on_crash: Callable[[QueryStream], None]) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"mcresolve query stream {self.target}"
        )
        self._task.add_done_callback(lambda task: self._ended(task, on_crash))

    def _ended(self, task: asyncio.Task[None], on_crash: Callable[[QueryStream], None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None:  # the loop never returns; treat an end like a crash all the same
            error = RuntimeError(f"query stream {self.target} ended")
        on_crash(self)
        for subscription in list(self._subscribers):
            subscription._crash(error)
        self._subscribers.clear()
        # health subscriptions are closed by the subscribers' restart (a new stream) or stop
        watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            closing = asyncio.get_running_loop().create_task(watch.aclose())
            _CLOSING.add(closing)  # held until done (the loop keeps only weak references)
            closing.add_done_callback(_CLOSING.discard)

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            await cancel_and_wait(task)
        watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            await watch.aclose()

    def _emit(self, outcome: QueryOutcome) -> None:
        self.latest = outcome
        for subscription in list(self._subscribers):
            subscription._deliver(outcome)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        min_interval = self._settings.min_interval
        last_sent = -min_interval
        wake = Wake.PERIODIC
        while True:
            wait_min = last_sent + min_interval - loop.time()
            if wait_min > 0:
                await asyncio.sleep(wait_min)
            last_sent = loop.time()
            outcome, delay = await self._execute_once()
            self._trigger.observe(outcome, forced=wake is Wake.FORCED)
            wake = await self._trigger.wait(delay)

    async def _execute_once(self) -> tuple[object, float]:
        """Execute once and deliver; return the outcome (the endpoints and answering datacenter,
        or the error's type) for the damping rule and the delay before the next periodic
        execution."""
        target = self.target
        self.executions += 1
        try:
            result = await self._client.query_execute(
                target.query, dc=target.dc, near=target.near, limit=target.limit
            )
            return await self._use(result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure is delivered and retried, never raised
            retry_in = self._backoff.failure()
            unexpected = not isinstance(exc, ConsulError)
            _log.log(
                logging.WARNING if self._backoff.failures == 1 else logging.DEBUG,
                "prepared query %s failed (%d in a row, agent %s), retry in %.2f s: %s",
                target.query,
                self._backoff.failures,
                self._agent(),
                retry_in,
                exc,
                exc_info=unexpected and self._backoff.failures == 1,
            )
            self._emit(QueryFailed(exc))
            return type(exc), retry_in

    async def _use(self, result: PreparedQueryResult) -> tuple[object, float]:
        """Deliver an execution's answer and follow its datacenter's health."""
        target = self.target
        converted = result.convert(
            target.options.port,
            address=target.address,
            local_datacenter=await self._client.local_datacenter(target.address),
        )
        if converted.rejected_whole:
            self._backoff.failure()  # a garbage answer is a failure: retried after the backoff
        else:
            self._backoff.success()
        self._emit(QueryAnswered(converted, result.datacenter, result.meta.address, result))
        if converted.rejected_whole:
            return ("rejected", converted.rejected), self._backoff.last_delay
        await self._watch_health(result.service, result.datacenter if result.failovers else None)
        outcome = (frozenset(converted.endpoints), result.datacenter)  # Consul shuffles the nodes
        return outcome, jittered(self.target.refresh, self._settings.random_source())

    def _agent(self) -> str:
        try:
            return self._client.current_address.base_url
        except Exception:  # a stand-in client: never fail a log line
            return "?"

    async def _watch_health(self, service: str, remote_dc: str | None) -> None:
        """Keep watches on ``service`` in the local datacenter and in ``remote_dc``."""
        if self._registry is None or not service:
            return
        port = self.target.options.port
        wanted = {HealthServiceSpec(service, datacenter=self.target.dc, port=port)}
        if remote_dc is not None and remote_dc != self.target.dc:
            wanted.add(HealthServiceSpec(service, datacenter=remote_dc, port=port))
        for spec in [s for s in self._watches if s not in wanted]:
            # shielded: Subscription.aclose awaits the watch task it cancels and would swallow
            # a cancellation of this task arriving meanwhile (stop would then hang)
            await asyncio.shield(self._watches.pop(spec).aclose())
        for spec in wanted - self._watches.keys():
            self._watches[spec] = self._registry.subscribe(spec, self._health_changed(spec))

    def _health_changed(
        self, spec: HealthServiceSpec
    ) -> Callable[[WatchUpdate[Any] | WatchFailure[Any]], None]:
        def on_event(event: WatchUpdate[Any] | WatchFailure[Any]) -> None:
            # Every event re-executes: an update (the first one too: a change between our
            # execution and the watch's first read must not wait for the periodic refresh), and
            # a failure (the agent may be down: executing reports it now, not at the refresh).
            _log.debug("prepared query %s: %s event", self.target.query, spec.describe())
            self._trigger.signal()

        return on_event


class QuerySubscription:
    """One subscriber's membership of a :class:`QueryStream`."""

    def __init__(self, streams: QueryStreams, key: _Key, stream: QueryStream, deliver: Deliver):
        self._streams = streams
        self._key = key
        self.stream = stream
        self._on_outcome = deliver
        self._crashed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closed = False

    def _deliver(self, outcome: QueryOutcome) -> None:
        if self._closed:
            return
        try:
            self._on_outcome(outcome)
        except Exception:
            _log.exception("subscriber of query stream %s failed", self.stream.target)

    def _crash(self, error: BaseException) -> None:
        self._closed = True
        if not self._crashed.done():
            self._crashed.set_exception(error)

    async def wait(self) -> None:
        """Wait until the subscription closes; raise what ended the stream if it crashed."""
        await asyncio.shield(self._crashed)

    async def aclose(self) -> None:
        """Leave the stream (idempotent); the last subscriber stops it."""
        if not self._crashed.done():
            self._crashed.set_result(None)
        if self._closed:
            return
        self._closed = True
        await self._streams._leave(self._key, self)


class QueryStreams:
    """The table of running :class:`QueryStream` objects (see the module doc). Thread-safe:
    sources on different loops use different streams."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[_Key, QueryStream] = {}

    def active(self) -> list[QueryStream]:
        """The streams running now (introspection, tests)."""
        with self._lock:
            return list(self._streams.values())

    def subscribe(
        self,
        target: PreparedQueryTarget,
        client: ConsulClient,
        registry: WatchRegistry | None,
        settings: StreamSettings,
        deliver: Deliver,
    ) -> QuerySubscription:
        """Join the stream for these (starting it when none runs); ``deliver`` gets its latest
        outcome at once, then every later one. Needs the running loop."""
        loop = asyncio.get_running_loop()
        key: _Key = (client, registry, loop, target, settings)
        with self._lock:
            stream = self._streams.get(key)
            created = stream is None
            if stream is None:
                stream = QueryStream(target, client, registry, settings)
                self._streams[key] = stream
        subscription = QuerySubscription(self, key, stream, deliver)
        stream._subscribers.append(subscription)
        if created:
            stream._start(self._forget)
            _log.debug("query stream %s started", target)
        elif stream.latest is not None:
            subscription._deliver(stream.latest)
        return subscription

    def _forget(self, stream: QueryStream) -> None:
        with self._lock:
            for key in [k for k, s in self._streams.items() if s is stream]:
                del self._streams[key]

    async def _leave(self, key: _Key, subscription: QuerySubscription) -> None:
        stream = subscription.stream
        with contextlib.suppress(ValueError):
            stream._subscribers.remove(subscription)
        if stream._subscribers:
            return
        with self._lock:
            if self._streams.get(key) is stream:
                del self._streams[key]
        _log.debug("query stream %s stopped: no subscriber left", stream.target)
        await stream._stop()


#: The process-wide table :class:`~mcresolve.sources.PreparedQuerySource` uses by default.
SHARED_QUERY_STREAMS = QueryStreams()
