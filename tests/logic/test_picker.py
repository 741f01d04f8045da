"""Immutable pickers: strategies, exclusion for retries, panic mode."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.balancer.ewma import EndpointLoad, PeakEwma
from mcresolve.balancer.picker import (
    NoEndpointAvailable,
    P2CPicker,
    PickStrategy,
    RandomPicker,
    RoundRobinPicker,
    build_picker,
)
from mcresolve.endpoint import Endpoint

EPS = [Endpoint(f"10.0.0.{i}", 9000, datacenter="dc1") for i in range(1, 5)]
KEYS = [e.key for e in EPS]


def fixed_clock() -> float:
    return 100.0


def idle_loads(latencies: list[float]) -> dict[tuple[str, int], EndpointLoad]:
    loads = {}
    for endpoint, latency in zip(EPS, latencies, strict=False):
        load = EndpointLoad(now=100.0, ewma=PeakEwma(now=100.0, initial=latency))
        loads[endpoint.key] = load
    return loads


@pytest.mark.parametrize(
    ("strategy", "cls"),
    [
        (PickStrategy.ROUND_ROBIN, RoundRobinPicker),
        (PickStrategy.RANDOM, RandomPicker),
        (PickStrategy.P2C, P2CPicker),
    ],
)
def test_build_picker_returns_the_strategy(strategy: PickStrategy, cls: type) -> None:
    picker = build_picker(EPS, strategy=strategy, rng=random.Random(1))
    assert type(picker) is cls
    assert picker.endpoints == tuple(EPS)
    assert picker.keys == frozenset(KEYS)
    assert not picker.panic
    assert len(picker) == 4
    assert "4/4" in repr(picker)


def test_default_strategy_is_p2c() -> None:
    assert isinstance(build_picker(EPS), P2CPicker)


def test_round_robin_visits_every_endpoint_once_per_cycle() -> None:
    picker = build_picker(EPS, strategy=PickStrategy.ROUND_ROBIN, rng=random.Random(3))
    picks = [picker.pick() for _ in range(12)]
    for cycle in range(3):
        assert set(picks[cycle * 4 : cycle * 4 + 4]) == set(EPS)
    assert picks[:4] == picks[4:8]


def test_round_robin_start_offset_depends_on_the_rng() -> None:
    firsts = {
        build_picker(EPS, strategy=PickStrategy.ROUND_ROBIN, rng=random.Random(s)).pick()
        for s in range(40)
    }
    assert len(firsts) > 1


def test_random_spreads_over_all_candidates() -> None:
    picker = build_picker(EPS, strategy=PickStrategy.RANDOM, rng=random.Random(5))
    counts = Counter(picker.pick() for _ in range(4000))
    assert set(counts) == set(EPS)
    assert all(800 < c < 1200 for c in counts.values())


def test_unusable_endpoints_are_not_picked() -> None:
    usable = KEYS[:3]
    for strategy in PickStrategy:
        picker = build_picker(EPS, usable, strategy=strategy, rng=random.Random(2))
        assert {picker.pick() for _ in range(200)} == set(EPS[:3])


def test_p2c_prefers_the_cheaper_of_two() -> None:
    # Endpoint 0 is slow (1 s), the rest fast: 0 only wins when both draws are 0, impossible.
    loads = idle_loads([1.0, 0.001, 0.001, 0.001])
    picker = build_picker(EPS, loads=loads, rng=random.Random(4), clock=fixed_clock)
    counts = Counter(picker.pick() for _ in range(3000))
    assert counts[EPS[0]] == 0
    assert set(counts) == set(EPS[1:])


def test_p2c_accounts_for_in_flight_requests() -> None:
    loads = idle_loads([0.01, 0.01])
    for _ in range(5):
        loads[KEYS[0]].start()
    picker = build_picker(EPS[:2], loads=loads, rng=random.Random(4), clock=fixed_clock)
    assert {picker.pick() for _ in range(200)} == {EPS[1]}


def test_p2c_reads_load_live_without_rebuild() -> None:
    loads = idle_loads([0.01, 0.01])
    picker = build_picker(EPS[:2], loads=loads, rng=random.Random(4), clock=fixed_clock)
    loads[KEYS[1]].start()
    loads[KEYS[1]].start()
    assert picker.pick() == EPS[0]
    for _ in range(4):
        loads[KEYS[0]].start()
    assert picker.pick() == EPS[1]


def test_p2c_without_load_entries_treats_endpoints_as_idle() -> None:
    loads = idle_loads([0.5])  # only EPS[0] tracked, and slow
    picker = build_picker(EPS[:2], loads=loads, rng=random.Random(4), clock=fixed_clock)
    assert {picker.pick() for _ in range(100)} == {EPS[1]}


def test_p2c_uses_the_clock_to_decay_estimates() -> None:
    now = [100.0]
    loads = idle_loads([0.0, 0.0])
    loads[KEYS[0]].ewma.observe(5.0, 100.0)  # EPS[0] was very slow once
    loads[KEYS[1]].ewma.observe(0.01, 100.0)
    loads[KEYS[1]].start()  # and EPS[1] is busy
    picker = build_picker(EPS[:2], loads=loads, rng=random.Random(4), clock=lambda: now[0])
    assert picker.pick() == EPS[1]
    now[0] = 300.0  # 200 s later the spike has decayed: the idle endpoint wins again
    assert picker.pick() == EPS[0]


@pytest.mark.parametrize("strategy", list(PickStrategy))
def test_exclude_picks_a_different_endpoint(strategy: PickStrategy) -> None:
    picker = build_picker(EPS, strategy=strategy, rng=random.Random(9), clock=fixed_clock)
    for _ in range(50):
        assert picker.pick(exclude={KEYS[0], KEYS[1]}) in EPS[2:]
    assert picker.pick(exclude=set(KEYS[:3])) == EPS[3]


@pytest.mark.parametrize("strategy", list(PickStrategy))
def test_all_excluded_falls_back_or_raises(strategy: PickStrategy) -> None:
    picker = build_picker(EPS, strategy=strategy, rng=random.Random(9), clock=fixed_clock)
    assert picker.pick(exclude=set(KEYS)) in EPS
    with pytest.raises(NoEndpointAvailable, match="all 4 endpoint"):
        picker.pick(exclude=set(KEYS), fallback=False)


class CountingRandom(random.Random):
    """A Random that counts draws (to tell rejection sampling from filtering)."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.samples = 0

    def sample(self, *args: object, **kwargs: object) -> list[int]:  # type: ignore[override]
        self.samples += 1
        return super().sample(*args, **kwargs)  # type: ignore[arg-type]


def test_small_exclusions_draw_and_reject_and_keep_the_distribution() -> None:
    many = [Endpoint(f"10.0.1.{i}", 9000) for i in range(1, 101)]
    excluded = frozenset(e.key for e in many[:3])
    rng = CountingRandom(5)
    loads = {e.key: EndpointLoad(now=100.0) for e in many}
    picker = build_picker(many, loads=loads, rng=rng, clock=fixed_clock)
    for _ in range(2000):
        assert picker.pick(exclude=excluded).key not in excluded
    assert rng.samples == 0  # never filtered: P2C's filtered path samples two of the allowed
    uniform = build_picker(EPS, strategy=PickStrategy.RANDOM, rng=random.Random(3))
    counts = Counter(uniform.pick(exclude={KEYS[0]}) for _ in range(3000))
    assert set(counts) == set(EPS[1:])
    assert all(800 < n < 1200 for n in counts.values())  # 1/3 each, as the filtered choice
    rotation = build_picker(EPS, strategy=PickStrategy.ROUND_ROBIN, rng=random.Random(3))
    assert {rotation.pick(exclude={KEYS[0], KEYS[1]}) for _ in range(20)} == set(EPS[2:])


def test_unrelated_exclusions_are_ignored() -> None:
    picker = build_picker(EPS[:1], rng=random.Random(9))
    assert picker.pick(exclude={("192.0.2.1", 1)}, fallback=False) == EPS[0]


@pytest.mark.parametrize("strategy", list(PickStrategy))
def test_empty_picker_raises(strategy: PickStrategy) -> None:
    picker = build_picker([], strategy=strategy)
    with pytest.raises(NoEndpointAvailable):
        picker.pick()
    assert not picker.panic


def test_panic_mode_picks_among_all_below_threshold() -> None:
    one_of_four = build_picker(EPS, [KEYS[0]], strategy=PickStrategy.RANDOM, rng=random.Random(1))
    assert one_of_four.panic
    assert {one_of_four.pick() for _ in range(300)} == set(EPS)
    assert "panic" in repr(one_of_four)
    half = build_picker(EPS, KEYS[:2], strategy=PickStrategy.RANDOM, rng=random.Random(1))
    assert not half.panic  # 50 % is not below 50 %
    none_usable = build_picker(EPS, [], rng=random.Random(1))
    assert none_usable.panic and len(none_usable) == 4


def test_panic_threshold_zero_disables_panic() -> None:
    picker = build_picker(EPS, [], panic_threshold=0.0)
    assert not picker.panic
    with pytest.raises(NoEndpointAvailable):
        picker.pick()


def test_invalid_panic_threshold_is_rejected() -> None:
    with pytest.raises(ValueError, match="panic_threshold"):
        build_picker(EPS, panic_threshold=1.5)


def test_duplicate_keys_keep_the_first() -> None:
    dup = Endpoint("10.0.0.1", 9000, datacenter="dc2")
    picker = build_picker([EPS[0], dup], strategy=PickStrategy.RANDOM)
    assert picker.endpoints == (EPS[0],)


def test_pick_is_cheap_with_100_endpoints() -> None:
    """Sanity bound only (the benchmark measures precisely): generous for a loaded machine."""
    eps = [Endpoint(f"10.1.0.{i}", 9000) for i in range(1, 101)]
    loads = {e.key: EndpointLoad(now=0.0) for e in eps}
    picker = build_picker(eps, loads=loads, rng=random.Random(1))
    n = 20000
    start = time.perf_counter()
    for _ in range(n):
        picker.pick()
    per_pick = (time.perf_counter() - start) / n
    assert per_pick < 100e-6


# --- properties ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 12),
    data=st.data(),
    strategy=st.sampled_from(list(PickStrategy)),
    seed=st.integers(0, 2**16),
)
def test_pick_never_returns_an_excluded_endpoint_when_another_exists(
    n: int, data: st.DataObject, strategy: PickStrategy, seed: int
) -> None:
    eps = [Endpoint(f"10.2.0.{i}", 9000) for i in range(1, n + 1)]
    keys = [e.key for e in eps]
    usable = data.draw(st.sets(st.sampled_from(keys)))
    exclude = data.draw(st.sets(st.sampled_from(keys)))
    latencies = data.draw(st.lists(st.floats(0.0, 5.0), min_size=n, max_size=n))
    loads = {
        k: EndpointLoad(now=0.0, ewma=PeakEwma(now=0.0, initial=lat))
        for k, lat in zip(keys, latencies, strict=True)
    }
    picker = build_picker(
        eps, usable, strategy=strategy, loads=loads, rng=random.Random(seed), clock=lambda: 0.0
    )
    if not picker.endpoints:
        with pytest.raises(NoEndpointAvailable):
            picker.pick(exclude=exclude)
        return
    candidates = set(picker.keys)
    assert candidates == (set(keys) if picker.panic else set(usable))
    assert picker.panic == (len(usable) < 0.5 * n)
    for _ in range(5):
        chosen = picker.pick(exclude=exclude)
        assert chosen.key in candidates
        if candidates - exclude:
            assert chosen.key not in exclude
            assert picker.pick(exclude=exclude, fallback=False).key in candidates - exclude
        else:
            with pytest.raises(NoEndpointAvailable):
                picker.pick(exclude=exclude, fallback=False)


def test_avoided_endpoints_are_left_out_while_another_usable_one_exists() -> None:
    picker = build_picker(EPS, KEYS, avoid=[KEYS[0]], strategy=PickStrategy.RANDOM)
    assert picker.keys == frozenset(KEYS[1:]) and not picker.panic
    assert picker.reserve == (EPS[0],)
    everything_avoided = build_picker(EPS[:2], KEYS[:2], avoid=KEYS[:2])
    assert everything_avoided.keys == frozenset(KEYS[:2]) and everything_avoided.reserve == ()


def test_avoided_endpoints_count_as_usable_for_the_panic_threshold() -> None:
    """Two of four usable, one of them avoided: not panic (Envoy counts degraded hosts as
    available), one candidate, the rest in reserve."""
    picker = build_picker(EPS, KEYS[:2], avoid=[KEYS[1]])
    assert not picker.panic and picker.keys == {KEYS[0]}
    assert set(picker.reserve_keys) == set(KEYS[1:])


def test_reserve_follows_the_probe_order_and_excludes_candidates() -> None:
    order = [EPS[3], EPS[0], EPS[2], EPS[1]]
    picker = build_picker(EPS, [KEYS[0], KEYS[1]], probe_order=order)
    assert picker.reserve == (EPS[3], EPS[2])
    assert picker.reserved(KEYS[2]) == EPS[2] and picker.reserved(KEYS[0]) is None
    default = build_picker(EPS, [KEYS[0], KEYS[1]])
    assert default.reserve == (EPS[2], EPS[3])  # the snapshot's order
    panic = build_picker(EPS, [KEYS[0]], probe_order=order)
    assert panic.panic and panic.reserve == ()


@settings(max_examples=200, deadline=None)
@given(
    usable=st.sets(st.sampled_from(KEYS)),
    avoid=st.sets(st.sampled_from(KEYS)),
    order=st.permutations(EPS),
)
def test_candidates_and_reserve_partition_the_pool(
    usable: set[tuple[str, int]], avoid: set[tuple[str, int]], order: list[Endpoint]
) -> None:
    picker = build_picker(EPS, usable, avoid=avoid, probe_order=order)
    reserve = picker.reserve_keys
    assert picker.keys.isdisjoint(reserve) and picker.keys | set(reserve) == set(KEYS)
    assert list(reserve) == [e.key for e in order if e.key in set(reserve)]
    if not picker.panic and usable - avoid:
        assert picker.keys == usable - avoid
