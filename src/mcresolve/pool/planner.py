"""The attempt planner: what a call does next (pure; no I/O, no clock, no sleeping), and the
context through which a running attempt learns its time.

A call through the pool is a sequence of attempts, each on one endpoint. After every event the
pool asks :func:`plan` what to do, given the call's :class:`CallState` (attempts so far, which
endpoints were tried, waits done), a :class:`PoolView` of the current picker, ``now``, the
:class:`~mcresolve.pool.call_policy.CallPolicy` and whether the retry budget has room. The answer is
one of:

* :class:`Attempt` — pick an endpoint outside ``exclude`` and run the function on it now, with
  ``timeout``;
* :class:`Wait` — sleep ``delay`` seconds (waking early when the pool's endpoint set or
  usability changes), optionally asking the source to re-resolve first; then start a new round;
* :class:`GiveUp` — raise ``error``.

Rules, in order (``last`` = the latest finished attempt; a *round* is the attempts between two
waits; the pool's endpoints are the picker's *candidates* and its *reserve*, the endpoints it
left out — ejected, avoided, or in a datacenter that is not active — least recently failed
first):

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
5. A CLUSTER verdict in this round *stands* once a second endpoint has confirmed it in the
   round, once no endpoint is left untried in the round (candidates and reserve), or at once
   when the verdict itself says it is ``confirmed`` (an optional attribute: the classifier
   knows the condition is cluster-wide, e.g. the same failure from every node). Until
   then the next untried endpoint is attempted at once (rules 7 and 8): one node's answer about
   the whole cluster may be its own view (a MinIO node that has just restarted answers
   ``XMinioReadQuorum`` while the others serve). When it stands and no wait happened since:
   wait ``Retry-After`` (the server's hint) or the cluster backoff; if that wait would not end
   before the deadline, give up now (waiting only to fail is worse).
6. No endpoint to pick from: wait for one (until the deadline), asking the source to
   re-resolve.
7. A candidate not tried in this round exists: attempt it at once (retries go to a
   *different* endpoint without delay).
8. Every candidate has been tried in this round and a reserve endpoint has not: *probe* the
   first such one (least recently failed first) at once. A cap on ejections and the panic
   threshold both leave endpoints out of the picker on purpose; but once every candidate has
   failed in this round, the endpoints left out have not failed more recently than the
   candidates, and a probe is the only way to learn that one recovered (Finagle's failure
   accrual sends one probe to a node it marked dead; Envoy's panic mode and Finagle's
   balancer fall back to unhealthy hosts when nothing healthy remains). In a pool no larger
   than ``max_attempts`` every endpoint is therefore tried before a call gives up; in larger
   pools ``max_attempts`` ends the round first, so probes happen only when most endpoints are
   left out.
9. Every endpoint has been tried: back off (jittered, ``policy.backoff``) and start a new round;
   re-resolve first when no endpoint is usable (all ejected). If the backoff would not end
   before the deadline: with nothing usable, wait for a new set until the deadline (then
   :class:`~mcresolve.errors.DeadlineExceeded`); else
   :class:`~mcresolve.errors.AttemptsExhausted`.

**One condition, one error.** Once a CLUSTER verdict of the call has stood (rule 5), every way
the call can give up (rules 2–5 and 9) raises :class:`~mcresolve.errors.ClusterUnavailable`
carrying that verdict, whatever the pool's size and wherever the deadline falls: the condition
the caller must handle is the cluster's, not which limit happened to end the wait. Verdicts of
attempts cut short by the caller's deadline (:attr:`AttemptRecord.counted` False) are no
evidence and never stand.

**Time of an attempt.** Every attempt is given ``timeout = min(attempt_timeout, time left)``;
inside the function the pool runs, :func:`attempt_time_left` says how much of it is left, so a
blocking function bounds its I/O by it and no attempt outlives the call's deadline.

Classification (what an exception means) is pluggable: a :data:`Classifier` maps the exception
and an :class:`AttemptContext` to any object shaped like :class:`VerdictLike` —
:class:`AttemptVerdict`, or :class:`mcresolve.minio.classify.Verdict` directly.
"""

from __future__ import annotations

import enum
import errno
import math
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace
from typing import NamedTuple, Protocol, runtime_checkable

from mcresolve.balancer.outlier import FailureKind
from mcresolve.endpoint import Endpoint, Key
from mcresolve.errors import (
    AttemptsExhausted,
    CallFailed,
    ClusterUnavailable,
    DeadlineExceeded,
    RetryBudgetExhausted,
)
from mcresolve.pool.call_policy import CallPolicy

__all__ = [
    "REFUSED_ERRNOS",
    "Attempt",
    "AttemptContext",
    "AttemptRecord",
    "AttemptTime",
    "AttemptVerdict",
    "CallState",
    "Classifier",
    "Fault",
    "GiveUp",
    "PoolView",
    "VerdictLike",
    "Wait",
    "attempt_now",
    "attempt_time",
    "attempt_time_left",
    "default_classify",
    "enter_attempt",
    "fault_of",
    "first_attempt",
    "first_attempt_time",
    "leave_attempt",
    "plan",
    "plan_hedge",
]


class Fault(enum.Enum):
    """Who is at fault for a failed attempt: every classifier's verdict carries one."""

    NODE = "node"
    """This endpoint: count it against the endpoint, retry elsewhere at once."""
    CLUSTER = "cluster"
    """The whole backend: report nothing against the endpoint, wait, retry or give up."""
    CLIENT = "client"
    """An answer, or not a backend failure: raise at once; the endpoint served (a success)."""


@runtime_checkable
class VerdictLike(Protocol):
    """What a classifier returns: ``error_class`` is the :class:`Fault`. A verdict may
    also have a boolean ``confirmed`` (read with ``getattr``; absent means False): for CLUSTER,
    the classifier knows the condition is cluster-wide and no other node need confirm it
    (planner rule 5)."""

    @property
    def error_class(self) -> Fault: ...

    @property
    def failure_kind(self) -> FailureKind | None: ...

    @property
    def replay_safe(self) -> bool: ...

    @property
    def retry_after(self) -> float | None: ...

    @property
    def reason(self) -> str: ...


def fault_of(verdict: VerdictLike) -> Fault:
    """The :class:`Fault` of a verdict; a verdict carrying anything else (an untyped classifier)
    is rejected rather than read as no fault at all."""
    fault = verdict.error_class
    if not isinstance(fault, Fault):
        raise TypeError(f"verdict error_class must be a Fault, got {fault!r}")
    return fault


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
    confirmed: bool = False
    """For CLUSTER: known to be cluster-wide (it stands at once, planner rule 5). False: one
    node's answer, asked of another node before the call waits or gives up."""


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


class AttemptTime(NamedTuple):
    """The time a running attempt was given (read it with :func:`attempt_time_left`). A named
    tuple: one is built per attempt, on the synchronous fast path too."""

    timeout: float
    """``min(attempt_timeout, time left in the call)`` when the attempt started."""
    ends: float
    """Pool-clock time at which the attempt's time is up (when it was planned plus ``timeout``;
    never after the call's deadline)."""
    clock: Callable[[], float]
    """The pool's clock."""

    def left(self) -> float:
        """Seconds left now (0 when the time is up; ``inf`` without any limit)."""
        return max(0.0, self.ends - self.clock())


_ATTEMPT_TIME: ContextVar[AttemptTime | None] = ContextVar("mcresolve_attempt_time", default=None)


def attempt_time() -> AttemptTime | None:
    """The running attempt's time, inside a function run by ``pool.call`` / ``pool.call_sync``
    (None elsewhere)."""
    return _ATTEMPT_TIME.get()


def attempt_time_left() -> float | None:
    """Seconds the running attempt has left, inside a function run by ``pool.call`` /
    ``pool.call_sync`` (None elsewhere; ``inf`` when neither the policy nor the call sets a
    limit).

    ``pool.call`` cancels an attempt at its time; ``pool.call_sync`` cannot interrupt a running
    function, so a blocking function must bound its own I/O by this value (socket and HTTP
    client timeouts: ``min(own timeout, attempt_time_left())``) for the call to keep its
    deadline. :class:`~mcresolve.minio.ResilientMinio` does so for every request."""
    current = _ATTEMPT_TIME.get()
    return None if current is None else current.left()


def enter_attempt(
    timeout: float, ends: float, clock: Callable[[], float]
) -> Token[AttemptTime | None]:
    """Make ``timeout``, up at ``ends`` on ``clock``, the running attempt's time in this
    context (thread or task) until :func:`leave_attempt` (used by the pool around each
    attempt; a pair of calls rather than a context manager: it is on the fast path)."""
    return _ATTEMPT_TIME.set(AttemptTime(timeout, ends, clock))


def leave_attempt(token: Token[AttemptTime | None]) -> None:
    """End the attempt :func:`enter_attempt` started."""
    _ATTEMPT_TIME.reset(token)


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
    timeout: float = math.inf
    """The time the attempt was given: ``min(attempt_timeout, time left in the call)`` when it
    started (``started + timeout`` never passes the call's deadline)."""
    probe: bool = False
    """Sent to an endpoint outside the picker (ejected or avoided) after every candidate had
    failed in the round (planner rule 8)."""

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
    cluster_round: frozenset[Key] = frozenset()
    """Endpoints that gave a counted CLUSTER verdict in this round (cleared by a new round)."""
    cluster_round_last: AttemptRecord | None = None
    """The latest of those attempts."""
    cluster: AttemptRecord | None = None
    """The CLUSTER attempt whose verdict stands for the call (planner rule 5), if any: from
    then on the call gives up with :class:`~mcresolve.errors.ClusterUnavailable`."""

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
        # The transitions build the new state field by field: dataclasses.replace costs several
        # times more, and they run for every attempt of every call.
        return CallState(
            self.started,
            self.deadline,
            self.attempts,
            self.in_flight + 1,
            self.tried | {key},
            self.backoffs,
            self.cluster_waits,
            self.waited,
            self.refused_attempts,
            self.cluster_round,
            self.cluster_round_last,
            self.cluster,
        )

    def attempt_finished(self, record: AttemptRecord) -> CallState:
        """An attempt finished (success or failure)."""
        cluster_round = self.cluster_round
        cluster_round_last = self.cluster_round_last
        if (
            record.error is not None
            and record.counted
            and record.verdict is not None
            and fault_of(record.verdict) is Fault.CLUSTER
        ):
            cluster_round = cluster_round | {record.endpoint.key}
            cluster_round_last = record
        return CallState(
            self.started,
            self.deadline,
            (*self.attempts, record),
            max(0, self.in_flight - 1),
            self.tried,
            self.backoffs,
            self.cluster_waits,
            False,
            self.refused_attempts + record.refused,
            cluster_round,
            cluster_round_last,
            self.cluster,
        )

    def cluster_stands(self, view: PoolView) -> AttemptRecord | None:
        """The CLUSTER attempt of this round whose verdict stands now (planner rule 5): it was
        confirmed by a second endpoint in the round or by the classifier, or no endpoint is
        left untried in it.
        None when the round has no CLUSTER verdict or it is still unconfirmed."""
        last = self.cluster_round_last
        if last is None:
            return None
        if (
            len(self.cluster_round) >= 2
            or getattr(last.verdict, "confirmed", False) is True
            or self.tried >= view.everything
        ):
            return last
        return None

    def wait_done(self, wait: Wait) -> CallState:
        """``wait`` is over: count it; a new round forgets which endpoints were tried and which
        answered CLUSTER in it."""
        done = replace(
            self,
            backoffs=self.backoffs + (wait.cause == "backoff"),
            cluster_waits=self.cluster_waits + (wait.cause == "cluster"),
            waited=True,
            cluster=wait.cluster if wait.cluster is not None else self.cluster,
        )
        if not wait.new_round:
            return done
        return replace(done, tried=frozenset(), cluster_round=frozenset(), cluster_round_last=None)


@dataclass(frozen=True, slots=True)
class PoolView:
    """What the planner needs to know about the pool right now."""

    candidates: frozenset[Key]
    """Keys the current picker can return (``picker.keys``)."""
    usable: int
    """Endpoints usable (Consul-healthy and not ejected) across the whole pool."""
    reserve: tuple[Key, ...] = ()
    """The pool's other endpoints (``picker.reserve_keys``: ejected, avoided, or in a
    datacenter that is not active), least recently failed first: probed in this order once
    every candidate has been tried in a round (rule 8)."""

    @property
    def everything(self) -> frozenset[Key]:
        """Candidates and reserve: every endpoint of the pool (computed when asked: the
        planner needs it only once every candidate has been tried)."""
        return self.candidates.union(self.reserve)

    @staticmethod
    def of(candidates: frozenset[Key], usable: int, reserve: tuple[Key, ...] = ()) -> PoolView:
        """Shorthand constructor."""
        return PoolView(candidates, usable, reserve)


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
    probe: Key | None = None
    """Rule 8: run the attempt on this endpoint of the reserve (not a pick from the picker)."""
    ends: float = math.inf
    """Clock time at which the attempt's time is up: the planning time plus ``timeout``, never
    after the call's deadline (what :func:`attempt_time_left` counts down to)."""
    hedge: bool = False
    """A hedge: started beside a running attempt that has not answered within the policy's
    ``hedge_delay`` (:func:`plan_hedge`); the first answer wins."""


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
    cluster: AttemptRecord | None = None
    """For ``"cluster"``: the attempt whose CLUSTER verdict stands (rule 5); the call keeps it
    as :attr:`CallState.cluster` after the wait."""

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
    if last is not None and last.error is not None and verdict is not None:
        fault = fault_of(verdict)
        if fault is Fault.CLIENT or not verdict.replay_safe:
            return GiveUp(last.error)
    standing = state.cluster_stands(view)
    if standing is not None and state.cluster is not standing:
        state = replace(state, cluster=standing)
    remaining = state.remaining(now)
    if remaining <= _EPSILON:
        return _give_up(state, DeadlineExceeded, _deadline_message(state, view))
    charged = state.charged_attempts
    if charged >= policy.max_attempts:
        return _give_up(state, AttemptsExhausted, f"gave up after {policy.max_attempts} attempt(s)")
    is_retry = charged > 0
    if is_retry and not budget_ok:
        return _give_up(
            state,
            RetryBudgetExhausted,
            "retry budget exhausted: too many retries across calls right now",
        )
    if standing is not None and not state.waited:
        cluster_verdict = standing.verdict
        assert cluster_verdict is not None
        hint = cluster_verdict.retry_after
        if hint is not None:
            delay = max(0.0, hint)
        else:
            delay = policy.cluster_backoff.delay(state.cluster_waits + 1, 0.0, lambda: random)
        if delay >= remaining:
            wait = f"retry after {delay:g} s" if hint is not None else f"backoff {delay:.3g} s"
            return _give_up(
                state,
                ClusterUnavailable,
                f"{wait} would pass the deadline ({max(0.0, remaining):.3g} s left)",
            )
        return Wait(delay, "cluster", cluster=standing)
    if not view.candidates:
        return Wait(remaining, "no_endpoint", refresh=True)
    if not view.candidates <= state.tried:
        return attempt_now(state, now, policy, retry=is_retry)
    probe = next((key for key in view.reserve if key not in state.tried), None)
    if probe is not None:
        return attempt_now(state, now, policy, retry=is_retry, probe=probe)
    delay = policy.backoff.delay(state.backoffs + 1, 0.0, lambda: random)
    if delay >= remaining:
        if view.usable == 0:  # every endpoint ejected: a new set may still come in time
            return Wait(remaining, "no_endpoint", refresh=True)
        return _give_up(
            state,
            AttemptsExhausted,
            f"every endpoint failed ({len(view.everything)} tried) and the backoff "
            f"({delay:.3g} s) would pass the deadline",
        )
    return Wait(delay, "backoff", refresh=view.usable == 0)


def _give_up(state: CallState, kind: type[CallFailed], why: str) -> GiveUp:
    """Give up with ``kind(why)``, or with :class:`ClusterUnavailable` when a CLUSTER verdict
    stands for the call (one condition, one error)."""
    record = state.cluster
    if record is None or record.verdict is None:
        return GiveUp(kind(why, state.attempts))
    verdict = record.verdict
    reason = verdict.reason or "cluster-wide failure"
    return GiveUp(
        ClusterUnavailable(
            f"backend cluster unavailable ({reason}, answered by {record.endpoint.host_port}); "
            f"{why}",
            state.attempts,
            verdict,
        )
    )


def _deadline_message(state: CallState, view: PoolView) -> str:
    spent = "" if math.isinf(state.deadline) else f" ({state.deadline - state.started:g} s)"
    if not state.attempts and not view.candidates:
        return f"deadline{spent} passed while waiting for an endpoint"
    return f"deadline{spent} passed"


def plan_hedge(
    state: CallState, view: PoolView, now: float, policy: CallPolicy, *, hedges: int
) -> Attempt | None:
    """A hedge to start now beside the running attempt(s), or None (the running ones go on
    alone): the policy hedges, ``hedges`` (already started) is below ``max_hedges``, the
    charged attempts are below ``max_attempts``, time is left and a candidate has not been
    tried. The caller decides when (``hedge_delay`` after the latest start) and whether the
    call may hedge at all (idempotent calls only, like gRPC's hedging policy)."""
    if not policy.hedging or hedges >= policy.max_hedges:
        return None
    if state.charged_attempts >= policy.max_attempts:
        return None
    if state.remaining(now) <= 0 or view.candidates <= state.tried:
        return None
    return attempt_now(state, now, policy, retry=True, hedge=True)


def first_attempt(now: float, policy: CallPolicy, exclude: frozenset[Key] = frozenset()) -> Attempt:
    """The first attempt of a fresh call starting ``now`` (rule 7 when nothing has happened
    yet: what :func:`plan` returns for ``CallState.begin(now, policy, exclude)`` on a pool
    with a candidate outside ``exclude``), computed without a call state: the synchronous fast
    path's attempt."""
    timeout, ends = first_attempt_time(now, policy)
    return Attempt(exclude, timeout, policy.deadline < policy.attempt_timeout, False, ends=ends)


def first_attempt_time(now: float, policy: CallPolicy) -> tuple[float, float]:
    """``(timeout, ends)`` of :func:`first_attempt`, without building it (a tuple costs a tenth
    of a frozen dataclass on the synchronous fast path, where it would be built per call)."""
    timeout = min(policy.attempt_timeout, policy.deadline)
    return timeout, now + timeout


def attempt_now(
    state: CallState,
    now: float,
    policy: CallPolicy,
    *,
    retry: bool,
    probe: Key | None = None,
    hedge: bool = False,
) -> Attempt:
    """An attempt starting ``now`` outside the endpoints tried in the round, given
    ``min(attempt_timeout, time left)`` (rules 7 and 8, hedges, and the synchronous fast path's
    first attempt once it failed)."""
    remaining = state.remaining(now)
    timeout = min(policy.attempt_timeout, remaining)
    cut = remaining < policy.attempt_timeout
    ends = state.deadline if cut else now + timeout
    return Attempt(state.tried, timeout, cut, retry, probe=probe, ends=ends, hedge=hedge)
