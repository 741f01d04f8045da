"""Pickers built from C-level passes describe their candidates exactly: whatever the endpoints
(repeated keys included), usable keys (stale ones included), avoided keys and probe order, the
picker's keys are its candidates' keys, its reserve is every other endpoint in probe order, and
an exclusion is honoured."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.balancer.picker import PickStrategy, build_picker
from mcresolve.endpoint import Endpoint

ENDPOINTS = st.lists(
    st.builds(
        Endpoint,
        address=st.sampled_from(["127.0.0.1", "127.0.0.2", "127.0.0.3"]),
        port=st.integers(1, 4),
        node=st.sampled_from(["a", "b"]),
    ),
    max_size=12,
)
KEYS = st.frozensets(
    st.tuples(st.sampled_from(["127.0.0.1", "127.0.0.2", "127.0.0.9"]), st.integers(1, 5))
)


@settings(max_examples=300, deadline=None)
@given(
    endpoints=ENDPOINTS,
    usable=st.none() | KEYS,
    avoid=KEYS,
    strategy=st.sampled_from(list(PickStrategy)),
    shuffle=st.randoms(use_true_random=False),
    panic=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_a_picker_describes_its_candidates_exactly(
    endpoints: list[Endpoint],
    usable: frozenset[tuple[str, int]] | None,
    avoid: frozenset[tuple[str, int]],
    strategy: PickStrategy,
    shuffle: random.Random,
    panic: float,
) -> None:
    unique = list({e.key: e for e in reversed(endpoints)}.values())[::-1]  # first wins
    order = list(unique)
    shuffle.shuffle(order)
    if usable is None:
        usable = frozenset(e.key for e in unique)  # sometimes exactly the endpoints' keys
    picker = build_picker(
        endpoints,
        usable,
        strategy=strategy,
        avoid=avoid,
        probe_order=order,
        panic_threshold=panic,
        rng=random.Random(1),
    )
    assert picker.keys == frozenset(e.key for e in picker.endpoints)
    assert {e.key for e in picker.endpoints} <= {e.key for e in unique}
    assert list(picker.reserve) == [e for e in order if e.key not in picker.keys]
    assert picker.reserve_keys == tuple(e.key for e in picker.reserve)
    if len(picker) >= 2:
        first = picker.endpoints[0].key
        for _ in range(5):
            assert picker.pick({first}).key != first
        everything_but_last = frozenset(e.key for e in picker.endpoints[:-1])
        assert picker.pick(everything_but_last) is picker.endpoints[-1]
