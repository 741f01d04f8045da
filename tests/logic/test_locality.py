"""Datacenter priority state machine: local first, failover, fail-back after hold-down."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.balancer.locality import (
    DEFAULT_FAILBACK_HOLD_DOWN,
    LocalityPolicy,
    LocalityState,
    datacenter_of,
    failback_due,
    in_datacenter,
    initial_state,
    is_failed_over,
    step,
    usable_datacenters,
)
from mcresolve.endpoint import Endpoint

POLICY = LocalityPolicy(local="dc1", preference=("dc3", "dc2"), failback_hold_down=30.0)


def test_default_hold_down_is_30_seconds() -> None:
    assert DEFAULT_FAILBACK_HOLD_DOWN == 30.0
    assert LocalityPolicy(local="dc1").failback_hold_down == 30.0


def test_negative_hold_down_is_rejected() -> None:
    with pytest.raises(ValueError, match="hold_down"):
        LocalityPolicy(local="dc1", failback_hold_down=-1.0)


def test_starts_local_and_stays_while_local_is_usable() -> None:
    state = initial_state(POLICY)
    assert state.active == "dc1" and not is_failed_over(state, POLICY)
    assert step(state, {"dc1", "dc2", "dc3"}, 1.0, POLICY) is state
    assert step(state, {"dc1"}, 2.0, POLICY) is state


def test_fails_over_to_the_most_preferred_usable_remote() -> None:
    state = step(initial_state(POLICY), {"dc2", "dc3"}, 5.0, POLICY)
    assert state == LocalityState(active="dc3", local_usable_since=None, since=5.0)
    assert is_failed_over(state, POLICY)
    only_dc2 = step(initial_state(POLICY), {"dc2"}, 5.0, POLICY)
    assert only_dc2.active == "dc2"


def test_unlisted_remotes_come_after_listed_ones_in_name_order() -> None:
    assert POLICY.remote_order({"dc9", "dc4", "dc2", "dc1"}) == ["dc2", "dc4", "dc9"]
    state = step(initial_state(POLICY), {"dc9", "dc4"}, 0.0, POLICY)
    assert state.active == "dc4"


def test_nothing_usable_anywhere_changes_nothing() -> None:
    state = initial_state(POLICY)
    assert step(state, set(), 1.0, POLICY) is state
    remote = LocalityState(active="dc2", since=1.0)
    assert step(remote, set(), 2.0, POLICY) == remote


def test_fails_back_only_after_the_hold_down() -> None:
    state = step(initial_state(POLICY), {"dc2"}, 0.0, POLICY)
    assert state.active == "dc2"
    state = step(state, {"dc1", "dc2"}, 10.0, POLICY)  # local usable again
    assert state.active == "dc2" and state.local_usable_since == 10.0
    assert failback_due(state, POLICY) == 40.0
    state = step(state, {"dc1", "dc2"}, 39.9, POLICY)
    assert state.active == "dc2"
    state = step(state, {"dc1", "dc2"}, 40.0, POLICY)
    assert state == LocalityState(active="dc1", local_usable_since=None, since=40.0)
    assert failback_due(state, POLICY) is None


def test_an_interruption_restarts_the_hold_down() -> None:
    state = step(initial_state(POLICY), {"dc2"}, 0.0, POLICY)
    state = step(state, {"dc1", "dc2"}, 10.0, POLICY)
    state = step(state, {"dc2"}, 30.0, POLICY)  # local flapped
    assert state.local_usable_since is None and failback_due(state, POLICY) is None
    state = step(state, {"dc1", "dc2"}, 35.0, POLICY)
    state = step(state, {"dc1", "dc2"}, 60.0, POLICY)
    assert state.active == "dc2"
    assert step(state, {"dc1", "dc2"}, 65.0, POLICY).active == "dc1"


def test_losing_the_active_remote_moves_at_once() -> None:
    state = step(initial_state(POLICY), {"dc3", "dc2"}, 0.0, POLICY)
    assert state.active == "dc3"
    moved = step(state, {"dc2"}, 1.0, POLICY)
    assert moved == LocalityState(active="dc2", since=1.0)
    # If the local one is usable (even within its hold-down) it wins over another remote.
    pending = step(moved, {"dc1", "dc2"}, 2.0, POLICY)
    assert pending.active == "dc2"
    assert step(pending, {"dc1", "dc3"}, 3.0, POLICY).active == "dc1"


def test_a_more_preferred_remote_returning_does_not_cause_a_move() -> None:
    state = step(initial_state(POLICY), {"dc2"}, 0.0, POLICY)
    assert step(state, {"dc2", "dc3"}, 1.0, POLICY).active == "dc2"


def test_zero_hold_down_fails_back_immediately() -> None:
    policy = LocalityPolicy(local="dc1", failback_hold_down=0.0)
    state = step(initial_state(policy), {"dc2"}, 0.0, policy)
    assert step(state, {"dc1", "dc2"}, 0.5, policy).active == "dc1"


def test_endpoint_helpers_group_by_datacenter() -> None:
    local = Endpoint("10.0.0.1", 9000, datacenter="dc1")
    remote = Endpoint("10.0.1.1", 9000, datacenter="dc2")
    unknown = Endpoint("10.0.2.1", 9000)  # static list: no datacenter, counts as local
    eps = [local, remote, unknown]
    assert datacenter_of(unknown, POLICY) == "dc1"
    assert usable_datacenters(eps, {remote.key}, POLICY) == {"dc2"}
    assert usable_datacenters(eps, {unknown.key, remote.key}, POLICY) == {"dc1", "dc2"}
    assert usable_datacenters(eps, set(), POLICY) == frozenset()
    assert in_datacenter(eps, "dc1", POLICY) == [local, unknown]
    assert in_datacenter(eps, "dc2", POLICY) == [remote]


# --- properties ------------------------------------------------------------------------------

DCS = ["dc1", "dc2", "dc3", "dc4"]
timeline = st.lists(
    st.tuples(st.sets(st.sampled_from(DCS)), st.floats(0.0, 20.0, allow_nan=False)),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    steps=timeline,
    hold=st.sampled_from([0.0, 5.0, 30.0]),
    pref=st.permutations(["dc2", "dc3", "dc4"]),
)
def test_locality_invariants(
    steps: list[tuple[set[str], float]], hold: float, pref: list[str]
) -> None:
    policy = LocalityPolicy(local="dc1", preference=tuple(pref), failback_hold_down=hold)
    state = initial_state(policy)
    now = 0.0
    local_since: float | None = None  # model: start of the current uninterrupted local run
    for usable, dt in steps:
        now += dt
        local_since = (local_since if local_since is not None else now) if "dc1" in usable else None
        before = state
        state = step(state, usable, now, policy)
        # Never leaves the local datacenter while it is usable.
        if before.active == "dc1" and "dc1" in usable:
            assert state.active == "dc1"
        # Leaves it only for a usable remote, the most preferred one.
        if before.active == "dc1" and state.active != "dc1":
            assert state.active == policy.remote_order(usable)[0]
        # Fails back only after an uninterrupted hold-down (or when the remote died).
        if before.active != "dc1" and state.active == "dc1":
            assert "dc1" in usable
            assert local_since is not None
            assert now - local_since >= hold or before.active not in usable
        # Whenever something is usable, the active datacenter is usable.
        if usable:
            assert state.active in usable
        # A pending fail-back is announced with its due time.
        due = failback_due(state, policy)
        if state.active != "dc1" and "dc1" in usable:
            assert due is not None and local_since is not None
            assert due == pytest.approx(local_since + hold)
        else:
            assert due is None
