"""Steps shared by the asyncio and the thread call adapters (:class:`CallSteps`)."""

from __future__ import annotations

import logging
from typing import TypeVar

from mcresolve.balancer.ewma import EndpointLoad
from mcresolve.balancer.picker import Picker
from mcresolve.endpoint import Endpoint, Key
from mcresolve.errors import NoEndpointAvailable
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.pool.core import PoolReporting
from mcresolve.pool.driver import CallDriver, Settle, counts
from mcresolve.pool.planner import (
    Attempt,
    AttemptContext,
    AttemptRecord,
    CallState,
    Classifier,
    Wait,
    first_attempt,
)

__all__ = ["CallSteps", "call_policy_of"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

_DERIVED: dict[tuple[object, ...], tuple[CallPolicy, CallPolicy]] = {}
"""Policies derived from a base policy by per-call arguments, keyed by the base's identity and
the arguments with their types (``1`` and ``1.0`` stay apart, and a ``bool`` never matches a
number); each value keeps its base alive, so no other policy can take its identity while the
entry exists."""
_DERIVED_MAX = 64
"""Entries kept (cleared when full): callers pass a few constant values."""


def call_policy_of(
    base: CallPolicy,
    deadline: float | None,
    attempt_timeout: float | None,
    hedge_delay: float | None,
) -> CallPolicy:
    """``base.with_overrides(deadline=, attempt_timeout=, hedge_delay=)``, remembered: a call
    that passes the same values as the previous ones does not build and check a policy again
    (thread-safe: a lost race builds it twice)."""
    if deadline is None and attempt_timeout is None and hedge_delay is None:
        return base
    key = (
        id(base),
        deadline,
        attempt_timeout,
        hedge_delay,
        type(deadline),
        type(attempt_timeout),
        type(hedge_delay),
    )
    try:
        cached = _DERIVED.get(key)
    except TypeError:  # an unhashable argument: with_overrides rejects it, naming it
        cached = None
    if cached is not None:
        return cached[1]
    derived = base.with_overrides(
        deadline=deadline, attempt_timeout=attempt_timeout, hedge_delay=hedge_delay
    )
    if len(_DERIVED) >= _DERIVED_MAX:
        _DERIVED.clear()
    _DERIVED[key] = (base, derived)
    return derived


class CallSteps(PoolReporting):
    """What both call adapters share: the driver's next step on the current picker, starting an
    attempt (endpoint, budget, context), hedges, and recording a finished attempt."""

    # --- calls: shared steps (the rules are the driver's and the planner's) ------------------

    def _next_step(self, driver: CallDriver) -> tuple[Attempt | Wait, Picker, float]:
        """The driver's next step on the current picker, now (raises when the call gives up)."""
        self._check_open()
        now = self._clock()
        self._catch_up(now)
        picker = self._balancer.picker
        budget_ok = driver.state.charged_attempts == 0 or self._budget.can_retry(now)
        action = driver.next(
            self._view(picker), now, budget_ok=budget_ok, random=self._rng.random()
        )
        return action, picker, now

    def _begin_attempt(
        self, driver: CallDriver, action: Attempt, picker: Picker, now: float
    ) -> AttemptContext | None:
        """Choose the endpoint ``action`` runs on, charge the retry budget and tell the driver;
        None when there is no such endpoint (or no budget for a hedge)."""
        endpoint = self._endpoint_for(picker, action)
        if endpoint is None:
            return None
        if action.hedge:
            if not self._budget.try_retry(now):
                return None
        elif action.retry:
            self._budget.record_retry(now)
        context = AttemptContext(
            endpoint=endpoint,
            attempt=driver.state.started_attempts + 1,
            idempotent=driver.idempotent,
            every_endpoint_tried=self._every_endpoint_tried(driver.state, endpoint.key, picker),
        )
        driver.started(endpoint.key, action, now)
        if action.hedge:
            _log.debug("pool %s: hedging on %s", self, endpoint)
        return context

    def _hedge_step(self, driver: CallDriver) -> tuple[Attempt, AttemptContext] | None:
        """The hedge the driver starts now, with its context, or None."""
        now = self._clock()
        picker = self._balancer.picker
        action = driver.hedge(self._view(picker), now)
        if action is None:
            return None
        context = self._begin_attempt(driver, action, picker, now)
        return None if context is None else (action, context)

    def _attempt_failed(
        self,
        action: Attempt,
        context: AttemptContext,
        classifier: Classifier,
        exc: Exception,
        load: EndpointLoad,
        started: float,
        timed_out: bool,
    ) -> AttemptRecord:
        """Classify a failed attempt, feed the balancer what counts, tell the listeners."""
        counted = counts(action, self._clock(), timed_out=timed_out)
        if timed_out:
            context = AttemptContext(
                context.endpoint,
                context.attempt,
                context.idempotent,
                context.every_endpoint_tried,
                timed_out,
            )
        verdict = self._classify_safely(classifier, exc, context)
        self._report(context.endpoint, verdict, load, started, action.timeout, counted)
        record = AttemptRecord(
            context.endpoint,
            started,
            self._clock(),
            exc,
            verdict,
            hedge=action.hedge,
            counted=counted,
            timeout=action.timeout,
            probe=action.probe is not None,
        )
        self._notify_attempt(record)
        return record

    def _attempt_succeeded(
        self, action: Attempt, endpoint: Endpoint, load: EndpointLoad, started: float
    ) -> AttemptRecord:
        self._report(endpoint, None, load, started, None, True)
        if action.probe is not None:
            self._probe_succeeded(endpoint)
        record = AttemptRecord(
            endpoint,
            started,
            self._clock(),
            hedge=action.hedge,
            timeout=action.timeout,
            probe=action.probe is not None,
        )
        self._notify_attempt(record)
        return record

    def _first_pick(self, picker: Picker, excluded: frozenset[Key]) -> Endpoint | None:
        """The endpoint of a fresh call's first attempt (rule 7 when nothing has happened yet),
        or None when the planner must decide (nothing to pick outside ``excluded``)."""
        if not picker.endpoints:
            return None
        if excluded:
            return self._pick_untried(picker, excluded)
        return picker.pick()

    def _pick_untried(self, picker: Picker, exclude: frozenset[Key]) -> Endpoint | None:
        try:
            return picker.pick(exclude, fallback=False)
        except NoEndpointAvailable:
            return None

    def _endpoint_for(self, picker: Picker, action: Attempt) -> Endpoint | None:
        """The endpoint ``action`` runs on: its probe, else a pick outside its exclusions."""
        if action.probe is not None:
            return picker.reserved(action.probe)
        return self._pick_untried(picker, action.exclude)

    def _first_attempt_failed(
        self,
        exc: Exception,
        endpoint: Endpoint,
        picker: Picker,
        load: EndpointLoad,
        *,
        started: float,
        call_policy: CallPolicy,
        idempotent: bool,
        excluded: frozenset[Key],
        classifier: Classifier,
        timed_out: bool,
    ) -> tuple[CallDriver, Settle]:
        """A first attempt that ran on the fast path (no driver) failed: the call's driver from
        here on, with that attempt on record, and whether the call ends by raising it."""
        key = endpoint.key
        driver = CallDriver.begin(started, call_policy, idempotent=idempotent, exclude=excluded)
        first = first_attempt(started, call_policy, excluded)
        context = AttemptContext(
            endpoint, 1, idempotent, self._every_endpoint_tried(driver.state, key, picker)
        )
        driver.started(key, first, started)
        record = self._attempt_failed(first, context, classifier, exc, load, started, timed_out)
        return driver, driver.finished(record)

    @staticmethod
    def _every_endpoint_tried(state: CallState, key: Key, picker: Picker) -> bool:
        """Every endpoint of the pool (candidates and reserve) has been tried in the round once
        the attempt on ``key`` starts (MinIO's ``from_every_endpoint``)."""
        tried = state.tried | {key}
        return tried >= picker.keys and tried.issuperset(picker.reserve_keys)
