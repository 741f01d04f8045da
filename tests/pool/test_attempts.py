"""The pure attempt planner: every rule, and properties over random call histories."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.balancer.outlier import FailureKind
from mcresolve.endpoint import Endpoint
from mcresolve.errors import (
    AttemptsExhausted,
    ClusterUnavailable,
    DeadlineExceeded,
    RetryBudgetExhausted,
)
from mcresolve.minio.classify import Outcome, Transport, classify
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.pool.planner import (
    Attempt,
    AttemptContext,
    AttemptRecord,
    AttemptVerdict,
    CallState,
    Fault,
    GiveUp,
    PoolView,
    Wait,
    default_classify,
    fault_of,
    plan,
)
from mcresolve.timing import BackoffPolicy, Jitter

EPS = [Endpoint("10.0.0.1", 9000 + i, datacenter="dc1") for i in range(4)]
KEYS = frozenset(e.key for e in EPS)
ALL = PoolView(KEYS, usable=4)
NO_JITTER = CallPolicy(
    deadline=30.0,
    attempt_timeout=10.0,
    max_attempts=5,
    backoff=BackoffPolicy(base=0.1, cap=1.0, jitter=Jitter.NONE),
    cluster_backoff=BackoffPolicy(base=1.0, cap=10.0, jitter=Jitter.NONE),
)
NODE = AttemptVerdict(Fault.NODE, FailureKind.CONNECT, True, reason="refused")
"""Refused: nothing was sent, not charged against max_attempts."""
NODE_TIMEOUT = AttemptVerdict(Fault.NODE, FailureKind.TIMEOUT, True, reason="timeout")
"""A NODE failure that reached the server: charged."""
NODE_UNSAFE = AttemptVerdict(Fault.NODE, FailureKind.RESET, False, reason="reset")
CLUSTER = AttemptVerdict(Fault.CLUSTER, None, True, reason="quorum")
CLIENT = AttemptVerdict(Fault.CLIENT, None, False, reason="404")


def failed(state: CallState, endpoint: Endpoint, verdict: AttemptVerdict, at: float) -> CallState:
    state = state.attempt_started(endpoint.key)
    error = RuntimeError(verdict.reason)
    return state.attempt_finished(AttemptRecord(endpoint, at, at, error, verdict))


def start(now: float = 0.0, policy: CallPolicy = NO_JITTER) -> CallState:
    return CallState.begin(now, policy)


def test_first_attempt_at_once_with_the_attempt_timeout() -> None:
    action = plan(start(), ALL, 0.0, NO_JITTER)
    assert action == Attempt(frozenset(), 10.0, cut_by_deadline=False, retry=False, ends=10.0)


def test_retry_goes_to_a_different_endpoint_at_once() -> None:
    state = failed(start(), EPS[0], NODE_TIMEOUT, 0.1)
    action = plan(state, ALL, 0.1, NO_JITTER)
    assert isinstance(action, Attempt)
    assert action.exclude == {EPS[0].key} and action.retry


def test_attempt_after_refused_ones_only_is_not_a_retry() -> None:
    state = failed(failed(start(), EPS[0], NODE, 0.1), EPS[1], NODE, 0.1)
    assert state.charged_attempts == 0 and state.started_attempts == 2
    action = plan(state, ALL, 0.1, NO_JITTER, budget_ok=False)
    assert isinstance(action, Attempt)
    assert action.exclude == {EPS[0].key, EPS[1].key} and not action.retry
    state = failed(state, EPS[2], NODE_TIMEOUT, 0.2)
    assert state.charged_attempts == 1
    after = plan(state, ALL, 0.2, NO_JITTER, budget_ok=False)
    assert isinstance(after, GiveUp) and isinstance(after.error, RetryBudgetExhausted)


def test_exclude_is_avoided_in_the_first_round_only() -> None:
    state = CallState.begin(0.0, NO_JITTER, frozenset({EPS[0].key}))
    action = plan(state, ALL, 0.0, NO_JITTER)
    assert isinstance(action, Attempt) and action.exclude == {EPS[0].key}
    assert not action.retry
    for endpoint in EPS[1:]:
        state = failed(state, endpoint, NODE_TIMEOUT, 0.1)
    backoff = plan(state, ALL, 0.1, NO_JITTER)
    assert isinstance(backoff, Wait) and backoff.cause == "backoff"
    again = plan(state.wait_done(backoff), ALL, 0.3, NO_JITTER)
    assert isinstance(again, Attempt) and again.exclude == frozenset()


def test_timeout_is_cut_to_the_time_left() -> None:
    state = failed(start(), EPS[0], NODE, 25.0)
    action = plan(state, ALL, 25.0, NO_JITTER)
    assert isinstance(action, Attempt)
    assert action.timeout == pytest.approx(5.0) and action.cut_by_deadline
    assert action.ends == state.deadline == 30.0  # the time given ends with the call


def test_client_verdict_raises_the_callee_error() -> None:
    state = failed(start(), EPS[0], CLIENT, 0.1)
    action = plan(state, ALL, 0.1, NO_JITTER)
    assert isinstance(action, GiveUp)
    assert isinstance(action.error, RuntimeError) and str(action.error) == "404"


def test_unsafe_replay_raises_the_callee_error() -> None:
    state = failed(start(), EPS[0], NODE_UNSAFE, 0.1)
    action = plan(state, ALL, 0.1, NO_JITTER)
    assert isinstance(action, GiveUp) and str(action.error) == "reset"


def test_deadline_passed() -> None:
    state = failed(start(), EPS[0], NODE, 30.0)
    action = plan(state, ALL, 30.0, NO_JITTER)
    assert isinstance(action, GiveUp) and isinstance(action.error, DeadlineExceeded)
    assert action.error.attempts[0].endpoint == EPS[0]
    assert isinstance(action.error, TimeoutError)


def test_max_attempts() -> None:
    state = start()
    for i in range(5):
        state = failed(state, EPS[i % 4], NODE_TIMEOUT, 0.1)
        if i == 3:
            state = state.wait_done(Wait(0.1, "backoff"))
    action = plan(state, ALL, 0.2, NO_JITTER)
    assert isinstance(action, GiveUp) and isinstance(action.error, AttemptsExhausted)
    assert len(action.error.attempts) == 5


def test_refused_attempts_do_not_use_up_max_attempts() -> None:
    """A whole datacenter dies: its nodes refuse until the source publishes another set."""
    state = start()
    now = 0.0
    for round_ in range(10):  # far more rounds than max_attempts (5)
        for endpoint in EPS:
            action = plan(state, PoolView(KEYS, usable=0), now, NO_JITTER, budget_ok=False)
            assert isinstance(action, Attempt) and not action.retry
            state = failed(state, endpoint, NODE, now)
        wait = plan(state, PoolView(KEYS, usable=0), now, NO_JITTER)
        assert isinstance(wait, Wait) and wait.cause == "backoff" and wait.refresh, round_
        state = state.wait_done(wait)
        now += wait.delay
    assert state.started_attempts == 40 and state.charged_attempts == 0
    # The source answers with another datacenter: a reset there is charged as usual.
    other = [Endpoint("10.0.1.1", 9000 + i) for i in range(5)]
    view = PoolView(frozenset(e.key for e in other), usable=5)
    for endpoint in other:
        assert isinstance(plan(state, view, now, NO_JITTER), Attempt)
        state = failed(state, endpoint, NODE_TIMEOUT, now)
    action = plan(state, view, now, NO_JITTER)
    assert isinstance(action, GiveUp) and isinstance(action.error, AttemptsExhausted)


def test_all_ejected_waits_for_a_new_set_until_the_deadline_instead_of_giving_up() -> None:
    policy = CallPolicy(deadline=0.5, backoff=BackoffPolicy(base=1.0, jitter=Jitter.NONE))
    state = start(policy=policy)
    for endpoint in EPS:
        state = failed(state, endpoint, NODE, 0.1)
    action = plan(state, PoolView(KEYS, usable=0), 0.1, policy)
    assert action == Wait(pytest.approx(0.4), "no_endpoint", refresh=True)  # type: ignore[arg-type]
    late = plan(state.wait_done(action), PoolView(KEYS, usable=0), 0.5, policy)
    assert isinstance(late, GiveUp) and isinstance(late.error, DeadlineExceeded)


def test_in_flight_attempts_count_towards_max() -> None:
    state = start()
    for endpoint in EPS:
        state = state.attempt_started(endpoint.key)
    state = state.attempt_finished(AttemptRecord(EPS[0], 0, 0, RuntimeError(), NODE_TIMEOUT))
    action = plan(state, PoolView(KEYS, 4), 0.0, CallPolicy(max_attempts=4))
    assert isinstance(action, GiveUp) and isinstance(action.error, AttemptsExhausted)


def test_no_budget_no_retry_but_first_attempt_is_free() -> None:
    assert isinstance(plan(start(), ALL, 0.0, NO_JITTER, budget_ok=False), Attempt)
    state = failed(start(), EPS[0], NODE_TIMEOUT, 0.1)
    action = plan(state, ALL, 0.1, NO_JITTER, budget_ok=False)
    assert isinstance(action, GiveUp) and isinstance(action.error, RetryBudgetExhausted)


def test_backoff_only_once_every_endpoint_was_tried() -> None:
    state = start()
    for endpoint in EPS[:3]:
        state = failed(state, endpoint, NODE, 0.1)
        assert isinstance(plan(state, ALL, 0.1, NO_JITTER), Attempt)
    state = failed(state, EPS[3], NODE, 0.1)
    action = plan(state, ALL, 0.1, NO_JITTER)
    assert action == Wait(0.1, "backoff", refresh=False)
    after = state.wait_done(action)
    assert after.tried == frozenset() and after.backoffs == 1
    again = plan(after, ALL, 0.2, NO_JITTER)
    assert isinstance(again, Attempt) and again.exclude == frozenset()


def test_backoff_grows_and_refreshes_when_nothing_is_usable() -> None:
    state = start()
    for endpoint in EPS:
        state = failed(state, endpoint, NODE, 0.1)
    state = state.wait_done(Wait(0.1, "backoff"))
    state = state.wait_done(Wait(0.2, "backoff"))
    for endpoint in EPS:
        state = state.attempt_started(endpoint.key)
    action = plan(state, PoolView(KEYS, usable=0), 0.5, CallPolicy(max_attempts=50))
    assert isinstance(action, Wait) and action.refresh and action.cause == "backoff"


def test_backoff_past_deadline_gives_up() -> None:
    policy = CallPolicy(deadline=0.5, backoff=BackoffPolicy(base=1.0, jitter=Jitter.NONE))
    state = start(policy=policy)
    for endpoint in EPS:
        state = failed(state, endpoint, NODE, 0.1)
    action = plan(state, ALL, 0.1, policy)
    assert isinstance(action, GiveUp) and isinstance(action.error, AttemptsExhausted)
    assert "every endpoint failed" in str(action.error)


ONE = PoolView(frozenset({EPS[0].key}), usable=1)
"""A pool of one endpoint: a CLUSTER verdict stands at once (nobody else can confirm it)."""


def test_cluster_waits_for_retry_after_then_retries() -> None:
    verdict = AttemptVerdict(Fault.CLUSTER, None, True, retry_after=2.0, reason="slow down")
    state = failed(start(), EPS[0], verdict, 0.1)
    action = plan(state, ONE, 0.1, NO_JITTER)
    assert isinstance(action, Wait) and (action.delay, action.cause) == (2.0, "cluster")
    assert action.cluster is state.attempts[-1]
    state = state.wait_done(action)
    assert state.cluster_waits == 1 and state.cluster is action.cluster
    assert isinstance(plan(state, ONE, 2.1, NO_JITTER), Attempt)


def test_cluster_without_hint_uses_the_cluster_backoff() -> None:
    state = failed(start(), EPS[0], CLUSTER, 0.1)
    action = plan(state, ONE, 0.1, NO_JITTER)
    assert isinstance(action, Wait) and (action.delay, action.cause) == (1.0, "cluster")


def test_cluster_retry_after_past_deadline_raises_at_once() -> None:
    verdict = AttemptVerdict(Fault.CLUSTER, None, True, retry_after=60.0, reason="SlowDown")
    state = failed(start(), EPS[0], verdict, 0.1)
    action = plan(state, ONE, 0.1, NO_JITTER)
    assert isinstance(action, GiveUp) and isinstance(action.error, ClusterUnavailable)
    assert action.error.verdict is verdict
    assert "SlowDown" in str(action.error) and "retry after 60 s" in str(action.error)


def test_one_nodes_cluster_verdict_is_checked_on_another_node_at_once() -> None:
    """A quorum answer from one node may be that node's own view: the next attempt goes to
    another node at once, without waiting, and the node that answered is excluded."""
    verdict = AttemptVerdict(Fault.CLUSTER, None, True, retry_after=120.0, reason="quorum")
    state = failed(start(), EPS[0], verdict, 0.1)
    action = plan(state, ALL, 0.1, NO_JITTER)
    assert isinstance(action, Attempt) and EPS[0].key in action.exclude
    assert action.probe is None
    # the other nodes are ejected: the confirmation is asked of the reserve
    view = PoolView(frozenset({EPS[0].key}), 1, (EPS[2].key, EPS[1].key))
    action = plan(state, view, 0.1, NO_JITTER)
    assert isinstance(action, Attempt) and action.probe == EPS[2].key


def test_a_verdict_the_classifier_confirmed_stands_at_once() -> None:
    """Throttling from a shared limiter, or the same failure from every node: the classifier
    says the condition is cluster-wide, so no other node is asked."""
    verdict = AttemptVerdict(Fault.CLUSTER, None, True, 2.0, "slow down", confirmed=True)
    state = failed(start(), EPS[0], verdict, 0.1)
    action = plan(state, ALL, 0.1, NO_JITTER)
    assert isinstance(action, Wait) and (action.delay, action.cause) == (2.0, "cluster")


def test_cluster_verdict_confirmed_by_a_second_node_waits_then_gives_up() -> None:
    verdict = AttemptVerdict(Fault.CLUSTER, None, True, retry_after=2.0, reason="quorum")
    state = failed(start(), EPS[0], verdict, 0.1)
    state = failed(state, EPS[1], verdict, 0.2)
    action = plan(state, ALL, 0.2, NO_JITTER)
    assert isinstance(action, Wait) and (action.delay, action.cause) == (2.0, "cluster")
    assert action.cluster is state.attempts[-1]


def test_unconfirmed_cluster_verdict_stands_once_nothing_else_is_left() -> None:
    """One node says the cluster lost quorum, every other node is unreachable: the verdict
    stands (the server's Retry-After is honoured, not the short node backoff)."""
    verdict = AttemptVerdict(Fault.CLUSTER, None, True, retry_after=3.0, reason="quorum")
    state = failed(start(), EPS[0], verdict, 0.1)
    for endpoint in EPS[1:3]:
        assert isinstance(plan(state, ALL, 0.1, NO_JITTER), Attempt)
        state = failed(state, endpoint, NODE, 0.1)
    assert isinstance(plan(state, ALL, 0.1, NO_JITTER), Attempt)  # EPS[3] is left
    state = failed(state, EPS[3], NODE_TIMEOUT, 0.2)
    action = plan(state, ALL, 0.2, NO_JITTER)
    assert isinstance(action, Wait) and (action.delay, action.cause) == (3.0, "cluster")
    assert action.cluster is state.attempts[0]


def test_a_standing_cluster_verdict_is_the_error_wherever_the_deadline_falls() -> None:
    """Deadline passed after a cluster wait (the retried attempt hung until the deadline):
    still ClusterUnavailable, the condition, not DeadlineExceeded."""
    verdict = AttemptVerdict(Fault.CLUSTER, None, True, retry_after=5.0, reason="write quorum")
    state = failed(start(), EPS[0], verdict, 1.0)
    state = failed(state, EPS[1], verdict, 1.0)
    wait = plan(state, ALL, 1.0, NO_JITTER)
    assert isinstance(wait, Wait)
    state = state.wait_done(wait).attempt_started(EPS[2].key)
    hung = AttemptRecord(EPS[2], 6.0, 30.0, TimeoutError(), NODE_TIMEOUT, counted=False)
    state = state.attempt_finished(hung)
    action = plan(state, ALL, 30.0, NO_JITTER)
    assert isinstance(action, GiveUp) and isinstance(action.error, ClusterUnavailable)
    assert action.error.verdict is verdict and "deadline" in str(action.error)
    # and when max_attempts ends it
    state = failed(start(), EPS[0], verdict, 1.0)
    state = failed(state, EPS[1], verdict, 1.0)
    action = plan(state, ALL, 1.0, CallPolicy(max_attempts=2))
    assert isinstance(action, GiveUp) and isinstance(action.error, ClusterUnavailable)


def test_a_cluster_verdict_cut_by_the_deadline_is_no_evidence() -> None:
    verdict = AttemptVerdict(Fault.CLUSTER, None, True, reason="no node answered in time")
    state = start().attempt_started(EPS[0].key)
    state = state.attempt_finished(
        AttemptRecord(EPS[0], 0.0, 30.0, TimeoutError(), verdict, counted=False)
    )
    action = plan(state, ONE, 30.0, NO_JITTER)
    assert isinstance(action, GiveUp) and type(action.error) is DeadlineExceeded


def test_every_candidate_failed_probes_the_reserve_least_recently_failed_first() -> None:
    """Two candidates failed; the reserve (given oldest failure first) is probed one by one
    before the call backs off."""
    view = PoolView(frozenset({EPS[0].key, EPS[1].key}), 2, (EPS[3].key, EPS[2].key))
    state = failed(start(), EPS[0], NODE_TIMEOUT, 0.1)
    state = failed(state, EPS[1], NODE_TIMEOUT, 0.2)
    action = plan(state, view, 0.2, NO_JITTER)
    assert isinstance(action, Attempt) and action.probe == EPS[3].key and action.retry
    state = failed(state, EPS[3], NODE_TIMEOUT, 0.3)
    action = plan(state, view, 0.3, NO_JITTER)
    assert isinstance(action, Attempt) and action.probe == EPS[2].key
    state = failed(state, EPS[2], NODE, 0.4)
    action = plan(state, view, 0.4, NO_JITTER)
    assert isinstance(action, Wait) and action.cause == "backoff"


def test_no_probe_while_a_candidate_is_untried() -> None:
    view = PoolView(frozenset({EPS[0].key, EPS[1].key}), 2, (EPS[3].key,))
    state = failed(start(), EPS[0], NODE_TIMEOUT, 0.1)
    action = plan(state, view, 0.1, NO_JITTER)
    assert isinstance(action, Attempt) and action.probe is None


def test_no_endpoint_waits_for_one_until_the_deadline_and_refreshes() -> None:
    action = plan(start(), PoolView(frozenset(), 0), 1.0, NO_JITTER)
    assert action == Wait(29.0, "no_endpoint", refresh=True)
    late = plan(start(), PoolView(frozenset(), 0), 30.0, NO_JITTER)
    assert isinstance(late, GiveUp) and isinstance(late.error, DeadlineExceeded)
    assert "waiting for an endpoint" in str(late.error)


def test_infinite_deadline() -> None:
    policy = CallPolicy(deadline=math.inf, attempt_timeout=math.inf)
    action = plan(start(policy=policy), ALL, 1e9, policy)
    assert isinstance(action, Attempt) and math.isinf(action.timeout)
    assert not action.cut_by_deadline


@dataclass(frozen=True)
class ForeignVerdict:
    error_class: enum.Enum
    failure_kind: FailureKind | None
    replay_safe: bool
    retry_after: float | None
    reason: str


def test_minio_verdicts_plug_in_directly() -> None:
    quorum = classify(Outcome("GET", status=503, code="XMinioReadQuorum", retry_after=120.0))
    assert fault_of(quorum) is Fault.CLUSTER
    state = failed(start(), EPS[0], quorum, 0.0)  # type: ignore[arg-type]
    assert isinstance(plan(state, ALL, 0.0, NO_JITTER), Attempt)  # asked of another node
    state = failed(state, EPS[1], quorum, 0.0)  # type: ignore[arg-type]
    action = plan(state, ALL, 0.0, NO_JITTER)
    assert isinstance(action, GiveUp) and isinstance(action.error, ClusterUnavailable)
    refused = classify(Outcome("PUT", transport=Transport.REFUSED))
    state = failed(start(), EPS[0], refused, 0.0)  # type: ignore[arg-type]
    assert isinstance(plan(state, ALL, 0.0, NO_JITTER), Attempt)


def test_a_verdict_without_a_fault_is_rejected() -> None:
    """An enum merely spelled like Fault (a classifier typed loosely) is refused, not read as
    "no fault"."""

    class LookAlike(enum.Enum):
        NODE = "node"

    with pytest.raises(TypeError, match="must be a Fault"):
        fault_of(ForeignVerdict(LookAlike.NODE, None, True, None, ""))  # type: ignore[arg-type]


def ctx(idempotent: bool = True, timed_out: bool = False) -> AttemptContext:
    return AttemptContext(EPS[0], 1, idempotent, False, timed_out)


@pytest.mark.parametrize(
    ("exc", "fault", "kind", "safe_if_not_idempotent"),
    [
        (ConnectionRefusedError(), Fault.NODE, FailureKind.CONNECT, True),
        (OSError(113, "No route to host"), Fault.NODE, FailureKind.CONNECT, True),
        (ConnectionResetError(), Fault.NODE, FailureKind.RESET, False),
        (BrokenPipeError(), Fault.NODE, FailureKind.RESET, False),
        (TimeoutError(), Fault.NODE, FailureKind.TIMEOUT, False),
        (ValueError("bug"), Fault.CLIENT, None, False),
        (OSError(2, "No such file"), Fault.CLIENT, None, False),
    ],
)
def test_default_classifier(
    exc: BaseException, fault: Fault, kind: FailureKind | None, safe_if_not_idempotent: bool
) -> None:
    verdict = default_classify(exc, ctx())
    assert verdict.error_class is fault and verdict.failure_kind is kind
    assert verdict.replay_safe is (fault is Fault.NODE)
    assert default_classify(exc, ctx(idempotent=False)).replay_safe is safe_if_not_idempotent


def test_default_classifier_names_the_attempt_timeout() -> None:
    assert "attempt timeout" in default_classify(TimeoutError(), ctx(timed_out=True)).reason


# --- properties -------------------------------------------------------------------------------

verdicts = st.sampled_from([NODE, NODE_TIMEOUT, NODE_UNSAFE, CLUSTER, CLIENT])
events = st.lists(
    st.tuples(st.integers(0, 3), verdicts, st.floats(0.0, 5.0), st.booleans()), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(history=events, usable=st.integers(0, 4), rand=st.floats(0.0, 0.999))
def test_planner_properties(
    history: list[tuple[int, AttemptVerdict, float, bool]], usable: int, rand: float
) -> None:
    """Drive the planner with arbitrary outcomes: whatever happens, every action is legal."""
    policy = CallPolicy(deadline=30.0, max_attempts=5)
    state = start(policy=policy)
    now = 0.0
    for index, verdict, elapsed, budget in history:
        action = plan(state, PoolView(KEYS, usable), now, policy, budget_ok=budget, random=rand)
        if isinstance(action, GiveUp):
            last = state.attempts[-1] if state.attempts else None
            if state.cluster is not None and not isinstance(action.error, RuntimeError):
                # one condition, one error: a CLUSTER verdict stood earlier in the call
                assert isinstance(action.error, ClusterUnavailable)
            if isinstance(action.error, RuntimeError):  # the callee's own error
                assert last is not None and last.error is action.error
                assert last.verdict is not None
                assert fault_of(last.verdict) is Fault.CLIENT or not last.verdict.replay_safe
            elif isinstance(action.error, RetryBudgetExhausted):
                assert not budget and state.charged_attempts > 0
            elif isinstance(action.error, DeadlineExceeded):
                assert now >= state.deadline - 1e-6
            elif isinstance(action.error, ClusterUnavailable):
                cluster = action.error.verdict
                assert any(
                    a.verdict is cluster and a.counted and fault_of(cluster) is Fault.CLUSTER
                    for a in state.attempts
                )
            else:
                assert isinstance(action.error, AttemptsExhausted)
            return
        if isinstance(action, Wait):
            assert 0 <= action.delay <= state.deadline - now
            if action.cause == "backoff" or (action.cause == "no_endpoint" and usable):
                assert state.tried >= KEYS  # backoff only once every endpoint was tried
            if action.cause == "no_endpoint":
                assert action.refresh and usable == 0
            state = state.wait_done(action)
            now += min(action.delay, elapsed)
            continue
        assert isinstance(action, Attempt)
        assert state.charged_attempts < policy.max_attempts
        assert action.retry == (state.charged_attempts > 0)
        assert 0 < action.timeout <= policy.attempt_timeout
        assert now + action.timeout <= state.deadline + 1e-6
        assert action.ends <= state.deadline and action.ends == pytest.approx(now + action.timeout)
        assert not (action.exclude >= KEYS)  # an untried endpoint exists
        if action.retry:
            assert budget
        endpoint = EPS[index]
        if endpoint.key in action.exclude:  # the picker would choose an untried one
            endpoint = next(e for e in EPS if e.key not in action.exclude)
        now += elapsed
        state = failed(state, endpoint, verdict, now)
    assert state.charged_attempts <= policy.max_attempts
    refused = sum(1 for a in state.attempts if a.refused)
    assert state.started_attempts - refused == state.charged_attempts


@settings(max_examples=200, deadline=None)
@given(history=events, rand=st.floats(0.0, 0.999))
def test_state_transitions_change_only_their_fields(
    history: list[tuple[int, AttemptVerdict, float, bool]], rand: float
) -> None:
    """``attempt_started`` / ``attempt_finished`` build the next state field by field (cheaper
    than ``dataclasses.replace``): from any state reached by a call, they equal the ``replace``
    spelling of the transition."""
    state = start()
    for index, verdict, at, counted in history:
        key = EPS[index].key
        started = state.attempt_started(key)
        assert started == replace(state, tried=state.tried | {key}, in_flight=state.in_flight + 1)
        record = AttemptRecord(EPS[index], at, at, RuntimeError("x"), verdict, counted=counted)
        finished = started.attempt_finished(record)
        cluster = counted and verdict.error_class is Fault.CLUSTER
        assert finished == replace(
            started,
            attempts=(*started.attempts, record),
            in_flight=started.in_flight - 1,
            waited=False,
            refused_attempts=started.refused_attempts + record.refused,
            cluster_round=started.cluster_round | {key} if cluster else started.cluster_round,
            cluster_round_last=record if cluster else started.cluster_round_last,
        )
        state = finished
        if rand < 0.3:  # a wait between attempts (a new round, or a CLUSTER verdict standing)
            state = state.wait_done(Wait(0.1, "backoff", cluster=finished.cluster_round_last))
