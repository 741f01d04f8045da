"""Retry budget: 20 % of requests plus a reserve, over a sliding window."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.balancer.retry_budget import RetryBudget, RetryBudgetPolicy

NO_RESERVE = RetryBudgetPolicy(min_retries_per_second=0.0)


def test_defaults_follow_finagle() -> None:
    policy = RetryBudgetPolicy()
    assert (policy.ttl, policy.percent_can_retry, policy.min_retries_per_second) == (
        10.0,
        0.2,
        10.0,
    )
    assert policy.reserve == 100.0


@pytest.mark.parametrize(
    "kwargs",
    [{"ttl": 0.0}, {"percent_can_retry": -0.1}, {"min_retries_per_second": -1.0}, {"slots": 0}],
)
def test_invalid_policies_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="RetryBudgetPolicy"):
        RetryBudgetPolicy(**kwargs)  # type: ignore[arg-type]


def test_one_retry_per_five_requests_without_reserve() -> None:
    budget = RetryBudget(NO_RESERVE)
    assert not budget.can_retry(0.0)
    for _ in range(4):
        budget.record_request(0.0)
    assert not budget.try_retry(0.0)
    budget.record_request(0.0)
    assert budget.can_retry(0.0)
    assert budget.balance(0.0) == 1
    assert budget.try_retry(0.0)
    assert not budget.try_retry(0.0)
    assert budget.counts(0.0) == (5, 1)
    for _ in range(5):
        budget.record_request(0.5)
    assert budget.try_retry(0.5)


def test_reserve_lets_a_quiet_client_retry() -> None:
    budget = RetryBudget(RetryBudgetPolicy(ttl=10.0, min_retries_per_second=0.3))  # 3 / window
    assert [budget.try_retry(float(t)) for t in range(4)] == [True, True, True, False]
    assert budget.balance(3.0) == 0


def test_deposits_and_withdrawals_expire_after_the_window() -> None:
    budget = RetryBudget(RetryBudgetPolicy(ttl=10.0, min_retries_per_second=0.0, slots=10))
    for _ in range(10):
        budget.record_request(0.0)
    assert budget.try_retry(0.0) and budget.try_retry(0.0)
    assert not budget.can_retry(9.99)  # still in the window
    assert budget.counts(9.99) == (10, 2)
    assert budget.counts(10.0) == (0, 0)  # slot 0 left the window
    assert not budget.can_retry(10.0)  # and so did its deposits


def test_withdrawal_expiry_frees_the_budget_again() -> None:
    budget = RetryBudget(RetryBudgetPolicy(ttl=10.0, min_retries_per_second=0.1))  # 1 / window
    assert budget.try_retry(0.0)
    assert not budget.try_retry(5.0)
    assert budget.try_retry(10.0)


def test_record_retry_withdraws_even_over_budget() -> None:
    budget = RetryBudget(NO_RESERVE)
    budget.record_retry(0.0)
    assert budget.counts(0.0) == (0, 1)
    assert budget.balance(0.0) == 0
    for _ in range(5):
        budget.record_request(0.0)
    assert not budget.can_retry(0.0)  # the forced retry used the allowance


def test_time_going_backwards_counts_as_the_latest_time() -> None:
    budget = RetryBudget(NO_RESERVE)
    for _ in range(5):
        budget.record_request(100.0)
    assert budget.counts(50.0) == (5, 0)
    assert budget.try_retry(50.0)
    assert budget.counts(100.0) == (5, 1)


def test_threads_never_overdraw() -> None:
    budget = RetryBudget(RetryBudgetPolicy(min_retries_per_second=0.0))
    for _ in range(100):
        budget.record_request(0.0)
    granted: list[bool] = []

    def work() -> None:
        for _ in range(50):
            granted.append(budget.try_retry(0.0))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 20


# --- properties ------------------------------------------------------------------------------

events = st.lists(
    st.tuples(st.sampled_from(["request", "retry"]), st.floats(0.0, 4.0, allow_nan=False)),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(
    steps=events,
    percent=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0]),
    rate=st.sampled_from([0.0, 0.1, 1.0]),
    slots=st.integers(1, 10),
)
def test_budget_never_allows_more_retries_than_deposits_allow(
    steps: list[tuple[str, float]], percent: float, rate: float, slots: int
) -> None:
    policy = RetryBudgetPolicy(
        ttl=10.0, percent_can_retry=percent, min_retries_per_second=rate, slots=slots
    )
    budget = RetryBudget(policy)
    width = policy.ttl / slots
    history: list[tuple[int, str]] = []  # (slot, kind) of deposits and granted retries
    now = 0.0
    for kind, dt in steps:
        now += dt
        slot = math.floor(now / width)
        if kind == "request":
            budget.record_request(now)
            history.append((slot, "request"))
            continue
        in_window = [k for s, k in history if s > slot - slots]
        requests = in_window.count("request")
        retries = in_window.count("retry")
        expected = retries + 1 <= percent * requests + policy.reserve + 1e-9
        assert budget.try_retry(now) == expected
        if expected:
            history.append((slot, "retry"))
            # The invariant itself: granted retries in the window fit the allowance.
            assert retries + 1 <= percent * requests + rate * policy.ttl + 1e-9
        assert budget.counts(now) == (requests, retries + (1 if expected else 0))
