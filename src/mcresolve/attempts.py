"""The attempt planner: what a call does next (pure; no I/O, no clock, no sleeping).

A call through the pool is a sequence of attempts, each on one endpoint. After every event the
pool asks :func:`plan` what to do, given the call's :class:`CallState` (attempts so far, which
endpoints were tried, waits done), a :class:`PoolView` of the current picker, ``now``, the
:class:`~mcresolve.call_policy.CallPolicy` and whether the retry budget has room. The answer is
one of:

* :class:`Attempt` — pick an endpoint outside ``exclude`` and run the function on it now, with
  ``timeout``;
* :class:`Wait` — sleep ``delay`` seconds (waking early when the pool's endpoint set or
  usability changes), optionally asking the source to re-resolve first; then start a new round;
* :class:`GiveUp` — raise ``error``.

Rules, in order (``last`` = the latest finished attempt):

1. ``last`` failed with a CLIENT verdict, or a verdict that is not ``replay_safe``: give up with
   the callee's own error (an answer, or a request that may have executed and cannot be
   repeated).
2. The deadline has passed: :class:`~mcresolve.errors.DeadlineExceeded`.
3. ``max_attempts`` *charged* attempts were started:
   :class:`~mcresolve.errors.AttemptsExhausted`. An attempt refused before anything was sent
   (a NODE verdict of kind ``CONNECT``: connection refused, host unreachable, TLS handshake) is
   not charged: the endpoint is gone, nothing reached a server, so it must not use up the
   attempts a call needs while the pool re-resolves (a whole datacenter's storage dies before
   Consul's checks notice). Such calls are bounded by the deadline and the backoff instead.
4. An attempt after a charged one is a retry: without budget,
   :class:`~mcresolve.errors.RetryBudgetExhausted` (checked before waiting, so a doomed call
   does not sleep first). Attempts after refused ones only are not retries: the refused
   attempts put no load on any server, which is what the budget limits.
5. ``last`` failed with a CLUSTER verdict that is not ``confirmed`` (an attribute a verdict may
   have; MinIO's quorum answers from one node's own view) and an endpoint not tried in this
   round exists: attempt it at once, to confirm or refute the condition.
6. ``last`` failed with a CLUSTER verdict and no wait happened since: wait ``Retry-After`` (the
   server's hint) or the cluster backoff; if that wait would not end before the deadline,
   :class:`~mcresolve.errors.ClusterUnavailable` now (waiting only to fail is worse).
7. No endpoint to pick from: wait for one (until the deadline), asking the source to
   re-resolve.
8. An endpoint not tried in this round exists: attempt it at once (retries go to a *different*
   endpoint without delay).
9. Every endpoint has been tried: back off (jittered, ``policy.backoff``) and start a new round;
   re-resolve first when no endpoint is usable (all ejected). If the backoff would not end
   before the deadline: with nothing usable, wait for a new set until the deadline (then
   :class:`~mcresolve.errors.DeadlineExceeded`); else
   :class:`~mcresolve.errors.AttemptsExhausted`.

Classification (what an exception means) is pluggable: a :data:`Classifier` maps the exception
and an :class:`AttemptContext` to any object shaped like :class:`VerdictLike` —
:class:`AttemptVerdict`, or :class:`mcresolve.minio_errors.Verdict` directly.
"""

from __future__ import annotations

import enum
import errno
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from mcresolve.call_policy import CallPolicy
from mcresolve.endpoint import Endpoint
from mcresolve.errors import (
    AttemptsExhausted,
    ClusterUnavailable,
    DeadlineExceeded,
    RetryBudgetExhausted,
)
from mcresolve.outlier import FailureKind

__all__ = [
    "REFUSED_ERRNOS",
    "Attempt",
    "AttemptContext",
    "AttemptRecord",
    "AttemptVerdict",
    "CallState",
    "Classifier",
    "Fault",
    "GiveUp",
    "PoolView",
    "VerdictLike",
    "Wait",
    "default_classify",
    "fault_of",
    "plan",
]

Key = tuple[str, int]


class Fault(enum.Enum):
    """Who is at fault for a failed attempt (values match
    :class:`mcresolve.minio_errors.ErrorClass`)."""

    NODE = "node"
    """This endpoint: count it against the endpoint, retry elsewhere at once."""
    CLUSTER = "cluster"
    """The whole backend: report nothing against the endpoint, wait, retry or give up."""
    CLIENT = "client"
    """An answer, or not a backend failure: raise at once; the endpoint served (a success)."""


@runtime_checkable
class VerdictLike(Protocol):
    """What a classifier returns. ``error_class`` is any enum whose value is ``"node"``,
    ``"cluster"`` or ``"client"`` (:class:`Fault`, or MinIO's ``ErrorClass``)."""

    @property
    def error_class(self) -> enum.Enum: ...

    @property
    def failure_kind(self) -> FailureKind | None: ...

    @property
    def replay_safe(self) -> bool: ...

    @property
    def retry_after(self) -> float | None: ...

    @property
    def reason(self) -> str: ...


def fault_of(verdict: VerdictLike) -> Fault:
    """The :class:`Fault` of any verdict (by the value of its ``error_class``)."""
    value = verdict.error_class.value
    try:
        return Fault(value)
    except ValueError:
        raise ValueError(
            f"verdict error_class must have value node/cluster/client, got {value!r}"
        ) from None


@dataclass(frozen=True, slots=True)
class AttemptVerdict:
    """A classifier's verdict on one failed attempt (the generic :class:`VerdictLike`)."""

    error_class: Fault
    failure_kind: FailureKind | None = None
    """For NODE: the kind reported to the outlier detector (None: ``SERVER_ERROR``)."""
    replay_safe: bool = True
    """Whether the request may be sent again (elsewhere or later)."""
    retry_after: float | None = None
    """For CLUSTER: the server's hint, seconds."""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AttemptContext:
    """What a classifier knows about the attempt besides the exception."""

    endpoint: Endpoint
    attempt: int
    """1-based number of this attempt in its call."""
    idempotent: bool
    """The caller declared the operation idempotent."""
    every_endpoint_tried: bool
    """Every endpoint the pool could pick had been tried in this round when this attempt
    started (MinIO's ``from_every_endpoint``)."""
    timed_out: bool = False
    """The pool's own per-attempt timeout cancelled the attempt."""


Classifier = Callable[[BaseException, AttemptContext], VerdictLike]
"""Maps an attempt's exception to a verdict."""

REFUSED_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
        errno.EADDRNOTAVAIL,
    }
)
"""Network ``OSError`` errnos that mean the peer was never reached (nothing was sent): refused
like ``ConnectionRefusedError``, always safe to replay elsewhere."""


def default_classify(exc: BaseException, context: AttemptContext) -> AttemptVerdict:
    """Classifier for generic network callables.

    * refused / unreachable (``ConnectionRefusedError``, network ``OSError`` errnos): NODE
      ``CONNECT`` — nothing was sent, always safe to replay;
    * reset / aborted / broken pipe (other ``ConnectionError``): NODE ``RESET``;
    * ``TimeoutError`` (the pool's attempt timeout included): NODE ``TIMEOUT``;
    * anything else: CLIENT (raised at once: an unknown exception is more likely a bug or an
      answer than a node failure; write a classifier to retry it).

    RESET and TIMEOUT may have executed the request: replay-safe only for idempotent calls.
    """
    if isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError)
        and not isinstance(exc, ConnectionError | TimeoutError)
        and exc.errno in REFUSED_ERRNOS
    ):
        return AttemptVerdict(Fault.NODE, FailureKind.CONNECT, True, reason=f"refused: {exc!r}")
    if isinstance(exc, ConnectionError):
        return AttemptVerdict(
            Fault.NODE, FailureKind.RESET, context.idempotent, reason=f"reset: {exc!r}"
        )
    if isinstance(exc, TimeoutError):
        what = "attempt timeout" if context.timed_out else repr(exc)
        return AttemptVerdict(
            Fault.NODE, FailureKind.TIMEOUT, context.idempotent, reason=f"timeout: {what}"
        )
    return AttemptVerdict(Fault.CLIENT, None, False, reason=f"not a node failure: {exc!r}")


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One finished attempt."""

    endpoint: Endpoint
    started: float
    ended: float
    error: BaseException | None = None
    """None: the attempt succeeded."""
    verdict: VerdictLike | None = None
    """The classifier's verdict for a failed attempt."""
    hedge: bool = False
    """Started by hedging while another attempt was running."""
    counted: bool = True
    """False when the outcome was not reported against the endpoint (cancelled, or cut short
    by the caller's deadline rather than by the attempt timeout)."""

    @property
    def fault(self) -> Fault | None:
        """The verdict's fault (None for a success)."""
        return None if self.verdict is None else fault_of(self.verdict)

    @property
    def refused(self) -> bool:
        """Failed before anything was sent (a NODE verdict of kind ``CONNECT``: refused,
        unreachable, TLS handshake). Not charged against ``max_attempts``."""
        verdict = self.verdict
        return (
            self.error is not None
            and verdict is not None
            and verdict.failure_kind is FailureKind.CONNECT
            and fault_of(verdict) is Fault.NODE
        )

    @property
    def duration(self) -> float:
        """Seconds the attempt took."""
        return max(0.0, self.ended - self.started)


@dataclass(frozen=True, slots=True)
class CallState:
    """Everything the planner knows about one call (immutable; transitions return a new one)."""

    started: float
    deadline: float
    """Absolute time (same clock as ``now``) the call must end by; ``math.inf``: none."""
    attempts: tuple[AttemptRecord, ...] = ()
    in_flight: int = 0
    """Attempts started and not finished (hedging runs more than one)."""
    tried: frozenset[Key] = frozenset()
    """Endpoints tried in this round (cleared after each backoff)."""
    backoffs: int = 0
    """Backoffs after every endpoint was tried."""
    cluster_waits: int = 0
    """Waits after CLUSTER verdicts."""
    waited: bool = False
    """A wait happened since the last attempt finished."""
    refused_attempts: int = 0
    """Finished attempts that were refused (:attr:`AttemptRecord.refused`): not charged."""

    @staticmethod
    def begin(now: float, policy: CallPolicy, exclude: frozenset[Key] = frozenset()) -> CallState:
        """The state of a call starting at ``now``. ``exclude``: endpoints to avoid in the
        first round (e.g. the node a stream just failed on); eligible again after a backoff."""
        return CallState(started=now, deadline=now + policy.deadline, tried=exclude)

    @property
    def started_attempts(self) -> int:
        """Attempts finished plus in flight."""
        return len(self.attempts) + self.in_flight

    @property
    def charged_attempts(self) -> int:
        """Attempts that count against ``max_attempts``: started, minus the refused ones."""
        return len(self.attempts) + self.in_flight - self.refused_attempts

    def remaining(self, now: float) -> float:
        """Seconds left until the deadline (may be negative; ``inf`` without deadline)."""
        return self.deadline - now

    def attempt_started(self, key: Key) -> CallState:
        """An attempt on ``key`` started."""
        return replace(self, tried=self.tried | {key}, in_flight=self.in_flight + 1)

    def attempt_finished(self, record: AttemptRecord) -> CallState:
        """An attempt finished (success or failure)."""
        return replace(
            self,
            attempts=(*self.attempts, record),
            in_flight=max(0, self.in_flight - 1),
            waited=False,
            refused_attempts=self.refused_attempts + record.refused,
        )

    def wait_done(self, wait: Wait) -> CallState:
        """``wait`` is over: count it; a new round forgets which endpoints were tried."""
        return replace(
            self,
            tried=frozenset() if wait.new_round else self.tried,
            backoffs=self.backoffs + (wait.cause == "backoff"),
            cluster_waits=self.cluster_waits + (wait.cause == "cluster"),
            waited=True,
        )


@dataclass(frozen=True, slots=True)
class PoolView:
    """What the planner needs to know about the pool right now."""

    candidates: frozenset[Key]
    """Keys the current picker can return (``picker.keys``)."""
    usable: int
    """Endpoints usable (Consul-healthy and not ejected) across the whole pool."""

    @staticmethod
    def of(candidates: frozenset[Key], usable: int) -> PoolView:
        """Shorthand constructor."""
        return PoolView(candidates, usable)


@dataclass(frozen=True, slots=True)
class Attempt:
    """Run one attempt now on an endpoint outside ``exclude``."""

    exclude: frozenset[Key]
    timeout: float
    """Per-attempt timeout: ``min(policy.attempt_timeout, time left)``."""
    cut_by_deadline: bool
    """``timeout`` is the time left, shorter than the policy's attempt timeout: a timeout is then
    the caller's deadline, not the endpoint's fault."""
    retry: bool
    """An attempt after a charged one (withdraw from the retry budget)."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait ``delay`` seconds (waking early on a pool change), then start over."""

    delay: float
    cause: str
    """``"backoff"`` (every endpoint tried), ``"cluster"`` (CLUSTER verdict) or
    ``"no_endpoint"`` (nothing to pick)."""
    refresh: bool = False
    """Ask the source to re-resolve first (no usable endpoint)."""
    new_round: bool = True
    """Forget which endpoints were tried."""

    @property
    def interruptible(self) -> bool:
        """Whether a pool change (new endpoint, restored endpoint) ends the wait early. False
        for CLUSTER waits: the server's ``Retry-After`` is honoured in full."""
        return self.cause != "cluster"


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop and raise ``error``."""

    error: BaseException


Action = Attempt | Wait | GiveUp

_EPSILON = 1e-9


def plan(
    state: CallState,
    view: PoolView,
    now: float,
    policy: CallPolicy,
    *,
    budget_ok: bool = True,
    random: float = 0.5,
) -> Action:
    """The next action of a call (see the module docstring for the rules).

    ``budget_ok``: the retry budget allows one more retry now (ignored for the first attempt).
    ``random``: a uniform draw in ``[0, 1)`` for backoff jitter.
    """
    last = state.attempts[-1] if state.attempts else None
    verdict = last.verdict if last is not None else None
    attempts = state.attempts
    if last is not None and last.error is not None and verdict is not None:
        fault = fault_of(verdict)
        if fault is Fault.CLIENT or not verdict.replay_safe:
            return GiveUp(last.error)
    remaining = state.remaining(now)
    if remaining <= _EPSILON:
        return GiveUp(DeadlineExceeded(_deadline_message(state, view), attempts))
    charged = state.charged_attempts
    if charged >= policy.max_attempts:
        return GiveUp(
            AttemptsExhausted(f"gave up after {policy.max_attempts} attempt(s)", attempts)
        )
    is_retry = charged > 0
    if is_retry and not budget_ok:
        return GiveUp(
            RetryBudgetExhausted(
                "retry budget exhausted: too many retries across calls right now", attempts
            )
        )
    if (
        last is not None
        and verdict is not None
        and last.error is not None
        and fault_of(verdict) is Fault.CLUSTER
        and not getattr(verdict, "confirmed", True)
        and view.candidates
        and not view.candidates <= state.tried
    ):
        return Attempt(
            exclude=state.tried,
            timeout=min(policy.attempt_timeout, remaining),
            cut_by_deadline=remaining < policy.attempt_timeout,
            retry=is_retry,
        )
    if (
        last is not None
        and verdict is not None
        and last.error is not None
        and fault_of(verdict) is Fault.CLUSTER
        and not state.waited
    ):
        hint = verdict.retry_after
        if hint is not None:
            delay = max(0.0, hint)
        else:
            delay = policy.cluster_backoff.delay(state.cluster_waits + 1, 0.0, lambda: random)
        if delay >= remaining:
            why = verdict.reason or "cluster-wide failure"
            wait = f"retry after {delay:g} s" if hint is not None else f"backoff {delay:.3g} s"
            return GiveUp(
                ClusterUnavailable(
                    f"backend cluster unavailable ({why}); {wait} would pass the deadline "
                    f"({max(0.0, remaining):.3g} s left)",
                    attempts,
                    verdict,
                )
            )
        return Wait(delay, "cluster")
    if not view.candidates:
        return Wait(remaining, "no_endpoint", refresh=True)
    if not view.candidates <= state.tried:
        timeout = min(policy.attempt_timeout, remaining)
        return Attempt(
            exclude=state.tried,
            timeout=timeout,
            cut_by_deadline=remaining < policy.attempt_timeout,
            retry=is_retry,
        )
    delay = policy.backoff.delay(state.backoffs + 1, 0.0, lambda: random)
    if delay >= remaining:
        if view.usable == 0:  # every endpoint ejected: a new set may still come in time
            return Wait(remaining, "no_endpoint", refresh=True)
        return GiveUp(
            AttemptsExhausted(
                f"every endpoint failed ({len(view.candidates)} tried) and the backoff "
                f"({delay:.3g} s) would pass the deadline",
                attempts,
            )
        )
    return Wait(delay, "backoff", refresh=view.usable == 0)


def _deadline_message(state: CallState, view: PoolView) -> str:
    spent = "" if math.isinf(state.deadline) else f" ({state.deadline - state.started:g} s)"
    if not state.attempts and not view.candidates:
        return f"deadline{spent} passed while waiting for an endpoint"
    return f"deadline{spent} passed"
