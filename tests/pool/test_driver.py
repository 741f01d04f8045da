"""The call driver's steps and judgements, pure: no pool, no clock but the numbers given."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mcresolve.balancer.outlier import FailureKind
from mcresolve.endpoint import Endpoint
from mcresolve.errors import AttemptsExhausted
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.pool.driver import (
    DEADLINE_SLACK,
    CallDriver,
    Settle,
    counts,
    latency_sample,
)
from mcresolve.pool.planner import (
    Attempt,
    AttemptContext,
    AttemptRecord,
    AttemptVerdict,
    Fault,
    PoolView,
    attempt_now,
    default_classify,
    first_attempt,
    first_attempt_time,
    plan,
    plan_hedge,
)

A, B, C = (Endpoint("127.0.0.1", p) for p in (9001, 9002, 9003))
VIEW = PoolView(frozenset({A.key, B.key, C.key}), 3)
HEDGING = CallPolicy(deadline=10.0, attempt_timeout=2.0, hedge_delay=0.5, max_hedges=2)


def _failed(endpoint: Endpoint, exc: Exception, *, hedge: bool = False) -> AttemptRecord:
    verdict = default_classify(exc, AttemptContext(endpoint, 1, True, False))
    return AttemptRecord(endpoint, 0.0, 1.0, exc, verdict, hedge=hedge)


def test_hedges_are_scheduled_after_each_start_up_to_max_hedges() -> None:
    driver = CallDriver.begin(100.0, HEDGING)
    first = driver.next(VIEW, 100.0, budget_ok=True, random=0.5)
    assert isinstance(first, Attempt) and not first.hedge
    driver.started(A.key, first, 100.0)
    assert driver.hedge_due(100.2) == pytest.approx(0.3)
    hedge = driver.hedge(VIEW, 100.5)
    assert hedge is not None and hedge.hedge and hedge.retry and A.key in hedge.exclude
    assert driver.hedge_due(100.5) is None  # nothing scheduled until the hedge starts
    driver.started(B.key, hedge, 100.5)
    assert driver.hedge_due(100.5) == pytest.approx(0.5)  # a second hedge is allowed
    second = driver.hedge(VIEW, 101.0)
    assert second is not None
    driver.started(C.key, second, 101.0)
    assert driver.hedges == 2 and driver.hedge_due(101.0) is None  # max_hedges reached


def test_no_hedge_when_not_idempotent_or_the_policy_does_not_hedge() -> None:
    for driver in (
        CallDriver.begin(0.0, HEDGING, idempotent=False),
        CallDriver.begin(0.0, CallPolicy(deadline=10.0)),
    ):
        first = driver.next(VIEW, 0.0, budget_ok=True, random=0.5)
        assert isinstance(first, Attempt)
        driver.started(A.key, first, 0.0)
        assert driver.hedge_due(0.0) is None
        assert driver.hedge(VIEW, 1.0) is None


def test_no_hedge_once_every_candidate_was_tried_or_time_is_up() -> None:
    driver = CallDriver.begin(0.0, HEDGING)
    only_a = PoolView(frozenset({A.key}), 1)
    first = driver.next(only_a, 0.0, budget_ok=True, random=0.5)
    assert isinstance(first, Attempt)
    driver.started(A.key, first, 0.0)
    assert driver.hedge(only_a, 0.5) is None
    assert plan_hedge(driver.state, VIEW, 10.0, HEDGING, hedges=0) is None  # deadline


def test_a_hedge_near_the_deadline_is_given_the_time_left_and_cut_by_it() -> None:
    driver = CallDriver.begin(0.0, HEDGING)
    first = driver.next(VIEW, 0.0, budget_ok=True, random=0.5)
    assert isinstance(first, Attempt)
    driver.started(A.key, first, 0.0)
    hedge = plan_hedge(driver.state, VIEW, 9.0, HEDGING, hedges=0)
    assert hedge is not None
    assert hedge.timeout == pytest.approx(1.0) and hedge.cut_by_deadline and hedge.ends == 10.0


def test_finished_settles_success_client_error_and_retryable_failure() -> None:
    driver = CallDriver.begin(0.0, HEDGING)
    assert driver.finished(AttemptRecord(A, 0.0, 1.0)) is Settle.RETURN
    assert driver.finished(_failed(A, ValueError("bug"))) is Settle.RAISE
    assert driver.finished(_failed(B, ConnectionResetError())) is Settle.CONTINUE
    not_replayable = AttemptRecord(
        C, 0.0, 1.0, OSError(), AttemptVerdict(Fault.NODE, FailureKind.RESET, replay_safe=False)
    )
    assert driver.finished(not_replayable) is Settle.RAISE


def test_next_raises_the_planner_error_when_it_gives_up() -> None:
    driver = CallDriver.begin(0.0, CallPolicy(deadline=10.0, max_attempts=1))
    first = driver.next(VIEW, 0.0, budget_ok=True, random=0.5)
    assert isinstance(first, Attempt)
    driver.started(A.key, first, 0.0)
    driver.finished(_failed(A, ConnectionResetError()))
    with pytest.raises(AttemptsExhausted):
        driver.next(VIEW, 1.0, budget_ok=True, random=0.5)


@given(
    now=st.floats(0, 1e6),
    deadline=st.floats(0.001, 1e4),
    attempt_timeout=st.floats(0.001, 1e4),
)
def test_the_fast_path_first_attempt_is_the_planners_first_attempt(
    now: float, deadline: float, attempt_timeout: float
) -> None:
    # (equal limits differ only by the rounding of ``now + deadline - now``)
    assume(abs(deadline - attempt_timeout) > 1e-6 * max(deadline, attempt_timeout, now))
    policy = CallPolicy(deadline=deadline, attempt_timeout=attempt_timeout)
    driver = CallDriver.begin(now, policy)
    planned = driver.next(VIEW, now, budget_ok=True, random=0.5)
    fast = first_attempt(now, policy)
    assert first_attempt_time(now, policy) == (fast.timeout, fast.ends)
    assert isinstance(planned, Attempt)
    assert fast.cut_by_deadline == planned.cut_by_deadline and not fast.retry
    assert fast.timeout == pytest.approx(planned.timeout, rel=1e-9, abs=1e-6)
    assert fast.ends == pytest.approx(planned.ends, rel=1e-9, abs=1e-6)
    assert planned == attempt_now(driver.state, now, policy, retry=False)
    assert plan(driver.state, VIEW, now, policy) == planned


def test_a_failure_cut_by_the_deadline_does_not_count() -> None:
    cut = Attempt(frozenset(), 1.0, True, False, ends=10.0)
    whole = Attempt(frozenset(), 1.0, False, False, ends=10.0)
    assert not counts(cut, 10.0, timed_out=False)
    assert not counts(cut, 10.0 - DEADLINE_SLACK / 2, timed_out=False)
    assert not counts(cut, 9.5, timed_out=True)
    assert counts(cut, 9.5, timed_out=False)  # failed before its time was up: the endpoint's
    assert counts(whole, 10.0, timed_out=True)  # its own attempt timeout: the endpoint's


@given(measured=st.floats(0, 100), floor=st.floats(0, 100) | st.just(math.inf))
def test_a_node_failure_costs_at_least_the_floor_and_nothing_else_does(
    measured: float, floor: float
) -> None:
    node = AttemptVerdict(Fault.NODE, FailureKind.RESET)
    cluster = AttemptVerdict(Fault.CLUSTER, None)
    expected = max(measured, floor) if math.isfinite(floor) else measured
    assert latency_sample(node, measured, floor) == expected
    assert latency_sample(FailureKind.TIMEOUT, measured, floor) == expected
    assert latency_sample(None, measured, floor) == measured
    assert latency_sample(cluster, measured, floor) == measured
