"""The pool's state and plumbing (:class:`PoolCore`), outcome reporting (:class:`PoolReporting`)
and the public value types of :mod:`mcresolve.pool`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Self, TypeVar

from mcresolve.arguments import check_instance, check_seconds, check_str_tuple
from mcresolve.balancer.balancer import Balancer, BalancerUpdate
from mcresolve.balancer.ewma import EndpointLoad
from mcresolve.balancer.locality import (
    DEFAULT_FAILBACK_HOLD_DOWN,
    datacenter_of,
)
from mcresolve.balancer.outlier import (
    FailureKind,
    OutlierPolicy,
)
from mcresolve.balancer.picker import DEFAULT_PANIC_THRESHOLD, Picker, PickStrategy
from mcresolve.balancer.retry_budget import RetryBudget, RetryBudgetPolicy
from mcresolve.consul.client import ConsulClient
from mcresolve.consul.config import ConsulConfig
from mcresolve.consul.watch import WatchRegistry
from mcresolve.endpoint import Endpoint, Key
from mcresolve.errors import NoEndpointAvailable, PoolClosed
from mcresolve.lifecycle import deprecated_verb
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.pool.driver import fault_of_outcome, latency_sample
from mcresolve.pool.events import EventHub, EventKind, EventStream, PoolEvent
from mcresolve.pool.planner import (
    AttemptContext,
    AttemptRecord,
    Classifier,
    Fault,
    PoolView,
    VerdictLike,
    default_classify,
    fault_of,
)
from mcresolve.sources.base import Resolution, Source
from mcresolve.sources.target import Target
from mcresolve.sources.wiring import AgentLookup, wire

__all__ = [
    "AttemptHandle",
    "EndpointStatus",
    "PoolCore",
    "PoolPolicy",
    "PoolReporting",
    "PoolSnapshot",
    "check_timeout",
]

_log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    """Everything that shapes a pool's behaviour (defaults justified in the modules named)."""

    call: CallPolicy = field(default_factory=CallPolicy)
    """Default per-call policy (:mod:`mcresolve.pool.call_policy`)."""
    outlier: OutlierPolicy = field(default_factory=OutlierPolicy)
    """Passive ejection (:class:`mcresolve.balancer.outlier.OutlierPolicy`)."""
    retry_budget: RetryBudgetPolicy = field(default_factory=RetryBudgetPolicy)
    """Shared by every call of the pool (:mod:`mcresolve.balancer.retry_budget`)."""
    strategy: PickStrategy = PickStrategy.P2C
    """Picking strategy (P2C on in-flight × peak-EWMA, :mod:`mcresolve.balancer.picker`)."""
    panic_threshold: float = DEFAULT_PANIC_THRESHOLD
    """Envoy's healthy panic threshold (50 %)."""
    failback_hold_down: float = DEFAULT_FAILBACK_HOLD_DOWN
    """Seconds the local datacenter must stay usable before traffic fails back (30 s)."""
    datacenter_preference: tuple[str, ...] = ()
    """Remote datacenters in failover order (then by name)."""
    agent_lookup_timeout: float = 2.0
    """Limit on asking the Consul agent for the local datacenter at start (one round trip on
    loopback; 2 s matches the Consul client's default request timeout for non-blocking calls)."""

    def __post_init__(self) -> None:
        for name, types, expected in (
            ("call", (CallPolicy,), "a CallPolicy"),
            ("outlier", (OutlierPolicy,), "an OutlierPolicy"),
            ("retry_budget", (RetryBudgetPolicy,), "a RetryBudgetPolicy"),
            ("strategy", (PickStrategy,), "a PickStrategy"),
        ):
            check_instance(f"PoolPolicy.{name}", getattr(self, name), types, expected)
        check_instance("PoolPolicy.panic_threshold", self.panic_threshold, (int, float), "a number")
        if not 0.0 <= self.panic_threshold <= 1.0:
            raise ValueError(
                f"PoolPolicy.panic_threshold must be in [0, 1], got {self.panic_threshold!r}"
            )
        check_seconds("PoolPolicy.failback_hold_down", self.failback_hold_down, zero=True)
        check_str_tuple("PoolPolicy.datacenter_preference", self.datacenter_preference)
        check_seconds("PoolPolicy.agent_lookup_timeout", self.agent_lookup_timeout)


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    """One endpoint in a :class:`PoolSnapshot`."""

    endpoint: Endpoint
    datacenter: str
    state: str
    """``"active"`` (takes traffic), ``"standby"`` (usable, but in a datacenter that is not
    active, or avoided for a while after answering for the whole cluster) or ``"ejected"``."""
    in_picker: bool
    """The current picker may return it (panic mode includes ejected endpoints)."""
    ejected_reason: FailureKind | None
    """Why it was last ejected (None: never)."""
    ejected_since: float | None
    ejected_until: float | None
    """Pool-clock times of the last ejection (may be in the past)."""
    ejections: int
    """Current ejection multiplier (grows with repeated ejections, decays over time)."""
    consecutive_failures: Mapping[FailureKind, int]
    in_flight: int
    latency_ewma: float
    """Peak-EWMA latency estimate in seconds."""


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """Immutable introspection of a pool (:meth:`EndpointPool.snapshot`)."""

    name: str
    taken_at: float
    """Pool clock."""
    endpoints: tuple[EndpointStatus, ...]
    local_datacenter: str | None
    active_datacenter: str | None
    failed_over: bool
    panic: bool
    """The picker is in panic mode (too few usable endpoints: it picks among all)."""
    usable: int
    resolution: Resolution | None
    """The source's latest resolution."""
    resolution_age: float | None
    """Seconds since the endpoints in use were resolved."""
    stale: bool
    """The endpoints are a last known good set (the source's latest attempt failed)."""
    source_error: str | None
    fallback: bool
    retry_budget: int
    """Retries the budget would allow right now."""

    def by_state(self, state: str) -> tuple[Endpoint, ...]:
        """Endpoints in ``state`` (``"active"``, ``"standby"``, ``"ejected"``)."""
        return tuple(s.endpoint for s in self.endpoints if s.state == state)


@dataclass(frozen=True, slots=True)
class _Finished:
    record: AttemptRecord
    value: Any = None


class AttemptHandle:
    """One attempt a caller runs itself (``pick()`` + report): counts as in flight until
    :meth:`succeeded`, :meth:`failed` or :meth:`abandoned` is called (once)."""

    __slots__ = ("_done", "_load", "_pool", "endpoint", "started")

    def __init__(self, pool: PoolReporting, endpoint: Endpoint) -> None:
        self._pool = pool
        self.endpoint = endpoint
        self._load = pool._load_of(endpoint.key)
        self._load.start()
        self.started = pool._clock()
        self._done = False

    def _finish(self) -> bool:
        if self._done:
            return False
        self._done = True
        return True

    def succeeded(self) -> None:
        """The attempt succeeded (or got an answer that proves the endpoint serves)."""
        if self._finish():
            self._pool._report(self.endpoint, None, self._load, self.started, None, True)

    def failed(self, verdict: VerdictLike | FailureKind, *, penalty: float | None = None) -> None:
        """The attempt failed: ``verdict`` from a classifier, or a bare
        :class:`~mcresolve.balancer.outlier.FailureKind` (a NODE failure of that kind). ``penalty``:
        latency fed to the EWMA (default: the measured time, at least the attempt timeout for
        NODE failures)."""
        if self._finish():
            self._pool._report(self.endpoint, verdict, self._load, self.started, penalty, True)

    def abandoned(self) -> None:
        """The attempt was cancelled by the caller: not counted for or against the endpoint's
        health; its elapsed time still raises the latency estimate when above it (see
        :meth:`~mcresolve.balancer.ewma.EndpointLoad.abandon`)."""
        if self._finish():
            now = self._pool._clock()
            self._load.abandon(now, now - self.started)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leaving without a report: success if no exception, else abandoned."""
        if exc is None:
            self.succeeded()
        else:
            self.abandoned()


def _short(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (a static target with 100 endpoints is long)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


_EMPTY_COUNTS: Mapping[FailureKind, int] = MappingProxyType({})


_NO_KEYS: frozenset[Key] = frozenset()


def check_timeout(name: str, value: object) -> float | None:
    """``value`` as a timeout in seconds (None: no limit): :class:`TypeError` unless a number,
    :class:`ValueError` when negative or NaN; the message names the parameter."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(value).__name__}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative number of seconds, not {value!r}")
    return float(value)


class PoolCore:
    """The pool's state and plumbing: construction, lifecycle, the balancer fed under the lock,
    the timer that ticks it, change notification and events (no call logic)."""

    def __init__(
        self,
        source: Source | str | Target,
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
        if policy is not None and not isinstance(policy, PoolPolicy):
            raise TypeError(f"policy must be a PoolPolicy, not {type(policy).__name__}")
        self.policy = policy if policy is not None else PoolPolicy()
        wiring = wire(source, local_datacenter=local_datacenter, consul=consul, registry=registry)
        self._source: Source = wiring.source
        self._owns_source = wiring.owns_source
        self.name = name or _short(self._source.description)
        self._explicit_dc = wiring.local_datacenter
        self._agent_lookup: AgentLookup | None = wiring.agent
        self._classify = classify
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._generation = 0
        self._balancer = Balancer(
            name=self.name,
            outlier=self.policy.outlier,
            strategy=self.policy.strategy,
            panic_threshold=self.policy.panic_threshold,
            failback_hold_down=self.policy.failback_hold_down,
            datacenter_preference=self.policy.datacenter_preference,
            rng=self._rng,
            clock=clock,
        )
        self._budget = RetryBudget(self.policy.retry_budget)
        self._hub = EventHub()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._async_changed: asyncio.Event | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._attempt_listeners: list[Callable[[AttemptRecord], None]] = []
        self._started = False
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def source(self) -> Source:
        """The source this pool consumes."""
        return self._source

    @property
    def events(self) -> EventHub:
        """The pool's event hub (``pool.events.subscribe(callback)``)."""
        return self._hub

    def stream_events(self, maxlen: int = 1000) -> EventStream:
        """An async iterator over later events (``async for event in pool.stream_events()``)."""
        return self._hub.stream(maxlen)

    async def start(self) -> None:
        """Start consuming the source (idempotent while open; :class:`PoolClosed` once
        closed)."""
        if self._closed:
            raise PoolClosed(f"pool {self.name} is closed")
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._async_changed = asyncio.Event()
        self._hub.bind(self._loop)
        if self._explicit_dc is None and self._agent_lookup is not None:
            self._explicit_dc = await self._agent_lookup.datacenter(
                self.policy.agent_lookup_timeout
            )
        if self._explicit_dc is not None:
            with self._lock:
                self._balancer.set_local(self._explicit_dc)
        self._remove_listener = self._source.add_listener(self._on_resolution)
        await self._source.start()
        current = self._source.current
        if current is not None and current is not self._balancer.resolution:
            self._on_resolution(current)

    async def close(self) -> None:
        """Deprecated: the old name of :meth:`aclose`."""
        deprecated_verb(self, "close")
        await self.aclose()

    async def aclose(self) -> None:
        """Stop consuming the source (stopping it if the pool built it) and wake every waiter
        (their calls raise :class:`~mcresolve.errors.PoolClosed`). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._owns_source:
            await self._source.aclose()
        self._notify_change()
        self._hub.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise PoolClosed(f"pool {self.name} is closed")
        if not self._started:
            raise PoolClosed(f"pool {self.name} is not started (use 'async with pool')")

    # --- source updates ----------------------------------------------------------------------

    def _on_resolution(self, resolution: Resolution) -> None:
        """Listener on the source (runs on the loop thread, in the publishing task)."""
        if self._closed:
            return
        with self._lock:
            update = self._balancer.resolve(resolution, self._clock())
            self._schedule_wake(update.wake_at)
        if update.changed:
            _log.info("pool %s: %s", self, resolution)
        self._apply(update)

    def _apply(self, update: BalancerUpdate | None) -> None:
        """Carry out a balancer update (outside the lock): re-resolve, wake waiters, publish."""
        if update is None:
            return
        if update.refresh:
            self._request_refresh()
        if update.changed:
            self._notify_change()
        self._emit(update.events)

    # --- timer -------------------------------------------------------------------------------

    def _schedule_wake(self, at: float | None) -> None:
        loop = self._loop
        if loop is None or self._closed:
            return
        if threading.get_ident() != self._loop_thread:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._set_timer, at)
            return
        self._set_timer(at)

    def _set_timer(self, at: float | None) -> None:
        if self._closed or self._loop is None:
            return
        if self._timer is not None and self._timer_at == at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            # A millisecond late so the ejection has ended when the timer fires.
            delay = max(0.0, at - self._clock()) + 0.001
            self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._closed:
            return
        self._refresh_picker(self._clock())

    def _catch_up(self, now: float) -> None:
        """Tick the balancer now if its wake-up is due (thread-safe; cheap when not): decisions
        follow the pool's clock even when the loop's timer is late (a busy loop, an injected
        clock)."""
        wake = self._balancer.wake_at
        if wake is not None and now >= wake and not self._closed:
            self._refresh_picker(now)

    def _refresh_picker(self, now: float) -> None:
        """Tick the balancer (thread-safe)."""
        with self._lock:
            update = self._balancer.tick(now)
            self._schedule_wake(update.wake_at)
        self._apply(update)

    def _request_refresh(self) -> None:
        loop = self._loop
        if loop is None or self._closed:
            return
        # Always deferred to the loop: this runs under the pool's lock, and a source may
        # publish synchronously from refresh_now().
        if threading.get_ident() == self._loop_thread:
            loop.call_soon(self._refresh_source)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._refresh_source)

    def _refresh_source(self) -> None:
        if not self._closed:
            self._source.refresh_now()

    # --- change notification -----------------------------------------------------------------

    def _notify_change(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake_async()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake_async)

    def _wake_async(self) -> None:
        event, self._async_changed = self._async_changed, asyncio.Event()
        if event is not None:
            event.set()

    async def _wait_async(self, delay: float, generation: int, interruptible: bool = True) -> None:
        """Sleep up to ``delay`` seconds, returning early when the pool closes or, if
        ``interruptible``, when it changes (or changed since ``generation`` was read)."""
        limit = None if math.isinf(delay) else max(0.0, delay)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while not self._closed:
                    event = self._async_changed
                    if event is None or (interruptible and self._generation != generation):
                        return
                    await event.wait()

    def _wait_sync(self, delay: float, generation: int, interruptible: bool = True) -> None:
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed or (interruptible and self._generation != generation),
                timeout=None if math.isinf(delay) else max(0.0, delay),
            )

    # --- events ------------------------------------------------------------------------------

    def _emit(self, events: Iterable[PoolEvent]) -> None:
        for event in events:
            level = logging.INFO
            if event.kind in (EventKind.EJECTED, EventKind.ALL_EJECTED, EventKind.SOURCE_ERROR):
                level = logging.WARNING
            _log.log(level, "pool %s: %s", self, event)
            self._hub.emit(event)

    def add_attempt_listener(self, listener: Callable[[AttemptRecord], None]) -> Callable[[], None]:
        """Call ``listener(record)`` after every finished attempt of ``call``/``call_sync`` (in
        the attempt's thread; must not block). Returns a function removing it."""
        self._attempt_listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._attempt_listeners.remove(listener)

        return remove


class PoolReporting(PoolCore):
    """Picking, attempt outcomes fed back to the balancer, attempt listeners, snapshots."""

    # --- picking and reporting ---------------------------------------------------------------

    @property
    def picker(self) -> Picker:
        """The current immutable picker."""
        return self._balancer.picker

    def pick(self, exclude: Collection[Key] = frozenset()) -> Endpoint:
        """An endpoint for one attempt, not in ``exclude`` while another exists (lock-free,
        thread-safe). :class:`NoEndpointAvailable` when the pool is empty."""
        return self._balancer.picker.pick(exclude)

    def attempt(self, endpoint: Endpoint) -> AttemptHandle:
        """Start tracking an attempt the caller runs itself (thread-safe)."""
        return AttemptHandle(self, endpoint)

    def report_success(self, endpoint: Endpoint, latency: float | None = None) -> None:
        """An attempt on ``endpoint`` succeeded (thread-safe; not counted as in flight)."""
        self._outcome(endpoint, None, self._clock(), latency)

    def report_failure(
        self,
        endpoint: Endpoint,
        verdict: VerdictLike | FailureKind,
        latency: float | None = None,
    ) -> None:
        """An attempt on ``endpoint`` failed (thread-safe; not counted as in flight)."""
        self._outcome(endpoint, verdict, self._clock(), latency)

    def _load_of(self, key: Key) -> EndpointLoad:
        return self._balancer.load_of(key)

    def _report(
        self,
        endpoint: Endpoint,
        verdict: VerdictLike | FailureKind | None,
        load: EndpointLoad,
        started: float,
        penalty: float | None,
        counted: bool,
    ) -> None:
        now = self._clock()
        if not counted:
            load.finish(now, None)
            return
        floor = penalty if penalty is not None else self.policy.call.attempt_timeout
        load.finish(now, latency_sample(verdict, now - started, floor))
        self._outcome(endpoint, verdict, now, None)

    def _outcome(
        self,
        endpoint: Endpoint,
        verdict: VerdictLike | FailureKind | None,
        now: float,
        latency: float | None,
    ) -> None:
        """Feed one outcome to the balancer (and ``latency``, if given, to the EWMA)."""
        key = endpoint.key
        if latency is not None:
            load = self._balancer.loads.get(key)
            if load is not None:
                load.start()
                load.finish(now, latency)
        fault = fault_of_outcome(verdict)
        if fault is None or fault is Fault.CLIENT:
            if key in self._balancer.failing:
                self._record_success(key, now)
            return
        with self._lock:
            if isinstance(verdict, FailureKind):
                update = self._balancer.failed(key, verdict, now)
            elif fault is Fault.NODE:
                assert verdict is not None
                kind = verdict.failure_kind or FailureKind.SERVER_ERROR
                update = self._balancer.failed(key, kind, now)
            else:  # CLUSTER: avoid the node that said so, without blame
                assert verdict is not None
                update = self._balancer.answered_for_cluster(
                    key, now, verdict.retry_after, verdict.reason
                )
            if update is not None:
                self._schedule_wake(update.wake_at)
        self._apply(update)

    def _probe_succeeded(self, endpoint: Endpoint) -> None:
        """A probe of an endpoint outside the picker succeeded: it takes traffic again now."""
        now = self._clock()
        with self._lock:
            update = self._balancer.reinstate(endpoint.key, now)
            if update is not None:
                self._schedule_wake(update.wake_at)
        self._apply(update)

    def _record_success(self, key: Key, now: float) -> None:
        """Reset ``key``'s failure counters. Callers look ``key`` up in the balancer's
        ``failing`` set first (lock-free): only those keys can have any, since every NODE
        failure adds its key under the lock before recording; a success that misses a
        concurrent failure's marker happened before that failure."""
        with self._lock:
            self._balancer.succeeded(key, now)

    def _view(self, picker: Picker) -> PoolView:
        return PoolView(picker.keys, self._balancer.usable, picker.reserve_keys)

    def _notify_attempt(self, record: AttemptRecord) -> None:
        for listener in list(self._attempt_listeners):
            try:
                listener(record)
            except Exception:
                _log.exception("attempt listener failed")

    def _classify_safely(
        self, classify: Classifier, exc: BaseException, context: AttemptContext
    ) -> VerdictLike:
        try:
            verdict = classify(exc, context)
            fault_of(verdict)
            return verdict
        except Exception:
            _log.exception("pool %s: classifier failed on %r; raising it as is", self, exc)
            return default_classify(Exception(), context)

    def snapshot(self) -> PoolSnapshot:
        """An immutable view of the pool now (thread-safe)."""
        now = self._clock()
        balancer = self._balancer
        with self._lock:
            picker = balancer.picker
            endpoints = balancer.endpoints
            resolution = balancer.resolution
            lp, locality = balancer.locality_policy, balancer.locality
            loads = dict(balancer.loads)
            usable = balancer.usable
        states = balancer.detector.states()
        in_picker = picker.keys
        statuses = []
        for endpoint in endpoints:
            outlier = states.get(endpoint.key)
            ejected = outlier is not None and outlier.is_ejected(now)
            dc = datacenter_of(endpoint, lp) if lp is not None else endpoint.datacenter
            elsewhere = locality is not None and dc != locality.active
            avoided = outlier is not None and outlier.is_avoided(now)
            if ejected:
                state = "ejected"
            elif elsewhere or (avoided and endpoint.key not in in_picker):
                state = "standby"
            else:
                state = "active"
            load = loads.get(endpoint.key)
            statuses.append(
                EndpointStatus(
                    endpoint=endpoint,
                    datacenter=dc,
                    state=state,
                    in_picker=endpoint.key in in_picker,
                    ejected_reason=outlier.reason if outlier else None,
                    ejected_since=outlier.ejected_at if outlier else None,
                    ejected_until=outlier.ejected_until if outlier else None,
                    ejections=outlier.multiplier_at(now, self.policy.outlier) if outlier else 0,
                    consecutive_failures=(
                        MappingProxyType({k: v for k, v in outlier.consecutive.items() if v})
                        if outlier
                        else _EMPTY_COUNTS
                    ),
                    in_flight=load.inflight if load else 0,
                    latency_ewma=load.ewma.value(now) if load else 0.0,
                )
            )
        return PoolSnapshot(
            name=self.name,
            taken_at=now,
            endpoints=tuple(statuses),
            local_datacenter=lp.local if lp is not None else None,
            active_datacenter=locality.active if locality is not None else None,
            failed_over=lp is not None and locality is not None and locality.active != lp.local,
            panic=picker.panic,
            usable=usable,
            resolution=resolution,
            resolution_age=resolution.age() if resolution is not None else None,
            stale=resolution.stale if resolution is not None else False,
            source_error=str(resolution.error) if resolution and resolution.error else None,
            fallback=resolution.fallback if resolution is not None else False,
            retry_budget=self._budget.balance(now),
        )

    async def wait_ready(self, timeout: float | None = None) -> PoolSnapshot:  # noqa: ASYNC109
        """Wait until the pool has at least one endpoint; :class:`NoEndpointAvailable` (with the
        source's last error) when ``timeout`` seconds pass first (a parameter rather than
        ``asyncio.timeout()`` so the error can say why the pool is empty)."""
        timeout = check_timeout("timeout", timeout)
        self._check_open()
        end = None if timeout is None else self._clock() + timeout
        while not self._balancer.endpoints:
            self._check_open()
            left = math.inf if end is None else end - self._clock()
            if left <= 0:
                resolution = self._balancer.resolution
                error = resolution.error if resolution is not None else None
                why = f": {error}" if error is not None else ""
                raise NoEndpointAvailable(
                    f"pool {self.name}: no endpoint within {timeout:g} s{why}"
                )
            await self._wait_async(left, self._generation)
        return self.snapshot()
