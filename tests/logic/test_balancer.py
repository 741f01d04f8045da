"""The sans-I/O balancer: resolutions, outcomes and ticks in, picker/events/wake-up out.
Time is the number passed in; nothing sleeps."""

from __future__ import annotations

import random

from manual_source import eps
from mcresolve.balancer.balancer import Balancer
from mcresolve.balancer.outlier import FailureKind, OutlierPolicy
from mcresolve.balancer.picker import PickStrategy
from mcresolve.pool.events import EventKind
from mcresolve.sources.base import Resolution

NO_JITTER = OutlierPolicy(jitter=0.0, base_ejection=10.0, max_ejected_fraction=1.0)


def balancer(
    now: list[float] | None = None, policy: OutlierPolicy = NO_JITTER, hold_down: float = 30.0
) -> Balancer:
    clock = now if now is not None else [0.0]
    return Balancer(
        name="test",
        outlier=policy,
        strategy=PickStrategy.ROUND_ROBIN,
        panic_threshold=0.0,
        failback_hold_down=hold_down,
        datacenter_preference=(),
        rng=random.Random(1),
        clock=lambda: clock[0],
    )


def kinds(update: object) -> list[EventKind]:
    return [e.kind for e in update.events]  # type: ignore[attr-defined]


def test_a_resolution_adds_endpoints_and_the_same_one_changes_nothing() -> None:
    b = balancer()
    a, c = eps(9001, 9002)
    first = b.resolve(Resolution.answered((a, c, a), "static://x"), 0.0)
    assert first.changed and kinds(first) == [EventKind.ADDED, EventKind.ADDED]
    assert first.picker.keys == {a.key, c.key} and b.endpoints == (a, c)  # duplicate dropped
    again = b.resolve(Resolution.answered((a, c), "static://x"), 1.0)
    assert not again.changed and again.events == () and again.picker is first.picker
    gone = b.resolve(Resolution.answered((c,), "static://x"), 2.0)
    assert kinds(gone) == [EventKind.REMOVED] and gone.picker.keys == {c.key}


def test_an_ejection_ends_at_its_wake_up_and_not_before() -> None:
    b = balancer()
    a, c = eps(9001, 9002)
    b.resolve(Resolution.answered((a, c), "static://x"), 0.0)
    update = b.failed(a.key, FailureKind.RESET, 5.0)
    assert update is not None and kinds(update) == [EventKind.EJECTED]
    assert update.picker.keys == {c.key} and update.wake_at == 15.0
    assert kinds(b.tick(14.9)) == [] and b.picker.keys == {c.key}
    restored = b.tick(15.0)
    assert kinds(restored) == [EventKind.RESTORED] and restored.picker.keys == {a.key, c.key}
    assert restored.wake_at is None


def test_every_endpoint_ejected_asks_to_re_resolve_once() -> None:
    b = balancer()
    a, c = eps(9001, 9002)
    b.resolve(Resolution.answered((a, c), "static://x"), 0.0)
    first = b.failed(a.key, FailureKind.RESET, 1.0)
    assert first is not None and not first.refresh
    second = b.failed(c.key, FailureKind.RESET, 1.0)
    assert second is not None and second.refresh
    assert EventKind.ALL_EJECTED in kinds(second)
    assert not b.tick(2.0).refresh  # still all ejected: not asked again


def test_a_success_resets_counters_only_for_failing_keys() -> None:
    b = balancer(policy=OutlierPolicy(jitter=0.0, server_errors=2, max_ejected_fraction=1.0))
    a, c = eps(9001, 9002)
    b.resolve(Resolution.answered((a, c), "static://x"), 0.0)
    assert b.failed(a.key, FailureKind.SERVER_ERROR, 1.0) is None
    assert a.key in b.failing
    b.succeeded(a.key, 2.0)
    assert a.key not in b.failing
    assert b.failed(a.key, FailureKind.SERVER_ERROR, 3.0) is None  # counting from zero again


def test_failover_to_another_datacenter_and_back_after_the_hold_down() -> None:
    b = balancer(hold_down=30.0)
    local, remote = eps(9001, dc="dc1")[0], eps(9002, dc="dc2")[0]
    b.set_local("dc1")
    b.resolve(Resolution.answered((local, remote), "static://x"), 0.0)
    assert b.picker.keys == {local.key}
    over = b.failed(local.key, FailureKind.RESET, 1.0)
    assert over is not None and EventKind.FAILOVER in kinds(over)
    assert over.picker.keys == {remote.key}
    back_in = b.tick(11.0)  # the ejection ended: local is usable, the hold-down starts
    assert EventKind.RESTORED in kinds(back_in) and back_in.picker.keys == {remote.key}
    assert back_in.wake_at == 41.0
    failback = b.tick(41.0)
    assert EventKind.FAILBACK in kinds(failback) and failback.picker.keys == {local.key}


def test_a_cluster_answer_avoids_the_node_once_and_a_probe_reinstates_it() -> None:
    b = balancer()
    a, c = eps(9001, 9002)
    b.resolve(Resolution.answered((a, c), "static://x"), 0.0)
    avoided = b.answered_for_cluster(a.key, 1.0, None, "read quorum")
    assert avoided is not None and avoided.picker.keys == {c.key}
    assert b.answered_for_cluster(a.key, 2.0, None, "read quorum") is None
    reinstated = b.reinstate(a.key, 3.0)
    assert reinstated is not None and reinstated.picker.keys == {a.key, c.key}
