"""Peak-EWMA latency estimate and endpoint load cost."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.balancer.ewma import DEFAULT_INITIAL_LATENCY, EndpointLoad, PeakEwma


def test_new_estimate_starts_at_the_initial_latency() -> None:
    assert PeakEwma(now=0.0).value(0.0) == DEFAULT_INITIAL_LATENCY
    assert PeakEwma(now=0.0, initial=0.5).value(0.0) == 0.5


def test_a_peak_replaces_the_estimate_at_once() -> None:
    ewma = PeakEwma(now=0.0, initial=0.010)
    ewma.observe(2.0, now=0.001)
    assert ewma.value(0.001) == 2.0


def test_lower_latencies_blend_in_by_elapsed_time() -> None:
    ewma = PeakEwma(now=0.0, decay=10.0, initial=1.0)
    ewma.observe(0.0, now=10.0)  # one time constant later: weight e^-1 on the old value
    assert ewma.value(10.0) == pytest.approx(math.exp(-1.0))
    same_instant = PeakEwma(now=0.0, decay=10.0, initial=1.0)
    same_instant.observe(0.5, now=0.0)  # no time elapsed: the old estimate keeps all weight
    assert same_instant.value(0.0) == 1.0


def test_reading_decays_towards_zero_so_idle_endpoints_are_retried() -> None:
    ewma = PeakEwma(now=0.0, decay=10.0, initial=0.0)
    ewma.observe(5.0, now=0.0)
    assert ewma.value(10.0) == pytest.approx(5.0 * math.exp(-1.0))
    assert ewma.value(200.0) < 1e-6
    assert ewma.value(-1.0) == 5.0  # a clock value before the last update does not grow it


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="decay"):
        PeakEwma(now=0.0, decay=0.0)
    with pytest.raises(ValueError, match="initial"):
        PeakEwma(now=0.0, initial=-1.0)


def test_load_counts_in_flight_and_feeds_latency() -> None:
    load = EndpointLoad(now=0.0, ewma=PeakEwma(now=0.0, initial=0.0))
    assert load.inflight == 0
    load.start()
    load.start()
    assert load.inflight == 2
    assert load.cost(0.0) == pytest.approx(1e-6 * 3)
    load.finish(now=1.0, latency=0.2)
    assert load.inflight == 1
    assert load.cost(1.0) == pytest.approx((0.2 + 1e-6) * 2)
    load.finish(now=1.0, latency=None)
    load.finish(now=1.0, latency=None)  # an extra finish never makes it negative
    assert load.inflight == 0


def test_load_updates_are_safe_across_threads() -> None:
    load = EndpointLoad(now=0.0)

    def work() -> None:
        for _ in range(2000):
            load.start()
            load.finish(now=1.0, latency=0.001)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert load.inflight == 0


@settings(max_examples=200, deadline=None)
@given(
    initial=st.floats(0.0, 10.0),
    samples=st.lists(
        st.tuples(st.floats(0.0, 10.0), st.floats(0.0, 100.0)), min_size=1, max_size=30
    ),
)
def test_estimate_stays_between_zero_and_the_largest_latency_seen(
    initial: float, samples: list[tuple[float, float]]
) -> None:
    ewma = PeakEwma(now=0.0, initial=initial)
    now = 0.0
    top = initial
    for latency, dt in samples:
        now += dt
        ewma.observe(latency, now)
        top = max(top, latency)
        assert 0.0 <= ewma.value(now) <= top + 1e-12
        assert ewma.value(now) >= latency - 1e-12 or latency <= ewma.value(now) + 1e-12


def test_an_abandoned_attempt_raises_the_estimate_only_above_it() -> None:
    load = EndpointLoad(0.0, PeakEwma(0.0, decay=10.0, initial=0.010))
    load.start()
    load.abandon(1.0, 0.500)  # a hedge loser that had waited 500 ms: the node is at least that slow
    assert load.inflight == 0
    assert load.ewma.value(1.0) == pytest.approx(0.500)
    load.start()
    load.abandon(1.0, 0.001)  # cancelled after 1 ms: says nothing about a 500 ms estimate
    assert load.inflight == 0
    assert load.ewma.value(1.0) == pytest.approx(0.500)
