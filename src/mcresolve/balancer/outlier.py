"""Passive outlier detection: eject an endpoint after consecutive failures, return it later.

Pure decision logic (no I/O): every transition takes the current time (``now``, float seconds from
a monotonic clock) and, where jitter is drawn, a :class:`random.Random`.

Rules (precedents: Envoy outlier detection, gRPC A50, Finagle failure accrual; the reasoning behind
each default is in :class:`OutlierPolicy` and ``docs/decision-logic.md``):

1. **Counting.** Each endpoint keeps one counter of *consecutive* failures per
   :class:`FailureKind`. A failure increments its kind's counter; any success (including a
   client-error answer such as 404, which proves the node is serving) resets all counters.
2. **Ejection.** When a kind's counter reaches its threshold (a threshold of 0 disables that kind),
   the endpoint is ejected for ``min(base_ejection * m, max_ejection)`` seconds, reduced by a
   random jitter of up to ``jitter`` (a fraction), where ``m`` is the endpoint's ejection
   multiplier after this ejection (previous multiplier, decayed, plus one). Ejection resets the
   counters. Failures reported while the endpoint is already ejected (late answers of requests
   that were in flight) are counted but never extend the ejection.
3. **Max ejected fraction.** An ejection is allowed only when the number of ejected endpoints
   afterwards stays within ``max(1, floor(max_ejected_fraction * n))`` of the ``n`` known
   endpoints (Envoy and grpc-java always allow one ejection). Exception: CONNECT ejections are
   always allowed (``connect_failures_bypass_cap``). Hence the number of endpoints ejected for
   any other reason never exceeds that limit. A refused ejection keeps the counter, so the next
   failure asks again.
4. **Un-ejection** is implied by time: an endpoint is ejected while ``now < ejected_until``.
   :meth:`OutlierDetector.next_unejection` tells the pool when to rebuild its picker and
   :meth:`OutlierDetector.sweep` reports endpoints that came back.
5. **Multiplier decay.** While not ejected, the multiplier drops by one per ``decay_interval``
   seconds (gRPC A50 and Envoy decrement it once per 10 s sweep), so a node that failed once
   long ago starts again from the base duration, while a flapping node's ejections keep growing.
6. **Probes.** A call that has tried every endpoint the picker offers may send one attempt to an
   endpoint outside it (ejected or avoided), least recently failed first
   (:func:`probe_order`; the planner decides, :mod:`mcresolve.pool.planner`). A probe that succeeds
   ends the endpoint's ejection and avoidance at once (:meth:`OutlierDetector.reinstate`):
   Finagle's failure accrual moves an endpoint from ``ProbeClosed`` back to ``Alive`` on the
   first successful probe. Any other success never ends an ejection (rule 4).
7. **Avoidance after a cluster-wide answer.** An endpoint that answered for the whole backend
   (a CLUSTER verdict, e.g. MinIO's ``XMinioReadQuorum`` from a node that has just restarted
   and still sees its peers' disks as offline) is *avoided* for
   ``min(avoid_after_cluster_answer, Retry-After)`` seconds: the picker prefers the other
   endpoints while any is usable, but an avoided endpoint is neither ejected nor counted against
   the max-ejected cap, and takes traffic again when nothing else is left. This is Envoy's
   *degraded* host (an upstream answering ``x-envoy-degraded`` is used only when too few healthy
   hosts remain), applied to an answer the node gives about the cluster: its view may be its
   own, so the next calls ask another node first.
"""

from __future__ import annotations

import enum
import math
import operator
import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from itertools import compress
from types import MappingProxyType

from mcresolve.arguments import check_instance, check_int_range, check_seconds
from mcresolve.endpoint import Key


class FailureKind(enum.Enum):
    """What went wrong on one attempt, as far as the health of the *endpoint* is concerned."""

    CONNECT = "connect"
    """The node cannot be reached at all: connection refused, host or network unreachable, name
    resolution failure, TLS handshake failure. The request was never sent."""
    RESET = "reset"
    """An established connection broke: reset, aborted, closed before or during the response."""
    TIMEOUT = "timeout"
    """Connect or read timeout: the node (or the path to it) does not answer in time."""
    GATEWAY = "gateway"
    """502 / 504, or a 503 that is known to be node-local (MinIO ``XMinioServerNotInitialized``)."""
    SERVER_ERROR = "server_error"
    """Any other 5xx the node itself produced (e.g. 500 ``InternalError``, a 503 without code)."""


@dataclass(frozen=True, slots=True)
class OutlierPolicy:
    """How eagerly endpoints are ejected, and for how long. Durations are seconds.

    The defaults differ from Envoy's (5 consecutive errors, 30 s, 10 %) on purpose: Envoy is a
    proxy in front of large fleets with active health checks beside it, whereas mcresolve is a
    client library in front of a handful of storage nodes that must fail over *fast*. A node that
    refuses connections or times out is unusable *now*, and probing it again is what costs the
    caller time; so those kinds eject at the first occurrence.
    """

    connect_failures: int = 1
    """Consecutive CONNECT failures that eject. 1: a refused or reset connection means the node's
    process is gone (SIGKILL, restart); Envoy counts these as 5xx (default 5), but with a handful
    of endpoints every further attempt on a dead node is a wasted round trip for a caller."""
    resets: int = 1
    """Consecutive RESETs that eject. 1: when a node is killed every request in flight on it is
    reset at once, and the next ones would be refused; urllib3 already discards pooled
    connections the server closed, so a reset on a healthy node is rare."""
    timeouts: int = 1
    """Consecutive TIMEOUTs that eject. 1: a blackholed node costs a whole attempt timeout each
    time it is picked; ejecting on the first makes it cost at most one per failure."""
    gateway_failures: int = 1
    """Consecutive GATEWAY failures (502/504/node-local 503) that eject. 1: these say "this node
    cannot serve" explicitly (Envoy's ``consecutive_gateway_failure`` exists for the same reason;
    its default of 5 suits proxies)."""
    server_errors: int = 3
    """Consecutive other 5xx that eject. 3 (HAProxy ``fall 3``): an ``InternalError`` may be a
    one-off for one object, so require a short streak; Envoy/Finagle use 5, but a client sees far
    fewer requests per endpoint than a proxy, so 5 would react too slowly."""
    base_ejection: float = 10.0
    """First ejection length. 10 s, between Finagle's 5 s and Envoy's 30 s: returning early is
    cheap (one probe that fails fast), and the multiplier grows it for nodes that stay bad."""
    max_ejection: float = 300.0
    """Cap on one ejection (Envoy ``max_ejection_time`` and Finagle's backoff cap: 300 s)."""
    jitter: float = 0.2
    """Each ejection is shortened by a random fraction in ``[0, jitter)``, so the many clients
    that ejected a node at the same moment (it died under all of them) do not all return to it in
    the same instant. Downward only, so ``max_ejection`` stays a hard cap. Envoy's
    ``max_ejection_time_jitter`` (default 0) adds jitter upward instead."""
    decay_interval: float = 10.0
    """While not ejected, the multiplier drops by one per interval (Envoy and gRPC A50 decrement
    it once per 10 s sweep)."""
    max_ejected_fraction: float = 0.5
    """At most this fraction of the known endpoints may be ejected (but always one). 0.5 instead
    of Envoy/A50's 10 %: with 4 MinIO nodes 10 % allows only the one-ejection minimum, yet an
    erasure-coded cluster keeps serving reads with half its nodes gone and the client must route
    around all of them. 50 % equals the picker's default panic threshold, so ejection alone never
    pushes the picker into panic mode unless there is a single endpoint."""
    avoid_after_cluster_answer: float = 10.0
    """Seconds an endpoint that gave a CLUSTER verdict is avoided (rule 7; the server's
    ``Retry-After`` shortens it). 10 s, the base ejection: a MinIO node that has just restarted
    reconnects to its peers' disks within seconds, and until then it answers quorum errors from
    its own view while the other nodes serve; Envoy keeps a *degraded* host out of the preferred
    set until its next health check says otherwise. 0 disables avoidance."""
    connect_failures_bypass_cap: bool = True
    """CONNECT ejections ignore ``max_ejected_fraction``. The cap exists because timeouts and 5xx
    may be symptoms of overload, where ejecting many hosts concentrates the load and cascades
    (Envoy's reason for 10 %); a refused connection is proof, not a symptom. Without the bypass
    a datacenter whose storage is entirely gone would stay half "usable" and the locality logic
    could not fail over until Consul's checks caught up."""

    def __post_init__(self) -> None:
        for name in ("connect_failures", "resets", "timeouts", "gateway_failures", "server_errors"):
            check_int_range(f"OutlierPolicy.{name}", getattr(self, name), 0)
        for name in ("base_ejection", "max_ejection", "decay_interval"):
            check_seconds(f"OutlierPolicy.{name}", getattr(self, name))
        for name in ("jitter", "max_ejected_fraction", "avoid_after_cluster_answer"):
            check_seconds(f"OutlierPolicy.{name}", getattr(self, name), zero=True)
        check_instance(
            "OutlierPolicy.connect_failures_bypass_cap",
            self.connect_failures_bypass_cap,
            (bool,),
            "a bool",
        )
        for name in (
            "connect_failures",
            "resets",
            "timeouts",
            "gateway_failures",
            "server_errors",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"OutlierPolicy.{name} must be >= 0 (0 disables)")
        if self.base_ejection <= 0 or self.max_ejection < self.base_ejection:
            raise ValueError("OutlierPolicy needs 0 < base_ejection <= max_ejection")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("OutlierPolicy.jitter must be in [0, 1)")
        if self.decay_interval <= 0:
            raise ValueError("OutlierPolicy.decay_interval must be > 0")
        if not 0.0 <= self.max_ejected_fraction <= 1.0:
            raise ValueError("OutlierPolicy.max_ejected_fraction must be in [0, 1]")
        if not self.avoid_after_cluster_answer >= 0:
            raise ValueError("OutlierPolicy.avoid_after_cluster_answer must be >= 0 seconds")

    def threshold(self, kind: FailureKind) -> int:
        """Consecutive failures of ``kind`` that eject (0: this kind never ejects)."""
        return {
            FailureKind.CONNECT: self.connect_failures,
            FailureKind.RESET: self.resets,
            FailureKind.TIMEOUT: self.timeouts,
            FailureKind.GATEWAY: self.gateway_failures,
            FailureKind.SERVER_ERROR: self.server_errors,
        }[kind]

    def max_ejected(self, endpoint_count: int) -> int:
        """The most endpoints that may be ejected at once among ``endpoint_count``."""
        return max(1, math.floor(self.max_ejected_fraction * endpoint_count + 1e-9))


_NO_FAILURES: Mapping[FailureKind, int] = MappingProxyType({kind: 0 for kind in FailureKind})


@dataclass(frozen=True, slots=True)
class OutlierState:
    """One endpoint's passive-health state (immutable; transitions return a new value)."""

    consecutive: Mapping[FailureKind, int] = field(default_factory=lambda: _NO_FAILURES, hash=False)
    """Consecutive failures per kind since the last success or ejection."""
    multiplier: int = 0
    """Ejection multiplier as of the last ejection (decays later, see :meth:`multiplier_at`)."""
    ejected_at: float | None = None
    """When the last ejection started (None: never ejected)."""
    ejected_until: float | None = None
    """When the last ejection ends (None: never ejected)."""
    reason: FailureKind | None = None
    """The failure kind that caused the last ejection."""
    last_failure: float | None = None
    """When the endpoint last failed or last answered for the whole cluster (None: never): the
    order in which endpoints outside the picker are probed (:func:`probe_order`)."""
    avoided_until: float | None = None
    """End of the avoidance after a cluster-wide answer (rule 7; None: never avoided)."""

    def is_ejected(self, now: float) -> bool:
        """True while an ejection is running at ``now``."""
        return self.ejected_until is not None and now < self.ejected_until

    def is_avoided(self, now: float) -> bool:
        """True while the endpoint is avoided after a cluster-wide answer (rule 7)."""
        return self.avoided_until is not None and now < self.avoided_until

    def multiplier_at(self, now: float, policy: OutlierPolicy) -> int:
        """The multiplier at ``now``: constant during an ejection, then one less per
        ``policy.decay_interval`` seconds of not being ejected."""
        if self.ejected_until is None or now < self.ejected_until:
            return self.multiplier
        steps = math.floor((now - self.ejected_until) / policy.decay_interval)
        return max(0, self.multiplier - steps)

    def with_success(self) -> OutlierState:
        """State after a successful attempt: every consecutive-failure counter back to 0."""
        if not any(self.consecutive.values()):
            return self
        return replace(self, consecutive=_NO_FAILURES)

    def with_failure(self, kind: FailureKind, now: float | None = None) -> OutlierState:
        """State after one failure of ``kind`` at ``now`` (counted, no ejection decided here)."""
        counts = dict(self.consecutive)
        counts[kind] = counts.get(kind, 0) + 1
        last = self.last_failure if now is None else now
        return replace(self, consecutive=MappingProxyType(counts), last_failure=last)

    def with_cluster_answer(self, now: float, avoid_for: float) -> OutlierState:
        """State after the endpoint answered for the whole cluster at ``now``: avoided for
        ``avoid_for`` seconds (never shortening a running avoidance). Counters are kept: such
        an answer says nothing against the node itself."""
        until = self.avoided_until
        if avoid_for > 0 and (until is None or until < now + avoid_for):
            until = now + avoid_for
        return replace(self, last_failure=now, avoided_until=until)

    def reinstated(self, now: float) -> OutlierState:
        """State after a successful probe at ``now``: a running ejection and avoidance end now
        (the multiplier is kept, so a relapse is ejected for longer, and decays as usual)."""
        ejected_until = self.ejected_until
        if ejected_until is not None and now < ejected_until:
            ejected_until = now
        avoided_until = self.avoided_until
        if avoided_until is not None and now < avoided_until:
            avoided_until = now
        return replace(
            self,
            consecutive=_NO_FAILURES,
            ejected_until=ejected_until,
            avoided_until=avoided_until,
        )

    def wants_ejection(self, kind: FailureKind, now: float, policy: OutlierPolicy) -> bool:
        """Whether ``kind``'s counter has reached its threshold and the endpoint is not ejected."""
        threshold = policy.threshold(kind)
        return (
            threshold > 0
            and self.consecutive.get(kind, 0) >= threshold
            and not self.is_ejected(now)
        )

    def ejected(
        self, kind: FailureKind, now: float, policy: OutlierPolicy, rng: random.Random
    ) -> OutlierState:
        """State after ejecting at ``now`` because of ``kind``: multiplier grows by one (after
        decay), duration ``min(base * multiplier, max)`` shortened by up to ``jitter``."""
        multiplier = self.multiplier_at(now, policy) + 1
        duration = ejection_duration(multiplier, policy, rng)
        return OutlierState(
            consecutive=_NO_FAILURES,
            multiplier=multiplier,
            ejected_at=now,
            ejected_until=now + duration,
            reason=kind,
            last_failure=now,
            avoided_until=self.avoided_until,
        )


#: The state of an endpoint that never failed (shared: states are immutable).
_PRISTINE = OutlierState()


def ejection_duration(multiplier: int, policy: OutlierPolicy, rng: random.Random) -> float:
    """``min(base_ejection * multiplier, max_ejection)``, shortened by a random fraction below
    ``policy.jitter``. Always in ``(0, max_ejection]``."""
    capped = min(policy.base_ejection * max(1, multiplier), policy.max_ejection)
    return capped * (1.0 - policy.jitter * rng.random())


def probe_order(keys: Iterable[Key], states: Mapping[Key, OutlierState]) -> tuple[Key, ...]:
    """``keys`` least recently failed first (never failed first of all; ties keep the given
    order): the order in which a call that has tried every candidate probes the endpoints
    outside the picker (rule 6). The endpoint whose last failure is oldest is the one most
    likely to have recovered, and the one an invariant can name: no call gives up while an
    endpoint that has not failed more recently than the others is left untried.

    ``states`` may hold only the keys that ever failed (:meth:`OutlierDetector.notable`): the
    work beyond one pass over ``keys`` is proportional to them."""
    ordered = tuple(keys)
    failed = {k: s.last_failure for k, s in states.items() if s.last_failure is not None}
    if not failed:
        return ordered
    fresh = compress(ordered, map(operator.not_, map(failed.__contains__, ordered)))
    stale = list(compress(ordered, map(failed.__contains__, ordered)))
    stale.sort(key=failed.__getitem__)  # stable: ties keep the given order
    return (*fresh, *stale)


@dataclass(frozen=True, slots=True)
class Ejection:
    """Report of one ejection decided by :meth:`OutlierDetector.record_failure`."""

    key: Key
    reason: FailureKind
    consecutive_failures: int
    multiplier: int
    duration: float
    until: float


class OutlierDetector:
    """Outlier state of a set of endpoints, with the max-ejected-fraction rule.

    Mutable container around immutable :class:`OutlierState` values; every method takes ``now``
    explicitly and jitter comes from the ``rng`` given at construction, so the behaviour is
    deterministic under test. Methods are serialised by an internal lock (cheap, uncontended in
    asyncio), so threaded callers such as a synchronous MinIO wrapper may share one detector.
    Outcomes reported for keys that are not (or no longer) known are ignored.
    """

    def __init__(
        self, policy: OutlierPolicy | None = None, rng: random.Random | None = None
    ) -> None:
        self.policy = policy if policy is not None else OutlierPolicy()
        self._rng = rng if rng is not None else random.Random()
        self._states: dict[Key, OutlierState] = {}
        #: Keys whose state is not the pristine one (they failed, were avoided or ejected):
        #: every question about ejections and avoidance looks at these only.
        self._notable: set[Key] = set()
        self._reported_ejected: set[Key] = set()
        self._lock = threading.Lock()

    def set_endpoints(self, keys: Iterable[Key]) -> None:
        """Track exactly ``keys``: new ones start healthy, kept ones keep their state (an
        ejection survives a re-resolution), dropped ones are forgotten."""
        wanted = set(keys)
        with self._lock:
            states = dict.fromkeys(wanted, _PRISTINE)
            self._notable &= wanted
            for key in self._notable:
                states[key] = self._states[key]
            self._states = states
            self._reported_ejected &= wanted

    def update_endpoints(self, added: Iterable[Key], removed: Iterable[Key]) -> None:
        """Track ``added`` keys too (healthy) and forget ``removed`` ones: the same as
        :meth:`set_endpoints` with the whole new set, in work proportional to the change."""
        with self._lock:
            for key in removed:
                self._states.pop(key, None)
                self._notable.discard(key)
                self._reported_ejected.discard(key)
            for key in added:
                self._states.setdefault(key, _PRISTINE)

    def _store(self, key: Key, state: OutlierState) -> None:
        self._states[key] = state
        self._notable.add(key)

    def tracked(self) -> frozenset[Key]:
        """The tracked endpoint keys."""
        with self._lock:
            return frozenset(self._states)

    def state(self, key: Key) -> OutlierState:
        """The state of ``key`` (KeyError when unknown)."""
        with self._lock:
            return self._states[key]

    def states(self) -> dict[Key, OutlierState]:
        """A copy of every tracked endpoint's state, for introspection."""
        with self._lock:
            return dict(self._states)

    def notable(self) -> dict[Key, OutlierState]:
        """The states of the tracked keys that ever failed, were avoided or ejected (every
        other key's state is the pristine ``OutlierState()``)."""
        with self._lock:
            return {key: self._states[key] for key in self._notable}

    def record_success(self, key: Key, now: float) -> None:
        """An attempt on ``key`` succeeded (or got a client-error answer): reset its counters.
        A success never ends a running ejection (Envoy does not either)."""
        del now  # part of the uniform signature; success handling does not depend on time
        with self._lock:
            state = self._states.get(key)
            if state is not None and key in self._notable:
                self._states[key] = state.with_success()

    def record_failure(self, key: Key, kind: FailureKind, now: float) -> Ejection | None:
        """An attempt on ``key`` failed with ``kind``; returns the ejection it caused, if any."""
        with self._lock:
            state = self._states.get(key)
            if state is None:
                return None
            state = state.with_failure(kind, now)
            count = state.consecutive[kind]
            if state.wants_ejection(kind, now, self.policy) and self._may_eject(kind, now):
                state = state.ejected(kind, now, self.policy, self._rng)
                self._store(key, state)
                self._reported_ejected.add(key)
                assert state.ejected_at is not None and state.ejected_until is not None
                return Ejection(
                    key=key,
                    reason=kind,
                    consecutive_failures=count,
                    multiplier=state.multiplier,
                    duration=state.ejected_until - state.ejected_at,
                    until=state.ejected_until,
                )
            self._store(key, state)
            return None

    def record_cluster_answer(self, key: Key, now: float, retry_after: float | None = None) -> bool:
        """``key`` answered for the whole cluster (a CLUSTER verdict) at ``now``: avoid it for
        ``min(policy.avoid_after_cluster_answer, retry_after)`` seconds (rule 7). Returns True
        when it was not avoided before (the pool then rebuilds its picker)."""
        avoid_for = self.policy.avoid_after_cluster_answer
        if retry_after is not None and retry_after >= 0:
            avoid_for = min(avoid_for, retry_after)
        with self._lock:
            state = self._states.get(key)
            if state is None:
                return False
            was = state.is_avoided(now)
            state = state.with_cluster_answer(now, avoid_for)
            self._store(key, state)
            return state.is_avoided(now) and not was

    def reinstate(self, key: Key, now: float) -> bool:
        """A probe of ``key`` succeeded at ``now``: end its ejection and avoidance (rule 6).
        Returns True when it was ejected or avoided (the pool then rebuilds its picker; the
        return of an ejected endpoint is reported by :meth:`sweep` as usual)."""
        with self._lock:
            state = self._states.get(key)
            if state is None or not (state.is_ejected(now) or state.is_avoided(now)):
                return False
            self._store(key, state.reinstated(now))
            return True

    def _may_eject(self, kind: FailureKind, now: float) -> bool:
        if kind is FailureKind.CONNECT and self.policy.connect_failures_bypass_cap:
            return True
        ejected = sum(1 for k in self._notable if self._states[k].is_ejected(now))
        return ejected + 1 <= self.policy.max_ejected(len(self._states))

    def is_ejected(self, key: Key, now: float) -> bool:
        """True while ``key`` is ejected at ``now`` (unknown keys are not ejected)."""
        with self._lock:
            state = self._states.get(key)
            return state is not None and state.is_ejected(now)

    def ejected(self, now: float) -> frozenset[Key]:
        """Keys ejected at ``now``."""
        with self._lock:
            return frozenset(k for k in self._notable if self._states[k].is_ejected(now))

    def avoided(self, now: float) -> frozenset[Key]:
        """Keys avoided at ``now`` after a cluster-wide answer (rule 7)."""
        with self._lock:
            return frozenset(k for k in self._notable if self._states[k].is_avoided(now))

    def next_unejection(self, now: float) -> float | None:
        """The earliest time after ``now`` at which an ejected or avoided endpoint returns (None
        if none is): the moment the pool must rebuild its picker."""
        with self._lock:
            ends = [
                end
                for s in map(self._states.__getitem__, self._notable)
                for end in (s.ejected_until, s.avoided_until)
                if end is not None and end > now
            ]
            return min(ends) if ends else None

    def sweep(self, now: float) -> frozenset[Key]:
        """Keys whose ejection has ended by ``now`` and that were not reported as returned yet
        (each return is reported once: use it to emit "restored" events)."""
        with self._lock:
            back = frozenset(
                k for k in self._reported_ejected if not self._states[k].is_ejected(now)
            )
            self._reported_ejected -= back
            return back
