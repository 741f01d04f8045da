"""Blocking-query watches: one loop per watched query, shared by every subscriber.

A :class:`Watch` runs Consul's blocking-query loop for one :class:`WatchSpec` (e.g.
:class:`HealthServiceSpec`) using the pure rules of :mod:`mcresolve.consul.blocking` and
:mod:`mcresolve.timing`:

* the first request (and the first after an error or an index reset) is an immediate read
  (``index=0``); then each request blocks on the last index (never below 1) for ``policy.wait``,
  with a client timeout above ``wait + wait/16``, so a request can never hang forever;
* requests go through a token bucket (burst 2, one per 100 ms by default);
* an answer is delivered as a :class:`WatchUpdate` only when its value differs from the last one
  delivered (or it is the first, or the first after errors);
* an error is delivered as a :class:`WatchFailure` carrying the last good update (so a pool keeps
  its last-known-good set) and the loop retries after a jittered exponential backoff, resyncing
  with an immediate read: that also recovers from a server that restarted with fresh state,
  whose lower index would otherwise hold a blocking request for the full wait. *Any* exception
  (a malformed answer, a bug in a spec) is such an error: no answer ends the loop;
* a health answer is converted into endpoints while it is decoded (:meth:`HealthServiceSpec.fetch`
  returns a :class:`~mcresolve.consul.models.HealthAnswer`), never in a subscriber's callback:
  every subscriber sees the same usable endpoints and the same rejected instances, and the
  rejections are logged once per changed answer, naming the agent that sent them.

A :class:`WatchRegistry` keeps one :class:`Watch` per spec (kind, service, datacenter, filters,
consistency) and shares it between subscribers; the watch stops when its last subscriber closes.

:data:`SHARED_WATCHES` (a :class:`SharedWatchRegistries`) makes that sharing process-wide without
passing a registry around: :meth:`SharedWatchRegistries.lease` hands each user (each source built
by :func:`mcresolve.sources.from_target` without ``registry=``) a :class:`SharedRegistryLease` on
the one registry of its Consul configuration and event loop. Registries are reference-counted by
their leases and closed (with the client they created) when the last lease closes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from mcresolve.arguments import check_instance, check_optional_instances
from mcresolve.consul.blocking import BlockingPolicy, TokenBucket, is_change, next_index
from mcresolve.consul.client import ConsulClient
from mcresolve.consul.config import DEFAULT_BLOCKING_CONNECTIONS, ConsulConfig
from mcresolve.consul.errors import ConsulError
from mcresolve.consul.models import (
    ADDRESS_MODES,
    AddressMode,
    Consistency,
    EntryMemo,
    HealthAnswer,
    Indexed,
    QueryMeta,
    ServiceEntry,
    to_endpoints,
)
from mcresolve.endpoint import Endpoint
from mcresolve.lifecycle import AsyncClosing
from mcresolve.tasks import cancel_and_wait
from mcresolve.timing import Backoff, BackoffPolicy, RandomSource

log = logging.getLogger("mcresolve.consul.watch")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

#: Failures kept for a subscriber that does not read (older ones are dropped; updates are state
#: snapshots, so only the newest pending update is ever kept).
MAX_PENDING_FAILURES = 8


#: The shortest ``wait`` a watch is given when it shares the connection budget with many others:
#: below a second the requests would mostly measure round trips (a watch that is not holding a
#: connection still sees a change at its next turn: the index it sends is then stale and Consul
#: answers at once).
MIN_SCHEDULED_WAIT = 1.0


def scheduled_wait(wait: float, watches: int, budget: int) -> float:
    """The ``wait`` each of ``watches`` watches sends when at most ``budget`` blocking queries may
    be open at once (pure).

    Up to ``budget`` watches each hold a connection for the whole ``wait``. Beyond it they take
    turns on the ``budget`` connections (first come, first served) with the wait shortened to
    ``wait * budget / watches``, so a full round of turns still lasts ``wait``: each watch asks
    about once per wait period (requests per period stay about ``watches``, never more), and a
    change is seen within one period. Never below :data:`MIN_SCHEDULED_WAIT` (nor above
    ``wait``): with very many watches a round lasts longer than ``wait`` instead of turning into
    a busy loop.
    """
    if watches <= budget:
        return wait
    return min(wait, max(MIN_SCHEDULED_WAIT, wait * budget / watches))


class Slots:
    """A counted set of connections taken first come, first served (an asyncio semaphore whose
    waiters are served in order and which records its peak)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"slots must be >= 1, got {size!r}")
        self.size = size
        #: Slots taken now, and the most ever taken at once (observability, tests).
        self.in_use = 0
        self.peak = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        """Take a slot, waiting for one in turn when all are taken."""
        if self.in_use < self.size and not self._waiters:
            self.in_use += 1
            self.peak = max(self.peak, self.in_use)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back: to the first waiter, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands: in_use unchanged
                return
        self.in_use -= 1


def immediate_slots(budget: int) -> int:
    """Connections for immediate reads beside a budget of ``budget`` blocking queries: a tenth
    of it, 1 to 16 (16 of the 40 the default budget leaves under the agent's limit)."""
    return max(1, min(16, budget // 10))


class ConnectionBudget:
    """The connections one client's watches may hold open at once on its agent, and the watches
    that share them (one per client and event loop: :func:`connection_budget`).

    Blocking reads take one of :attr:`size` slots (:attr:`blocking`), first come first served,
    so the watches beyond :attr:`size` take turns; :meth:`wait_for` gives the shortened
    ``wait`` of :func:`scheduled_wait` for the watches registered now. Immediate reads (index 0:
    a watch's first read, its resync after an error) answer at once and take one of a few
    separate slots (:attr:`immediate`, :func:`immediate_slots`), so a watch started while every
    blocking slot is held still gets its first answer at once, not after a turn.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"connection budget must be >= 1, got {size!r}")
        self.size = size
        #: Watches sharing the budget now.
        self.watches = 0
        self.blocking = Slots(size)
        self.immediate = Slots(immediate_slots(size))

    @property
    def in_use(self) -> int:
        """Blocking slots taken now."""
        return self.blocking.in_use

    @property
    def peak(self) -> int:
        """The most blocking slots ever taken at once."""
        return self.blocking.peak

    def wait_for(self, wait: float) -> float:
        """The ``wait`` to send now instead of ``wait`` (see :func:`scheduled_wait`)."""
        return scheduled_wait(wait, self.watches, self.size)

    def slots(self, index: int) -> Slots:
        """The slots a read after ``index`` takes (``0``: an immediate read)."""
        return self.immediate if index == 0 else self.blocking


_BUDGETS: weakref.WeakKeyDictionary[
    ConsulClient, dict[asyncio.AbstractEventLoop, ConnectionBudget]
] = weakref.WeakKeyDictionary()
_BUDGETS_LOCK = threading.Lock()


def connection_budget(client: ConsulClient) -> ConnectionBudget:
    """The budget of ``client`` on the running loop, sized by its configuration's
    ``blocking_connections`` (every watch of the client shares it, whichever registry runs it)."""
    loop = asyncio.get_running_loop()
    with _BUDGETS_LOCK:  # clients may be used from several loop threads
        per_loop = _BUDGETS.setdefault(client, {})
        budget = per_loop.get(loop)
        if budget is None:
            config = getattr(client, "config", None)  # a stand-in client in a test may have none
            size = getattr(config, "blocking_connections", DEFAULT_BLOCKING_CONNECTIONS)
            budget = per_loop[loop] = ConnectionBudget(size)
            for stale in [other for other in per_loop if other.is_closed()]:
                del per_loop[stale]
        return budget


class WatchSpec(Protocol[T_co]):
    """What to watch: a hashable value (the sharing key) that knows how to run one blocking read."""

    def __hash__(self) -> int: ...

    def __eq__(self, other: object) -> bool: ...

    def describe(self) -> str:
        """A short human description for logs (``health storage-object-minio dc=dc1``)."""
        ...

    async def fetch(self, client: ConsulClient, index: int, wait: float) -> Indexed[T_co]:
        """Run one blocking read after ``index`` for at most ``wait`` seconds."""
        ...


@dataclass(frozen=True, slots=True)
class HealthServiceSpec:
    """Watch ``/v1/health/service/<service>``.

    Tags are matched case-insensitively by Consul, so they are normalised (lower-cased, sorted,
    de-duplicated) to make equal watches share one loop; node-meta pairs are sorted. ``port`` is
    the port given to instances registered without one (a target's ``port=`` option; ``None``:
    such instances are rejected). ``filter`` (a go-bexpr expression, kept verbatim: two
    spellings of one expression are two watches), ``peer``, ``ns`` and ``partition`` are part
    of the key and passed to :meth:`ConsulClient.health_service` as they are. ``address``
    chooses the LAN or WAN address of each instance (:func:`~mcresolve.consul.models.
    choose_address`; ``auto`` compares with the agent's datacenter, read once per client).
    """

    service: str
    datacenter: str | None = None
    passing: bool = True
    tags: tuple[str, ...] = ()
    node_meta: tuple[tuple[str, str], ...] = ()
    near: str | None = None
    consistency: Consistency = Consistency.DEFAULT
    port: int | None = None
    filter: str | None = None
    peer: str | None = None
    ns: str | None = None
    partition: str | None = None
    address: AddressMode = "lan"
    memo: EntryMemo = field(
        default_factory=EntryMemo, init=False, repr=False, compare=False, hash=False
    )
    """The entries of the last answer this spec decoded and their endpoints (content-addressed,
    see :class:`~mcresolve.consul.models.EntryMemo`): not part of the key."""

    def __post_init__(self) -> None:
        if self.address not in ADDRESS_MODES:
            raise ValueError(f"address must be one of {', '.join(ADDRESS_MODES)}")
        if not self.service:
            raise ValueError("service name must not be empty")
        if self.filter is not None and not self.filter.strip():
            object.__setattr__(self, "filter", None)
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port!r}")
        object.__setattr__(self, "tags", tuple(sorted({t.lower() for t in self.tags})))
        object.__setattr__(self, "node_meta", tuple(sorted(dict(self.node_meta).items())))

    def describe(self) -> str:
        """Human description for logs."""
        parts = [f"health {self.service}"]
        if self.datacenter:
            parts.append(f"dc={self.datacenter}")
        if self.passing:
            parts.append("passing")
        parts += [f"tag={t}" for t in self.tags]
        parts += [f"node-meta={k}:{v}" for k, v in self.node_meta]
        if self.near:
            parts.append(f"near={self.near}")
        if self.consistency is not Consistency.DEFAULT:
            parts.append(self.consistency.value)
        if self.port is not None:
            parts.append(f"port={self.port}")
        if self.filter is not None:
            parts.append(f"filter={self.filter!r}")
        parts += [
            f"{name}={value}"
            for name, value in (("peer", self.peer), ("ns", self.ns), ("partition", self.partition))
            if value is not None
        ]
        if self.address != "lan":
            parts.append(f"address={self.address}")
        return " ".join(parts)

    async def fetch(self, client: ConsulClient, index: int, wait: float) -> Indexed[HealthAnswer]:
        """One blocking ``health_service`` read, its entries converted into endpoints (see
        :func:`~mcresolve.consul.models.convert_entries`). Instances unchanged since the
        previous answer are neither decoded nor converted again: they keep their entry and
        endpoint objects (:attr:`memo`)."""
        answer = await client.health_service(
            self.service,
            passing=self.passing,
            tags=self.tags,
            dc=self.datacenter,
            near=self.near,
            node_meta=dict(self.node_meta),
            consistency=self.consistency,
            index=index,
            wait=wait,
            filter=self.filter,
            peer=self.peer,
            ns=self.ns,
            partition=self.partition,
            memo=self.memo,
        )
        local = await client.local_datacenter(self.address)  # auto: "other" than the agent's
        decoded = HealthAnswer.decode(
            answer.value,
            self.datacenter or "",
            self.port,
            address=self.address,
            local_datacenter=local,
            memo=self.memo,
        )
        return Indexed(decoded, answer.meta)

    def endpoints(self, entries: Iterable[ServiceEntry]) -> tuple[Endpoint, ...]:
        """Endpoints for an update's entries (datacenter from each node, else this spec's)."""
        if isinstance(entries, HealthAnswer):
            return entries.endpoints
        return to_endpoints(entries, self.datacenter or "")


@dataclass(frozen=True, slots=True)
class WatchPolicy:
    """How a watch loop behaves: blocking-query settings and the backoff after errors."""

    blocking: BlockingPolicy = field(default_factory=BlockingPolicy)
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)


@dataclass(frozen=True, slots=True)
class WatchUpdate(Generic[T]):
    """A new value of the watched query.

    Attributes:
        value: the parsed answer (for :class:`HealthServiceSpec`, the health entries).
        meta: the answer's headers (index, known leader, agent that answered...).
        received_at: monotonic time the answer arrived.
        index_reset: the index went backwards on this answer (server state reset).
        recovered: first answer after one or more failures.
    """

    value: T
    meta: QueryMeta
    received_at: float
    index_reset: bool = False
    recovered: bool = False


@dataclass(frozen=True, slots=True)
class WatchFailure(Generic[T]):
    """The watch could not get an answer; it retries after ``retry_in`` seconds.

    Attributes:
        error: what went wrong (:class:`~mcresolve.consul.errors.ConsulError`, or an unexpected
            exception, which is also logged).
        failures: consecutive failures so far.
        retry_in: seconds until the next attempt.
        last_update: the last good update (``None`` if there never was one): the last-known-good
            value a consumer should keep using meanwhile.
        at: monotonic time of the failure.
    """

    error: Exception
    failures: int
    retry_in: float
    last_update: WatchUpdate[T] | None
    at: float

    def last_good_age(self) -> float | None:
        """Seconds between the last good answer and this failure (``None`` without one)."""
        return None if self.last_update is None else self.at - self.last_update.received_at


WatchEvent = WatchUpdate[T] | WatchFailure[T]
EventCallback = Callable[[WatchUpdate[Any] | WatchFailure[Any]], None]


class Subscription(AsyncClosing, Generic[T]):
    """One consumer's view of a :class:`Watch`: an async iterator of events (and/or a callback).

    A slow consumer never blocks the watch: only the newest pending :class:`WatchUpdate` is kept
    (each is a full snapshot) plus at most :data:`MAX_PENDING_FAILURES` failures. Close it with
    :meth:`aclose` or ``async with``; iteration ends when it or its watch is closed.
    """

    def __init__(
        self,
        watch: Watch[T],
        on_event: EventCallback | None,
        on_close: Callable[[Subscription[T]], Any] | None,
    ) -> None:
        self._watch = watch
        self._on_event = on_event
        self._on_close = on_close
        self._pending: collections.deque[WatchEvent[T]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._closed = False

    @property
    def watch(self) -> Watch[T]:
        """The shared watch."""
        return self._watch

    @property
    def latest(self) -> WatchUpdate[T] | None:
        """The watch's last good update (the last-known-good value)."""
        return self._watch.latest

    @property
    def closed(self) -> bool:
        """Whether this subscription was closed (or its watch stopped)."""
        return self._closed

    def _deliver(self, event: WatchEvent[T]) -> None:
        if self._closed:
            return
        if isinstance(event, WatchUpdate):
            self._pending = collections.deque(
                e for e in self._pending if not isinstance(e, WatchUpdate)
            )
        else:
            failures = [e for e in self._pending if isinstance(e, WatchFailure)]
            if len(failures) >= MAX_PENDING_FAILURES:
                self._pending.remove(failures[0])
        self._pending.append(event)
        self._wakeup.set()
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("watch %s: subscriber callback failed", self._watch.spec.describe())

    def _end(self) -> None:
        self._closed = True
        self._wakeup.set()

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> WatchEvent[T]:
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    async def next_update(self) -> WatchUpdate[T]:
        """Wait for the next :class:`WatchUpdate`, skipping failures (raises
        ``StopAsyncIteration`` when closed). Wrap in ``asyncio.timeout`` to bound the wait."""
        async for event in self:
            if isinstance(event, WatchUpdate):
                return event
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop receiving events; the last subscriber of a registry watch stops it."""
        self._end()
        self._watch._unsubscribe(self)
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            result = on_close(self)
            if asyncio.iscoroutine(result):
                await result


class Watch(Generic[T]):
    """The blocking-query loop for one spec, fanning events out to its subscribers.

    Started by :meth:`start` (or the first :meth:`subscribe` via a :class:`WatchRegistry`),
    stopped by :meth:`aclose`. ``clock`` and ``random`` are injectable for tests.
    """

    def __init__(
        self,
        client: ConsulClient,
        spec: WatchSpec[T],
        policy: WatchPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        random_source: RandomSource = random.random,
    ) -> None:
        self._client = client
        self._spec = spec
        self._policy = policy if policy is not None else WatchPolicy()
        self._clock = clock
        self._random = random_source
        self._subscribers: list[Subscription[T]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._latest: WatchUpdate[T] | None = None
        self._failure: WatchFailure[T] | None = None
        self._budget: ConnectionBudget | None = None
        #: Requests sent so far (observability and tests).
        self.requests = 0

    @property
    def spec(self) -> WatchSpec[T]:
        """What this watch watches."""
        return self._spec

    @property
    def policy(self) -> WatchPolicy:
        """The loop's policy."""
        return self._policy

    @property
    def latest(self) -> WatchUpdate[T] | None:
        """The last good update (kept through failures)."""
        return self._latest

    @property
    def failure(self) -> WatchFailure[T] | None:
        """The current failure, ``None`` while the last request succeeded."""
        return self._failure

    @property
    def running(self) -> bool:
        """Whether the loop task is running."""
        return self._task is not None and not self._task.done()

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions."""
        return len(self._subscribers)

    def start(self) -> None:
        """Start the loop (idempotent); needs a running event loop."""
        if self._closed:
            raise RuntimeError("watch is closed")
        if self._task is None:
            self._budget = connection_budget(self._client)
            self._budget.watches += 1
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"mcresolve watch {self._spec.describe()}"
            )

    def subscribe(
        self,
        on_event: EventCallback | None = None,
        on_close: Callable[[Subscription[T]], Any] | None = None,
    ) -> Subscription[T]:
        """A new subscription. It first receives the current state: the last good update, then
        the current failure if the watch is failing."""
        if self._closed:
            raise RuntimeError("watch is closed")
        subscription = Subscription(self, on_event, on_close)
        self._subscribers.append(subscription)
        if self._latest is not None:
            subscription._deliver(self._latest)
        if self._failure is not None:
            subscription._deliver(self._failure)
        return subscription

    def _unsubscribe(self, subscription: Subscription[T]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(subscription)

    async def aclose(self) -> None:
        """Cancel the loop (an in-flight request is aborted) and end every subscription."""
        self._closed = True
        task, self._task = self._task, None
        budget, self._budget = self._budget, None
        if budget is not None:
            budget.watches -= 1
        if task is not None:
            await cancel_and_wait(task)
        for subscription in list(self._subscribers):
            subscription._end()
        self._subscribers.clear()

    def _emit(self, event: WatchEvent[T]) -> None:
        for subscription in list(self._subscribers):
            subscription._deliver(event)

    def _agent(self) -> str:
        """The agent the client talks to (the one that answered last)."""
        try:
            return self._client.current_address.base_url
        except Exception:  # a stand-in client in a test, a bug: never fail a log line
            return "?"

    async def _run(self) -> None:
        blocking = self._policy.blocking
        bucket = TokenBucket(blocking.min_interval, blocking.burst, self._clock())
        backoff = Backoff(self._policy.backoff, self._random)
        index = 0
        name = self._spec.describe()
        while True:
            delay = bucket.reserve(self._clock())
            if delay > 0:
                await asyncio.sleep(delay)
            sent = index
            try:
                answer = await self._fetch(sent, blocking.wait)
                if answer.meta.index is None:  # the client checks this; specs may not
                    raise ConsulError(f"watch {name}: answer without X-Consul-Index")
                index = self._accept(answer, sent, backoff, name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Whatever went wrong (the agent, its answer, or a bug here) is a failure to
                # report and retry: no exception ends the loop.
                if not isinstance(exc, ConsulError):
                    log.exception("watch %s: unexpected error", name)
                retry_in = backoff.failure()
                index = 0
                failure = WatchFailure(exc, backoff.failures, retry_in, self._latest, self._clock())
                self._failure = failure
                level = logging.WARNING if backoff.failures == 1 else logging.DEBUG
                log.log(
                    level,
                    "watch %s failed (%d in a row, agent %s), retry in %.2f s: %s",
                    name,
                    backoff.failures,
                    self._agent(),
                    retry_in,
                    exc,
                )
                self._emit(failure)
                await asyncio.sleep(retry_in)

    async def _fetch(self, index: int, wait: float) -> Indexed[T]:
        """One read, holding a slot of the client's connection budget while it is open (the
        wait shortened when more watches than blocking slots share it: :func:`scheduled_wait`)."""
        budget = self._budget if self._budget is not None else connection_budget(self._client)
        slots = budget.slots(index)
        await slots.acquire()
        try:
            self.requests += 1
            return await self._spec.fetch(self._client, index, budget.wait_for(wait))
        finally:
            slots.release()

    def _accept(self, answer: Indexed[T], sent: int, backoff: Backoff, name: str) -> int:
        """Deliver ``answer`` if it changed; return the index of the next request."""
        assert answer.meta.index is not None
        recovered = self._failure is not None
        if recovered:
            log.info("watch %s recovered after %d failures", name, backoff.failures)
        backoff.success()
        self._failure = None
        step = next_index(sent, answer.meta.index)
        if step.went_backwards:
            log.info(
                "watch %s: index went backwards (%d -> %d), resyncing",
                name,
                sent,
                answer.meta.index,
            )
        previous = self._latest
        if recovered or is_change(
            first=previous is None,
            previous=None if previous is None else previous.value,
            current=answer.value,
        ):
            self._log_rejections(answer, previous, name)
            update = WatchUpdate(
                answer.value, answer.meta, self._clock(), step.went_backwards, recovered
            )
            self._latest = update
            self._emit(update)
        return step.next_index

    @staticmethod
    def _log_rejections(answer: Indexed[T], previous: WatchUpdate[T] | None, name: str) -> None:
        """Log the instances a changed answer rejected, once: at WARNING when they differ from
        the previous answer's, else at DEBUG."""
        value = answer.value
        if not isinstance(value, HealthAnswer) or not value.rejected:
            return
        before = previous.value if previous is not None else None
        same = isinstance(before, HealthAnswer) and set(before.rejected) == set(value.rejected)
        log.log(
            logging.DEBUG if same else logging.WARNING,
            "watch %s: agent %s answered %d instance(s) that cannot be used%s: %s",
            name,
            answer.meta.address or "?",
            len(value.rejected),
            " (all of them: the last good set is kept)" if value.converted.rejected_whole else "",
            value.converted.describe(),
        )


class WatchRegistry(AsyncClosing):
    """One shared :class:`Watch` per spec for a client; subscribers share it, and it is stopped
    when the last subscriber closes.

    Use one registry per process (or per client) so that N pools watching the same service,
    datacenter, filters and consistency cause one request stream to Consul.
    """

    def __init__(
        self,
        client: ConsulClient,
        policy: WatchPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        random_source: RandomSource = random.random,
    ) -> None:
        check_instance("client", client, (ConsulClient,), "a ConsulClient")
        check_optional_instances(("policy", policy, WatchPolicy))
        self._client = client
        self._policy = policy if policy is not None else WatchPolicy()
        self._clock = clock
        self._random = random_source
        self._watches: dict[WatchSpec[Any], Watch[Any]] = {}
        self._closed = False

    @property
    def client(self) -> ConsulClient:
        """The client the watches use."""
        return self._client

    def watches(self) -> dict[WatchSpec[Any], Watch[Any]]:
        """A copy of the running watches by spec (introspection)."""
        return dict(self._watches)

    def shared(self) -> WatchRegistry:
        """The registry that runs the watches: this one (a lease answers its shared registry).
        What outlives one user (a shared execution stream) subscribes here, not via a lease
        whose close would end its subscriptions."""
        return self

    def subscribe(
        self, spec: WatchSpec[T], on_event: EventCallback | None = None
    ) -> Subscription[T]:
        """Subscribe to ``spec``, starting its watch if none runs yet. Needs a running loop."""
        if self._closed:
            raise RuntimeError("watch registry is closed")
        watch: Watch[T] | None = self._watches.get(spec)
        if watch is None:
            watch = Watch(
                self._client, spec, self._policy, clock=self._clock, random_source=self._random
            )
            self._watches[spec] = watch
            watch.start()
            log.debug("watch %s started", spec.describe())
        return watch.subscribe(on_event, self._release)

    async def _release(self, subscription: Subscription[Any]) -> None:
        watch = subscription.watch
        if watch.subscriber_count == 0 and self._watches.get(watch.spec) is watch:
            del self._watches[watch.spec]
            log.debug("watch %s stopped: no subscriber left", watch.spec.describe())
            await watch.aclose()

    async def aclose(self) -> None:
        """Stop every watch (their subscriptions end)."""
        self._closed = True
        watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            await watch.aclose()


#: Per-process key of the token digest in :class:`ConsulIdentity` (a digest is not reversible, and
#: with a random key it cannot even be compared with a digest computed elsewhere).
_TOKEN_DIGEST_KEY = os.urandom(32)


@dataclass(frozen=True, slots=True)
class ConsulIdentity:
    """What makes two Consul configurations interchangeable for watches: every setting
    (addresses and schemes, default datacenter, TLS files and verification, timeouts) and *which*
    token, by a keyed digest. The token itself is never stored here, nor shown by ``repr``."""

    config: ConsulConfig
    """The configuration without its token."""
    token_digest: bytes | None = field(default=None, repr=False)

    @classmethod
    def of(cls, config: ConsulConfig) -> ConsulIdentity:
        """The identity of ``config``."""
        digest = None
        if config.token is not None:
            digest = hmac.new(_TOKEN_DIGEST_KEY, config.token.encode(), hashlib.sha256).digest()
        return cls(config.with_options(token=None), digest)

    def __repr__(self) -> str:
        addresses = ",".join(a.base_url for a in self.config.addresses)
        token = "set" if self.token_digest is not None else "none"
        return f"ConsulIdentity({addresses}, token={token}, tls={self.config.uses_tls})"


#: What a shared registry is keyed by besides the loop: a configuration's identity, or a client
#: object passed in by the application (shared by everything given that very client).
SharingKey = ConsulIdentity | ConsulClient


@dataclass(slots=True)
class _SharedEntry:
    registry: WatchRegistry
    owns_client: bool
    users: int = 0


class SharedWatchRegistries:
    """Process-wide :class:`WatchRegistry` objects, one per (Consul configuration, event loop).

    The configuration is compared by :class:`ConsulIdentity` (a client passed in is shared by
    identity of the object). Watches are per event loop because aiohttp sessions are bound to
    the loop that created them. Each user takes a :meth:`lease`; a registry (and the client it
    created for a configuration) is closed when its last lease closes. Thread-safe: pools on
    different loop threads use separate registries.
    """

    def __init__(self, policy: WatchPolicy | None = None) -> None:
        self._policy = policy
        self._lock = threading.Lock()
        self._entries: dict[tuple[SharingKey, asyncio.AbstractEventLoop], _SharedEntry] = {}

    def lease(self, consul: ConsulClient | ConsulConfig) -> SharedRegistryLease:
        """A new lease on the registry for ``consul``; it binds to the running loop at its
        first use and must be closed (:meth:`SharedRegistryLease.aclose`) by its user."""
        key: SharingKey = consul if isinstance(consul, ConsulClient) else ConsulIdentity.of(consul)
        return SharedRegistryLease(self, key, consul)

    def active(self) -> dict[tuple[SharingKey, asyncio.AbstractEventLoop], int]:
        """Open leases per (key, loop) of the registries alive now (introspection, tests)."""
        with self._lock:
            return {key: entry.users for key, entry in self._entries.items()}

    def registry_for(
        self, consul: ConsulClient | ConsulConfig, loop: asyncio.AbstractEventLoop | None = None
    ) -> WatchRegistry | None:
        """The live registry for ``consul`` on ``loop`` (default: the running one), if any."""
        key: SharingKey = consul if isinstance(consul, ConsulClient) else ConsulIdentity.of(consul)
        loop = loop if loop is not None else asyncio.get_running_loop()
        with self._lock:
            entry = self._entries.get((key, loop))
        return None if entry is None else entry.registry

    def _acquire(
        self, key: SharingKey, consul: ConsulClient | ConsulConfig, loop: asyncio.AbstractEventLoop
    ) -> WatchRegistry:
        with self._lock:
            for stale in [k for k in self._entries if k[1].is_closed()]:
                # A loop closed without its users closing: nothing can be awaited on it any more.
                del self._entries[stale]
            entry = self._entries.get((key, loop))
            if entry is None:
                owns = not isinstance(consul, ConsulClient)
                client = ConsulClient(consul) if isinstance(consul, ConsulConfig) else consul
                entry = _SharedEntry(WatchRegistry(client, self._policy), owns)
                self._entries[(key, loop)] = entry
                log.debug("shared watch registry for %r created", key)
            entry.users += 1
            return entry.registry

    async def _release(self, key: SharingKey, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            entry = self._entries.get((key, loop))
            if entry is None:
                return
            entry.users -= 1
            if entry.users > 0:
                return
            del self._entries[(key, loop)]
        log.debug("shared watch registry for %r closed: no user left", key)
        await entry.registry.aclose()
        if entry.owns_client:
            await entry.registry.client.aclose()


class SharedRegistryLease(WatchRegistry):
    """One user's handle on a process-wide registry (see :class:`SharedWatchRegistries`).

    It is a :class:`WatchRegistry` for its user: :meth:`subscribe` goes to the shared registry of
    the lease's configuration and of the running loop (bound at the first call; using it from
    another loop afterwards raises ``RuntimeError``). :meth:`aclose` ends this user's open
    subscriptions and releases the registry; the last release closes it.
    """

    def __init__(
        self, shared: SharedWatchRegistries, key: SharingKey, consul: ConsulClient | ConsulConfig
    ) -> None:
        # Deliberately no WatchRegistry.__init__: every public method is delegated.
        self._shared = shared
        self._key = key
        self._consul = consul
        self._bound: tuple[asyncio.AbstractEventLoop, WatchRegistry] | None = None
        self._subscriptions: list[Subscription[Any]] = []
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "bound" if self._bound else "unbound"
        return f"<SharedRegistryLease {self._key!r} {state}>"

    @property
    def key(self) -> SharingKey:
        """What the shared registry is keyed by (besides the loop)."""
        return self._key

    @property
    def bound(self) -> bool:
        """Whether the lease holds a registry (after its first use, until closed)."""
        return self._bound is not None

    def _registry(self) -> WatchRegistry:
        if self._closed:
            raise RuntimeError("watch registry lease is closed")
        loop = asyncio.get_running_loop()
        if self._bound is None:
            self._bound = (loop, self._shared._acquire(self._key, self._consul, loop))
        elif self._bound[0] is not loop:
            raise RuntimeError("a shared watch registry lease is bound to another event loop")
        return self._bound[1]

    @property
    def client(self) -> ConsulClient:
        """The shared registry's client (needs the running loop the lease is bound to)."""
        return self._registry().client

    def watches(self) -> dict[WatchSpec[Any], Watch[Any]]:
        """The shared registry's running watches (empty before the first use)."""
        return {} if self._bound is None else self._bound[1].watches()

    def shared(self) -> WatchRegistry:
        """The shared registry of this lease's loop (binds the lease at its first use)."""
        return self._registry()

    def subscribe(
        self, spec: WatchSpec[T], on_event: EventCallback | None = None
    ) -> Subscription[T]:
        """Subscribe to ``spec`` on the shared registry of this lease's loop."""
        subscription = self._registry().subscribe(spec, on_event)
        self._subscriptions = [s for s in self._subscriptions if not s.closed]
        self._subscriptions.append(subscription)
        return subscription

    async def aclose(self) -> None:
        """End this user's subscriptions and release the shared registry (idempotent)."""
        if self._closed:
            return
        self._closed = True
        bound, self._bound = self._bound, None
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            if not subscription.closed:
                await subscription.aclose()
        if bound is not None and not bound[0].is_closed():
            await self._shared._release(self._key, bound[0])


#: The process-wide registries :func:`mcresolve.sources.from_target` uses without ``registry=``.
SHARED_WATCHES = SharedWatchRegistries()
