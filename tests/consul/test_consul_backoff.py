"""Pure backoff rules: bounds, growth, cap, jitter kinds, reset on success."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcresolve.timing import Backoff, BackoffPolicy, Jitter

unit = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
policies = st.builds(
    BackoffPolicy,
    base=st.floats(min_value=0.001, max_value=10.0),
    multiplier=st.floats(min_value=1.0, max_value=5.0),
    cap=st.floats(min_value=10.0, max_value=600.0),
    jitter=st.sampled_from(list(Jitter)),
)


def test_defaults_are_fast_enough_for_failover() -> None:
    policy = BackoffPolicy()
    assert (policy.base, policy.multiplier, policy.cap, policy.jitter) == (
        0.25,
        2.0,
        10.0,
        Jitter.FULL,
    )
    assert [policy.exponential(n) for n in range(1, 8)] == [0.25, 0.5, 1, 2, 4, 8, 10]
    # Consul's Go watch would wait 5 s × n² (capped 180 s): 45 s after the third failure.
    assert policy.exponential(3) < 5 * 3**2


def test_no_jitter_is_exactly_exponential_and_capped() -> None:
    policy = BackoffPolicy(base=1, multiplier=3, cap=20, jitter=Jitter.NONE)
    assert [policy.delay(n, 0, lambda: 0.5) for n in range(1, 5)] == [1, 3, 9, 20]


def test_huge_failure_counts_do_not_overflow() -> None:
    assert BackoffPolicy().exponential(10**6) == 10.0


@pytest.mark.parametrize(
    "kwargs",
    [{"base": 0}, {"base": -1}, {"multiplier": 0.5}, {"base": 5, "cap": 1}],
)
def test_invalid_policies_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(**kwargs)


def test_failures_must_be_positive() -> None:
    with pytest.raises(ValueError, match="failures must be >= 1"):
        BackoffPolicy().exponential(0)


@given(policies, st.integers(min_value=1, max_value=200), unit, st.floats(0, 1000))
def test_every_delay_is_within_its_jitter_bounds(
    policy: BackoffPolicy, failures: int, r: float, previous: float
) -> None:
    exp = policy.exponential(failures)
    delay = policy.delay(failures, previous, lambda: r)
    assert 0 <= delay <= policy.cap
    if policy.jitter is Jitter.NONE:
        assert delay == exp
    elif policy.jitter is Jitter.FULL:
        assert delay <= exp
    elif policy.jitter is Jitter.EQUAL:
        assert exp / 2 <= delay <= exp
    else:
        assert policy.base <= delay <= policy.cap


@given(policies, st.integers(min_value=1, max_value=100))
def test_exponential_never_decreases(policy: BackoffPolicy, failures: int) -> None:
    assert policy.exponential(failures) <= policy.exponential(failures + 1) <= policy.cap


@given(st.lists(st.booleans(), min_size=1, max_size=60), st.integers(0, 2**32))
def test_backoff_state_counts_consecutive_failures_and_resets(
    outcomes: list[bool], seed: int
) -> None:
    rng = random.Random(seed)
    state = Backoff(BackoffPolicy(jitter=Jitter.DECORRELATED), rng.random)
    streak = 0
    for ok in outcomes:
        if ok:
            state.success()
            streak = 0
            assert state.last_delay == 0
        else:
            delay = state.failure()
            streak += 1
            assert 0 < delay <= state.policy.cap
        assert state.failures == streak


def test_full_jitter_spreads_a_herd() -> None:
    rng = random.Random(7)
    policy = BackoffPolicy()
    delays = [policy.delay(4, 0, rng.random) for _ in range(1000)]
    # Uniform over [0, 2 s]: the herd is spread over the whole interval.
    assert min(delays) < 0.1 and max(delays) > 1.9
    assert 0.9 < sum(delays) / len(delays) < 1.1
