"""The sans-I/O balancer: the pool's knowledge of its endpoints, and the picker it implies.

A :class:`Balancer` takes three inputs, each with the time on the pool's clock:

* :meth:`Balancer.resolve` — a source's :class:`~mcresolve.sources.Resolution`;
* an attempt's outcome on an endpoint, as the call driver judged it:
  :meth:`Balancer.succeeded`, :meth:`Balancer.failed` (the endpoint's own failure, of a
  :class:`~mcresolve.balancer.outlier.FailureKind`), :meth:`Balancer.answered_for_cluster`,
  and :meth:`Balancer.reinstate` for a successful probe of an endpoint left out;
* :meth:`Balancer.tick` — time passed (an ejection or avoidance may have ended, a fail-back may
  be due).

Each returns a :class:`BalancerUpdate`: the new immutable picker, the events to publish, the
next time :meth:`~Balancer.tick` must be called (``wake_at``) and whether the source should
re-resolve (every endpoint ejected). No I/O, no asyncio, no threads: the
:class:`~mcresolve.pool.EndpointPool` serialises calls with its lock, arms the timer, publishes
the events and asks the source (grpc-go's balancer receives resolver states and sub-connection
updates the same way and answers with a picker).
"""

from __future__ import annotations

import logging
import operator
import random
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from itertools import compress

from mcresolve.balancer.events import EventKind, PoolEvent
from mcresolve.balancer.ewma import EndpointLoad
from mcresolve.balancer.locality import (
    LocalityPolicy,
    LocalityState,
    datacenter_counts,
    failback_due,
    in_datacenter,
    initial_state,
    step,
    usable_in,
)
from mcresolve.balancer.outlier import (
    Ejection,
    FailureKind,
    OutlierDetector,
    OutlierPolicy,
    probe_order,
)
from mcresolve.balancer.picker import Picker, PickStrategy, build_picker, first_by_key
from mcresolve.endpoint import Endpoint, Key
from mcresolve.sources.base import Resolution

__all__ = ["Balancer", "BalancerUpdate"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BalancerUpdate:
    """What changed after one input."""

    picker: Picker
    """The picker to use from now on (the same object when it was not rebuilt)."""
    events: tuple[PoolEvent, ...] = ()
    wake_at: float | None = None
    """When :meth:`Balancer.tick` is next due (pool clock), None: no timed change pending."""
    refresh: bool = False
    """Every endpoint has just been ejected: ask the source to re-resolve."""
    changed: bool = True
    """The picker or the endpoint set changed (waiting calls should look again)."""


class Balancer:
    """Per-endpoint state of one pool (not thread-safe: the pool holds its lock around every
    input; :attr:`picker`, :attr:`loads` and :attr:`failing` are safe to read without it)."""

    def __init__(
        self,
        *,
        name: str,
        outlier: OutlierPolicy,
        strategy: PickStrategy,
        panic_threshold: float,
        failback_hold_down: float,
        datacenter_preference: tuple[str, ...],
        rng: random.Random,
        clock: Callable[[], float],
    ) -> None:
        self.name = name
        self._strategy = strategy
        self._panic_threshold = panic_threshold
        self._failback_hold_down = failback_hold_down
        self._preference = datacenter_preference
        self._rng = rng
        self._clock = clock
        self.detector = OutlierDetector(outlier, rng)
        self.failing: set[Key] = set()
        """Keys whose outlier counters may be non-zero: a success on any other key needs no
        update (a set lookup on the hot path)."""
        self.resolution: Resolution | None = None
        self.endpoints: tuple[Endpoint, ...] = ()
        self._given: tuple[Endpoint, ...] = ()
        self._by_key: dict[Key, Endpoint] = {}
        self._datacenters: Counter[str] | None = None
        self.loads: dict[Key, EndpointLoad] = {}
        self.locality_policy: LocalityPolicy | None = None
        self.locality: LocalityState | None = None
        self.usable = 0
        self.wake_at: float | None = None
        self._all_ejected = False
        self.picker: Picker = self._build([], frozenset())

    # --- inputs ------------------------------------------------------------------------------

    def set_local(self, datacenter: str) -> None:
        """``datacenter`` is local (given, the agent's, or the first resolution's)."""
        self.locality_policy = LocalityPolicy(
            local=datacenter,
            preference=self._preference,
            failback_hold_down=self._failback_hold_down,
        )
        self.locality = initial_state(self.locality_policy)
        _log.info("pool %s: local datacenter %r", self.name, datacenter)

    def resolve(self, resolution: Resolution, now: float) -> BalancerUpdate:
        """A resolution from the source: the endpoint set (duplicates dropped, first wins).

        The work is one pass in C over the set (a source that reuses the endpoint objects of
        unchanged instances makes the comparison one of identities) plus work proportional to
        the endpoints added and removed: kept endpoints keep their load and outlier state."""
        events: list[PoolEvent] = []
        previous = self.resolution
        self.resolution = resolution
        self._resolution_events(previous, resolution, now, events)
        self._follow_preference(resolution)
        given = tuple(resolution.endpoints)  # the very tuple when it is one
        if given is self._given or given == self._given:
            return BalancerUpdate(self.picker, tuple(events), self.wake_at, changed=False)
        new = first_by_key(given)
        endpoints = given if len(new) == len(given) else tuple(new.values())
        self._given = given
        if endpoints == self.endpoints:
            return BalancerUpdate(self.picker, tuple(events), self.wake_at, changed=False)
        if self.locality_policy is None and endpoints:
            self.set_local(resolution.datacenter or endpoints[0].datacenter)
        old = self._by_key
        added = list(compress(new, map(operator.not_, map(old.__contains__, new))))
        removed = list(compress(old, map(operator.not_, map(new.__contains__, old))))
        for key in added:
            events.append(self._event(EventKind.ADDED, now, endpoint=new[key]))
        for key in removed:
            events.append(self._event(EventKind.REMOVED, now, endpoint=old[key]))
        self.endpoints = endpoints
        self._by_key = new
        self._datacenters = None
        self.detector.update_endpoints(added, removed)
        loads = self.loads
        for key in removed:
            del loads[key]
        for key in added:
            loads[key] = EndpointLoad(now)
        return self._rebuild(now, events)

    def _follow_preference(self, resolution: Resolution) -> None:
        """Take the source's failover order (a prepared query's, learnt by a standby source)
        when the pool's policy names none of its own."""
        lp = self.locality_policy
        if lp is None or self._preference or not resolution.preference:
            return
        if lp.preference != resolution.preference:
            self.locality_policy = replace(lp, preference=resolution.preference)

    def succeeded(self, key: Key, now: float) -> None:
        """An attempt on ``key`` was served (a success, or an answer that proves the endpoint
        serves): its failure counters reset. Never changes the picker."""
        if key in self.failing:
            self.failing.discard(key)
            self.detector.record_success(key, now)

    def failed(self, key: Key, kind: FailureKind, now: float) -> BalancerUpdate | None:
        """A failure of ``key`` itself (a NODE verdict): None unless it is ejected now."""
        self.failing.add(key)
        ejection = self.detector.record_failure(key, kind, now)
        return None if ejection is None else self._ejected(ejection, now)

    def answered_for_cluster(
        self, key: Key, now: float, retry_after: float | None, reason: str | None
    ) -> BalancerUpdate | None:
        """``key`` answered that the whole cluster cannot serve (a CLUSTER verdict): it is
        avoided for a while, without blame; None when it already was."""
        if not self.detector.record_cluster_answer(key, now, retry_after):
            return None
        _log.info(
            "pool %s: avoiding %s:%s for a while: it answered for the whole cluster (%s)",
            self.name,
            *key,
            reason,
        )
        return self.tick(now)

    def reinstate(self, key: Key, now: float) -> BalancerUpdate | None:
        """A probe of ``key`` (outside the picker) succeeded: it takes traffic again now."""
        if not self.detector.reinstate(key, now):
            return None
        _log.info("pool %s: probe of %s succeeded: it takes traffic again", self.name, key)
        return self.tick(now)

    def tick(self, now: float) -> BalancerUpdate:
        """Time passed: report endpoints whose ejection ended, rebuild the picker."""
        events: list[PoolEvent] = []
        by_key = self._by_key
        for key in self.detector.sweep(now):
            if key in by_key:
                events.append(self._event(EventKind.RESTORED, now, endpoint=by_key[key]))
        return self._rebuild(now, events)

    def load_of(self, key: Key) -> EndpointLoad:
        """``key``'s load (a detached one when the key left the set meanwhile)."""
        load = self.loads.get(key)
        return load if load is not None else EndpointLoad(self._clock())

    # --- derived state -----------------------------------------------------------------------

    def _ejected(self, ejection: Ejection, now: float) -> BalancerUpdate:
        events: list[PoolEvent] = []
        endpoint = self._by_key.get(ejection.key)
        if endpoint is not None:
            events.append(
                self._event(
                    EventKind.EJECTED,
                    now,
                    endpoint=endpoint,
                    reason=ejection.reason,
                    until=ejection.until,
                    detail=(
                        f"{ejection.consecutive_failures} consecutive "
                        f"{ejection.reason.value} failure(s), {ejection.duration:.1f} s"
                    ),
                )
            )
        return self._rebuild(now, events)

    def _rebuild(self, now: float, events: list[PoolEvent]) -> BalancerUpdate:
        """Recompute usability, locality, the picker and the next wake-up: passes in C over
        the endpoints, Python work only for the endpoints that failed (ejected, avoided)."""
        endpoints = self.endpoints
        by_key = self._by_key
        ejected = self.detector.ejected(now)
        usable = frozenset(by_key.keys() - ejected) if ejected else frozenset(by_key)
        chosen: Sequence[Endpoint] = endpoints
        lp, state = self.locality_policy, self.locality
        if lp is not None and state is not None:
            new_state = step(state, self._usable_datacenters(ejected, lp), now, lp)
            if new_state.active != state.active:
                kind = EventKind.FAILBACK if new_state.active == lp.local else EventKind.FAILOVER
                events.append(self._event(kind, now, datacenter=new_state.active))
            self.locality = new_state
            in_active = in_datacenter(
                self.endpoints, new_state.active, lp, self._datacenter_counts()
            )
            if in_active:
                chosen = in_active
        notable = self.detector.notable()
        avoided = frozenset(k for k, st in notable.items() if st.is_avoided(now)) & usable
        order: Sequence[Endpoint] = endpoints  # nothing ever failed: the given order
        if any(st.last_failure is not None for st in notable.values()):
            order = tuple(map(by_key.__getitem__, probe_order(by_key, notable)))
        self.picker = self._build(chosen, usable, avoided, order)
        self.usable = len(usable)
        all_ejected = bool(endpoints) and not usable
        refresh = all_ejected and not self._all_ejected
        if refresh:
            detail = f"{len(endpoints)} endpoint(s)"
            events.append(self._event(EventKind.ALL_EJECTED, now, detail=detail))
        self._all_ejected = all_ejected
        wake = [t for t in (self.detector.next_unejection(now),) if t is not None]
        if lp is not None and self.locality is not None:
            due = failback_due(self.locality, lp)
            if due is not None:
                wake.append(max(due, now))
        self.wake_at = min(wake) if wake else None
        return BalancerUpdate(self.picker, tuple(events), self.wake_at, refresh)

    def _datacenter_counts(self) -> Counter[str]:
        """Endpoints per datacenter (``""``: none given), counted once per endpoint set."""
        if self._datacenters is None:
            self._datacenters = datacenter_counts(self.endpoints)
        return self._datacenters

    def _usable_datacenters(self, ejected: frozenset[Key], lp: LocalityPolicy) -> frozenset[str]:
        """:func:`~mcresolve.balancer.locality.usable_in` of the endpoints, counted from the
        datacenters' sizes less their ejected endpoints."""
        counts = self._datacenter_counts()
        if ejected:
            counts = counts.copy()
            for key in ejected:
                endpoint = self._by_key.get(key)
                if endpoint is not None:
                    counts[endpoint.datacenter] -= 1
        return usable_in(counts, lp)

    def _build(
        self,
        endpoints: Sequence[Endpoint],
        usable: Collection[Key],
        avoid: Collection[Key] = (),
        order: Sequence[Endpoint] = (),
    ) -> Picker:
        return build_picker(
            endpoints,
            usable,
            strategy=self._strategy,
            loads=self.loads,
            panic_threshold=self._panic_threshold,
            rng=self._rng,
            clock=self._clock,
            avoid=avoid,
            probe_order=order,
        )

    def _resolution_events(
        self, previous: Resolution | None, current: Resolution, now: float, out: list[PoolEvent]
    ) -> None:
        if current.error is not None:
            out.append(self._event(EventKind.SOURCE_ERROR, now, detail=str(current.error)))
        elif previous is not None and previous.error is not None:
            out.append(self._event(EventKind.SOURCE_RECOVERED, now, detail=str(current)))
        was_fallback = previous is not None and previous.fallback
        if current.fallback and not was_fallback:
            out.append(self._event(EventKind.FALLBACK_ENGAGED, now, detail=current.source))
        elif was_fallback and not current.fallback:
            out.append(self._event(EventKind.FALLBACK_RELEASED, now, detail=current.source))

    def _event(
        self,
        kind: EventKind,
        at: float,
        *,
        endpoint: Endpoint | None = None,
        datacenter: str | None = None,
        reason: FailureKind | None = None,
        until: float | None = None,
        detail: str = "",
    ) -> PoolEvent:
        if datacenter is None and endpoint is not None:
            datacenter = endpoint.datacenter or None
        return PoolEvent(kind, at, self.name, endpoint, datacenter, reason, until, detail)
