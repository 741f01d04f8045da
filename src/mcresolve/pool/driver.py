"""The call driver: one step machine per call, shared by the asyncio and the thread adapters.

A :class:`CallDriver` holds a call's :class:`~mcresolve.pool.planner.CallState` and answers, from
the planner, every question the adapters (:meth:`EndpointPool.call
<mcresolve.pool.EndpointPool.call>` and :meth:`~mcresolve.pool.EndpointPool.call_sync`) ask:
what next (:meth:`CallDriver.next`: an ``Attempt``, a ``Wait`` or the error to raise), when and
whether to hedge (:meth:`CallDriver.hedge_due`, :meth:`CallDriver.hedge`), and what a finished
attempt means for the call (:meth:`CallDriver.finished`: return its value, raise the callee's
error, or go on). The adapters only run attempts, sleep and wake; they hold no rule.

Two pure judgements of a failed attempt live here too, used for every attempt of every adapter
and for attempts callers run themselves (:class:`~mcresolve.pool.AttemptHandle`):
:func:`counts` (whether the failure is the endpoint's, not the caller's deadline's) and
:func:`latency_sample` (the latency fed to the endpoint's EWMA: at least the attempt's timeout
for a NODE failure, so an endpoint that fails fast does not look fast).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection
from dataclasses import dataclass

from mcresolve.balancer.outlier import FailureKind
from mcresolve.endpoint import Key
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.pool.planner import (
    Attempt,
    AttemptRecord,
    CallState,
    Fault,
    GiveUp,
    PoolView,
    VerdictLike,
    Wait,
    fault_of,
    plan,
    plan_hedge,
)

__all__ = [
    "DEADLINE_SLACK",
    "CallDriver",
    "Settle",
    "counts",
    "fault_of_outcome",
    "latency_sample",
]

DEADLINE_SLACK = 0.005
"""Seconds before the deadline at which an attempt that was given the time left counts as having
run until the deadline (socket timeouts fire at, never before, their time; this absorbs the
clock reads around them)."""


def counts(action: Attempt, ended: float, *, timed_out: bool) -> bool:
    """Whether a failed attempt counts against its endpoint: not when it was given the time left
    (shorter than the attempt timeout) and ran until the deadline: that is the deadline's
    failure, not the endpoint's."""
    ran_out = timed_out or ended >= action.ends - DEADLINE_SLACK
    return not (action.cut_by_deadline and ran_out)


def fault_of_outcome(verdict: VerdictLike | FailureKind | None) -> Fault | None:
    """The fault of an outcome: None for a success, NODE for a bare failure kind."""
    if verdict is None:
        return None
    return Fault.NODE if isinstance(verdict, FailureKind) else fault_of(verdict)


def latency_sample(
    verdict: VerdictLike | FailureKind | None, measured: float, floor: float
) -> float:
    """The latency a finished attempt feeds to its endpoint's EWMA: the measured time, raised to
    ``floor`` (the attempt's timeout, or the caller's penalty) for a NODE failure when finite."""
    if fault_of_outcome(verdict) is Fault.NODE and math.isfinite(floor):
        return max(measured, floor)
    return measured


class Settle(enum.Enum):
    """What a finished attempt means for its call."""

    RETURN = "return"
    """It succeeded: the call returns its value."""
    RAISE = "raise"
    """The callee's own error (a CLIENT verdict, or a failure that must not be repeated)."""
    CONTINUE = "continue"
    """Ask :meth:`CallDriver.next` (or wait for the other running attempts)."""


@dataclass(slots=True)
class CallDriver:
    """One call's step machine (not thread-safe: one adapter drives it)."""

    policy: CallPolicy
    idempotent: bool
    state: CallState
    hedges: int = 0
    """Hedges started so far."""
    hedge_at: float | None = None
    """Clock time of the next hedge while attempts run (None: wait for them)."""

    @classmethod
    def begin(
        cls,
        now: float,
        policy: CallPolicy,
        *,
        idempotent: bool = True,
        exclude: Collection[Key] = (),
    ) -> CallDriver:
        """A new call at ``now``; ``exclude``: keys to avoid in the first round."""
        return cls(policy, idempotent, CallState.begin(now, policy, frozenset(exclude)))

    @property
    def hedging(self) -> bool:
        """The call may hedge (idempotent, and the policy hedges)."""
        return self.idempotent and self.policy.hedging

    def next(self, view: PoolView, now: float, *, budget_ok: bool, random: float) -> Attempt | Wait:
        """The planner's next step; raises the error it gives up with."""
        action = plan(self.state, view, now, self.policy, budget_ok=budget_ok, random=random)
        if isinstance(action, GiveUp):
            raise action.error
        return action

    def waited(self, wait: Wait) -> None:
        """``wait`` is over."""
        self.state = self.state.wait_done(wait)

    def started(self, key: Key, action: Attempt, now: float) -> None:
        """``action`` started on ``key`` at ``now``; schedules the next hedge, if any."""
        self.state = self.state.attempt_started(key)
        delay = self.policy.hedge_delay
        if action.hedge:
            self.hedges += 1
        if self.hedging and delay is not None and self.hedges < self.policy.max_hedges:
            self.hedge_at = now + delay
        else:
            self.hedge_at = None

    def hedge_due(self, now: float) -> float | None:
        """Seconds until the next hedge is due (0: now), or None (no hedge is scheduled)."""
        return None if self.hedge_at is None else max(0.0, self.hedge_at - now)

    def hedge(self, view: PoolView, now: float) -> Attempt | None:
        """The hedge to start now (:func:`~mcresolve.pool.planner.plan_hedge`), or None; either
        way no other hedge is scheduled until the next start."""
        self.hedge_at = None
        if not self.hedging:
            return None
        return plan_hedge(self.state, view, now, self.policy, hedges=self.hedges)

    def finished(self, record: AttemptRecord) -> Settle:
        """An attempt of the call finished (in any order: hedges race)."""
        self.state = self.state.attempt_finished(record)
        if record.error is None:
            return Settle.RETURN
        assert record.verdict is not None
        if fault_of(record.verdict) is Fault.CLIENT or not record.verdict.replay_safe:
            return Settle.RAISE
        return Settle.CONTINUE
