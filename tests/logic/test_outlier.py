"""Passive outlier detection: counting, ejection, growth, cap, jitter, decay, max fraction."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.balancer.outlier import (
    Ejection,
    FailureKind,
    OutlierDetector,
    OutlierPolicy,
    OutlierState,
    ejection_duration,
    probe_order,
)

A = ("10.0.0.1", 9000)
B = ("10.0.0.2", 9000)
C = ("10.0.0.3", 9000)
D = ("10.0.0.4", 9000)

NO_JITTER = OutlierPolicy(jitter=0.0)


def detector(policy: OutlierPolicy = NO_JITTER, *keys: tuple[str, int]) -> OutlierDetector:
    det = OutlierDetector(policy, random.Random(1))
    det.set_endpoints(keys or (A, B, C, D))
    return det


def test_defaults_are_the_documented_ones() -> None:
    p = OutlierPolicy()
    assert (p.connect_failures, p.resets, p.timeouts) == (1, 1, 1)
    assert (p.gateway_failures, p.server_errors) == (1, 3)
    assert p.connect_failures_bypass_cap
    assert (p.base_ejection, p.max_ejection, p.jitter) == (10.0, 300.0, 0.2)
    assert (p.decay_interval, p.max_ejected_fraction) == (10.0, 0.5)
    assert p.avoid_after_cluster_answer == 10.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"connect_failures": -1},
        {"server_errors": -2},
        {"base_ejection": 0.0},
        {"base_ejection": 10.0, "max_ejection": 5.0},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"decay_interval": 0.0},
        {"max_ejected_fraction": 1.5},
        {"avoid_after_cluster_answer": -1.0},
    ],
)
def test_policy_rejects_invalid_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="OutlierPolicy"):
        OutlierPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kind", [FailureKind.CONNECT, FailureKind.RESET, FailureKind.TIMEOUT, FailureKind.GATEWAY]
)
def test_node_failures_eject_at_the_first_occurrence(kind: FailureKind) -> None:
    det = detector()
    ejection = det.record_failure(A, kind, now=100.0)
    assert ejection == Ejection(
        key=A, reason=kind, consecutive_failures=1, multiplier=1, duration=10.0, until=110.0
    )
    assert det.is_ejected(A, 100.0)
    assert det.is_ejected(A, 109.999)
    assert not det.is_ejected(A, 110.0)
    assert det.ejected(105.0) == {A}


def test_server_errors_need_three_consecutive() -> None:
    det = detector()
    assert det.record_failure(A, FailureKind.SERVER_ERROR, 1.0) is None
    assert det.record_failure(A, FailureKind.SERVER_ERROR, 2.0) is None
    assert not det.is_ejected(A, 2.0)
    ejection = det.record_failure(A, FailureKind.SERVER_ERROR, 3.0)
    assert ejection is not None and ejection.consecutive_failures == 3
    assert det.is_ejected(A, 3.0)


def test_success_resets_the_streak() -> None:
    det = detector()
    det.record_failure(A, FailureKind.SERVER_ERROR, 1.0)
    det.record_failure(A, FailureKind.SERVER_ERROR, 2.0)
    det.record_success(A, 3.0)
    assert det.state(A).consecutive[FailureKind.SERVER_ERROR] == 0
    assert det.record_failure(A, FailureKind.SERVER_ERROR, 4.0) is None
    assert det.record_failure(A, FailureKind.SERVER_ERROR, 5.0) is None
    assert not det.is_ejected(A, 5.0)


def test_kinds_are_counted_separately() -> None:
    policy = OutlierPolicy(jitter=0.0, connect_failures=2, server_errors=2)
    det = detector(policy)
    det.record_failure(A, FailureKind.CONNECT, 1.0)
    assert det.record_failure(A, FailureKind.SERVER_ERROR, 2.0) is None
    assert det.state(A).consecutive[FailureKind.CONNECT] == 1
    assert det.record_failure(A, FailureKind.CONNECT, 3.0) is not None


def test_threshold_zero_disables_a_kind() -> None:
    det = detector(OutlierPolicy(jitter=0.0, timeouts=0))
    for t in range(50):
        assert det.record_failure(A, FailureKind.TIMEOUT, float(t)) is None
    assert det.state(A).consecutive[FailureKind.TIMEOUT] == 50


def test_ejection_grows_with_times_ejected_and_is_capped() -> None:
    policy = OutlierPolicy(jitter=0.0, base_ejection=10.0, max_ejection=35.0, decay_interval=1e9)
    det = detector(policy)
    now = 0.0
    durations = []
    for _ in range(6):
        ejection = det.record_failure(A, FailureKind.CONNECT, now)
        assert ejection is not None
        durations.append(ejection.duration)
        now = ejection.until  # fails again the moment it returns
    assert durations == [10.0, 20.0, 30.0, 35.0, 35.0, 35.0]
    assert det.state(A).multiplier == 6


def test_multiplier_decays_one_step_per_healthy_interval() -> None:
    det = detector(OutlierPolicy(jitter=0.0, decay_interval=10.0))
    first = det.record_failure(A, FailureKind.CONNECT, 0.0)
    assert first is not None and first.until == 10.0
    second = det.record_failure(A, FailureKind.CONNECT, 10.0)  # immediately after: x2
    assert second is not None and second.duration == 20.0 and second.until == 30.0
    state = det.state(A)
    assert state.multiplier_at(29.0, det.policy) == 2  # constant while ejected
    assert state.multiplier_at(39.9, det.policy) == 2
    assert state.multiplier_at(40.0, det.policy) == 1
    assert state.multiplier_at(50.0, det.policy) == 0
    assert state.multiplier_at(1e6, det.policy) == 0
    # Healthy for 15 s after returning at 30: multiplier 2 -> 1, next ejection is x2 again.
    third = det.record_failure(A, FailureKind.CONNECT, 45.0)
    assert third is not None and third.multiplier == 2 and third.duration == 20.0
    # Healthy for a long time: back to the base duration.
    fourth = det.record_failure(A, FailureKind.CONNECT, 1000.0)
    assert fourth is not None and fourth.multiplier == 1 and fourth.duration == 10.0


def test_jitter_shortens_within_bounds_and_varies() -> None:
    policy = OutlierPolicy(jitter=0.2)
    rng = random.Random(7)
    samples = [ejection_duration(3, policy, rng) for _ in range(200)]
    assert all(24.0 < d <= 30.0 for d in samples)
    assert len(set(samples)) > 100
    capped = [ejection_duration(1000, policy, rng) for _ in range(200)]
    assert all(240.0 < d <= 300.0 for d in capped)


def test_failures_while_ejected_do_not_extend_the_ejection() -> None:
    det = detector()
    first = det.record_failure(A, FailureKind.CONNECT, 0.0)
    assert first is not None
    assert det.record_failure(A, FailureKind.CONNECT, 5.0) is None  # a late in-flight failure
    assert det.state(A).ejected_until == first.until
    assert det.state(A).multiplier == 1


def test_success_does_not_end_an_ejection() -> None:
    det = detector()
    det.record_failure(A, FailureKind.TIMEOUT, 0.0)
    det.record_success(A, 1.0)
    assert det.is_ejected(A, 1.0)


def test_max_fraction_allows_half_of_four() -> None:
    det = detector()
    assert det.record_failure(A, FailureKind.TIMEOUT, 0.0) is not None
    assert det.record_failure(B, FailureKind.RESET, 0.0) is not None
    assert det.record_failure(C, FailureKind.TIMEOUT, 0.0) is None  # would be 3 of 4
    assert det.ejected(0.0) == {A, B}
    # The refused ejection keeps its count and is asked again once capacity frees up.
    assert det.state(C).consecutive[FailureKind.TIMEOUT] == 1
    assert det.record_failure(C, FailureKind.TIMEOUT, 10.0) is not None  # A and B returned
    assert det.ejected(10.0) == {C}


def test_connect_failures_bypass_the_cap_by_default() -> None:
    det = detector()
    for key in (A, B, C, D):
        assert det.record_failure(key, FailureKind.CONNECT, 0.0) is not None
    assert det.ejected(0.0) == {A, B, C, D}
    capped = detector(OutlierPolicy(jitter=0.0, connect_failures_bypass_cap=False))
    results = [capped.record_failure(k, FailureKind.CONNECT, 0.0) for k in (A, B, C, D)]
    assert [r is not None for r in results] == [True, True, False, False]


def test_connect_ejections_count_against_the_cap_for_other_kinds() -> None:
    det = detector()
    det.record_failure(A, FailureKind.CONNECT, 0.0)
    det.record_failure(B, FailureKind.CONNECT, 0.0)
    assert det.record_failure(C, FailureKind.TIMEOUT, 0.0) is None


def test_max_fraction_always_allows_one() -> None:
    det = detector(OutlierPolicy(jitter=0.0, max_ejected_fraction=0.1), A, B, C)
    assert det.record_failure(A, FailureKind.GATEWAY, 0.0) is not None
    assert det.record_failure(B, FailureKind.GATEWAY, 0.0) is None
    single = detector(NO_JITTER, A)
    assert single.record_failure(A, FailureKind.CONNECT, 0.0) is not None


def test_unknown_keys_are_ignored() -> None:
    det = detector()
    unknown = ("192.0.2.1", 1)
    assert det.record_failure(unknown, FailureKind.CONNECT, 0.0) is None
    det.record_success(unknown, 0.0)
    assert not det.is_ejected(unknown, 0.0)
    assert unknown not in det.tracked()


def test_set_endpoints_keeps_state_of_kept_and_forgets_dropped() -> None:
    det = detector()
    det.record_failure(A, FailureKind.CONNECT, 0.0)
    det.record_failure(B, FailureKind.CONNECT, 0.0)
    det.set_endpoints([A, C])
    assert det.tracked() == {A, C}
    assert det.is_ejected(A, 1.0)
    assert set(det.states()) == {A, C}
    det.set_endpoints([A, B, C])
    assert not det.is_ejected(B, 1.0)  # B came back fresh


def test_next_unejection_and_sweep_report_returns_once() -> None:
    det = detector()
    assert det.next_unejection(0.0) is None
    det.record_failure(A, FailureKind.CONNECT, 0.0)  # until 10
    det.record_failure(B, FailureKind.CONNECT, 5.0)  # until 15
    assert det.next_unejection(1.0) == 10.0
    assert det.next_unejection(10.0) == 15.0
    assert det.sweep(9.0) == frozenset()
    assert det.sweep(10.0) == {A}
    assert det.sweep(11.0) == frozenset()
    assert det.sweep(20.0) == {B}
    assert det.next_unejection(20.0) is None


def test_state_is_immutable_and_transitions_are_values() -> None:
    state = OutlierState()
    failed = state.with_failure(FailureKind.CONNECT)
    assert state.consecutive[FailureKind.CONNECT] == 0
    assert failed.consecutive[FailureKind.CONNECT] == 1
    assert failed.with_success() == OutlierState()
    assert state.with_success() is state
    with pytest.raises(TypeError):
        failed.consecutive[FailureKind.CONNECT] = 5  # type: ignore[index]


# --- properties ------------------------------------------------------------------------------

KEYS = [(f"10.0.0.{i}", 9000) for i in range(1, 9)]
events = st.lists(
    st.tuples(
        st.integers(0, 7),  # endpoint index
        st.sampled_from([*FailureKind, None]),  # None = success
        st.floats(0.0, 30.0, allow_nan=False),  # time step
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 8),
    fraction=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0]),
    seed=st.integers(0, 2**16),
    bypass=st.booleans(),
    steps=events,
)
def test_never_more_than_the_max_fraction_is_ejected(
    n: int,
    fraction: float,
    seed: int,
    bypass: bool,
    steps: list[tuple[int, FailureKind | None, float]],
) -> None:
    policy = OutlierPolicy(
        max_ejected_fraction=fraction, server_errors=2, connect_failures_bypass_cap=bypass
    )
    det = OutlierDetector(policy, random.Random(seed))
    keys = KEYS[:n]
    det.set_endpoints(keys)
    now = 0.0
    limit = max(1, int(fraction * n + 1e-9))
    for index, kind, dt in steps:
        now += dt
        key = keys[index % n]
        if kind is None:
            det.record_success(key, now)
        else:
            ejection = det.record_failure(key, kind, now)
            if ejection is not None:
                assert 0 < ejection.duration <= policy.max_ejection
                assert ejection.until == pytest.approx(now + ejection.duration)
        ejected = det.ejected(now)
        not_connect = [k for k in ejected if det.state(k).reason is not FailureKind.CONNECT]
        assert len(not_connect) <= limit
        if not bypass:
            assert len(ejected) <= limit


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**16), steps=events)
def test_ejection_only_follows_a_threshold_streak(
    seed: int, steps: list[tuple[int, FailureKind | None, float]]
) -> None:
    """Model check: an ejection happens exactly when a kind's streak reaches its threshold (and
    the fraction allows it); with fraction 1.0 it is always allowed."""
    policy = OutlierPolicy(max_ejected_fraction=1.0, server_errors=3, connect_failures=2)
    det = OutlierDetector(policy, random.Random(seed))
    det.set_endpoints(KEYS)
    streak: dict[tuple[tuple[str, int], FailureKind], int] = {}
    until: dict[tuple[str, int], float] = {}
    now = 0.0
    for index, kind, dt in steps:
        now += dt
        key = KEYS[index]
        if kind is None:
            det.record_success(key, now)
            for k in FailureKind:
                streak[(key, k)] = 0
            continue
        streak[(key, kind)] = streak.get((key, kind), 0) + 1
        ejection = det.record_failure(key, kind, now)
        ejected_before = until.get(key, -1.0) > now
        expected = not ejected_before and streak[(key, kind)] >= policy.threshold(kind)
        assert (ejection is not None) == expected
        if ejection is not None:
            until[key] = ejection.until
            for k in FailureKind:
                streak[(key, k)] = 0


# --- probes and avoidance ---------------------------------------------------------------------


def test_probe_order_is_least_recently_failed_first_never_failed_first_of_all() -> None:
    det = detector(NO_JITTER, A, B, C, D)
    det.record_failure(C, FailureKind.RESET, 5.0)
    det.record_failure(A, FailureKind.SERVER_ERROR, 7.0)
    det.record_cluster_answer(D, 6.0)
    assert probe_order([A, B, C, D], det.states()) == (B, C, D, A)
    assert probe_order([D, A], det.states()) == (D, A)
    assert probe_order([A, ("10.9.9.9", 1)], det.states()) == (("10.9.9.9", 1), A)


def test_a_successful_probe_ends_the_ejection_and_a_relapse_is_ejected_longer() -> None:
    det = detector(NO_JITTER, A, B)
    det.record_failure(A, FailureKind.RESET, 0.0)
    assert det.is_ejected(A, 1.0)
    assert det.reinstate(A, 1.0)
    assert not det.is_ejected(A, 1.0) and det.sweep(1.0) == {A}
    assert not det.reinstate(A, 2.0)  # not ejected any more: nothing to do
    ejection = det.record_failure(A, FailureKind.RESET, 2.0)
    assert ejection is not None and ejection.multiplier == 2 and ejection.duration == 20.0


def test_a_probe_frees_the_cap_for_the_endpoint_that_keeps_failing() -> None:
    """Two endpoints, cap 1: A ejected, B's failures cannot eject it; A's successful probe
    ends A's ejection, and B's next failure ejects B (its streak was kept)."""
    det = detector(NO_JITTER, A, B)
    det.record_failure(A, FailureKind.RESET, 0.0)
    assert det.record_failure(B, FailureKind.RESET, 0.5) is None
    det.reinstate(A, 1.0)
    assert det.record_failure(B, FailureKind.RESET, 1.5) is not None
    assert det.ejected(1.6) == {B}


def test_a_cluster_answer_avoids_the_node_without_ejecting_or_counting() -> None:
    det = detector(NO_JITTER, A, B)
    assert det.record_cluster_answer(A, 0.0)
    assert det.avoided(5.0) == {A} and det.ejected(5.0) == frozenset()
    assert not any(det.state(A).consecutive.values())
    assert det.next_unejection(0.0) == 10.0
    assert not det.record_cluster_answer(A, 1.0)  # already avoided: no rebuild needed
    assert det.avoided(10.5) == {A}  # extended to 11.0 by the second answer
    assert det.avoided(11.0) == frozenset()
    # avoidance does not use up the ejection cap
    assert det.record_failure(B, FailureKind.RESET, 1.0) is not None


def test_retry_after_shortens_the_avoidance_and_zero_disables_it() -> None:
    det = detector(NO_JITTER, A, B)
    det.record_cluster_answer(A, 0.0, retry_after=2.0)
    assert det.avoided(1.9) == {A} and det.avoided(2.0) == frozenset()
    det = detector(OutlierPolicy(jitter=0.0, avoid_after_cluster_answer=0.0), A, B)
    assert not det.record_cluster_answer(A, 0.0)
    assert det.avoided(0.0) == frozenset()
    assert det.state(A).last_failure == 0.0  # still the latest failure, for the probe order


def test_a_successful_probe_ends_an_avoidance() -> None:
    det = detector(NO_JITTER, A, B)
    det.record_cluster_answer(A, 0.0)
    assert det.reinstate(A, 3.0)
    assert det.avoided(3.0) == frozenset()
