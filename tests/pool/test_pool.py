"""EndpointPool behaviour with in-process sources and real asyncio (no mocks of the pool)."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest

from manual_source import ManualSource, eps
from mcresolve.balancer.outlier import FailureKind, OutlierPolicy
from mcresolve.balancer.picker import PickStrategy
from mcresolve.balancer.retry_budget import RetryBudgetPolicy
from mcresolve.endpoint import Endpoint
from mcresolve.errors import (
    AttemptsExhausted,
    CallFailed,
    ClusterUnavailable,
    DeadlineExceeded,
    NoEndpointAvailable,
    PoolClosed,
    RetryBudgetExhausted,
)
from mcresolve.pool import EndpointPool, PoolPolicy
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.pool.events import EventKind, PoolEvent
from mcresolve.pool.planner import AttemptContext, AttemptRecord, AttemptVerdict, Fault
from mcresolve.sources.base import Resolution
from mcresolve.sources.static import StaticSource
from mcresolve.timing import BackoffPolicy, Jitter

from .helpers import next_event

FAST_BACKOFF = BackoffPolicy(base=0.01, cap=0.02, jitter=Jitter.NONE)
FAST = CallPolicy(deadline=5.0, attempt_timeout=2.0, backoff=FAST_BACKOFF)


def policy(**changes: object) -> PoolPolicy:
    base: dict[str, object] = {"call": FAST}
    base.update(changes)
    return PoolPolicy(**base)  # type: ignore[arg-type]


def failing_on(
    bad: set[int], exc: Callable[[], BaseException] = ConnectionRefusedError
) -> tuple[Callable[[Endpoint], Awaitable[int]], list[int]]:
    """An async fn raising ``exc()`` on ports in ``bad`` and returning the port otherwise."""
    seen: list[int] = []

    async def fn(endpoint: Endpoint) -> int:
        seen.append(endpoint.port)
        await asyncio.sleep(0)
        if endpoint.port in bad:
            raise exc()
        return endpoint.port

    return fn, seen


async def test_call_retries_on_a_different_endpoint_and_ejects_the_bad_one() -> None:
    source = StaticSource(eps(9001, 9002, 9003))
    async with EndpointPool(source, policy=policy()) as pool:
        await pool.wait_ready(5)
        stream = pool.stream_events()
        fn, seen = failing_on({9001})
        results = [await pool.call(fn) for _ in range(20)]
        assert set(results) <= {9002, 9003}
        assert seen.count(9001) == 1  # ejected at once (CONNECT threshold 1), never retried
        for i, port in enumerate(seen):
            if port == 9001:
                assert seen[i + 1] != 9001
        event = await next_event(stream, EventKind.EJECTED)
        assert event.endpoint is not None and event.endpoint.port == 9001
        assert event.reason is FailureKind.CONNECT
        snap = pool.snapshot()
        status = {s.endpoint.port: s for s in snap.endpoints}
        assert status[9001].state == "ejected" and not status[9001].in_picker
        assert status[9001].ejected_reason is FailureKind.CONNECT
        assert status[9001].ejected_until is not None
        assert status[9001].ejected_until > snap.taken_at
        assert status[9002].state == "active" and status[9002].latency_ewma > 0


async def test_ejected_endpoint_comes_back_after_the_ejection() -> None:
    outlier = OutlierPolicy(base_ejection=0.2, jitter=0.0)
    async with EndpointPool(StaticSource(eps(9001, 9002)), policy=policy(outlier=outlier)) as pool:
        stream = pool.stream_events()
        fn, _ = failing_on({9001})
        for _ in range(5):
            await pool.call(fn)
        assert pool.picker.keys == {("127.0.0.1", 9002)}
        ejected = await next_event(stream, EventKind.EJECTED)
        event = await next_event(stream, EventKind.RESTORED)
        assert event.endpoint == eps(9001)[0]
        # Decided on the pool's clock: not before the ejection ended (next_event bounds the wait).
        assert ejected.until is not None and event.at >= ejected.until
        assert pool.picker.keys == {("127.0.0.1", 9001), ("127.0.0.1", 9002)}


async def test_client_error_is_raised_at_once_and_counts_as_success() -> None:
    async with EndpointPool(StaticSource(eps(9001, 9002)), policy=policy()) as pool:
        fn, seen = failing_on({9001, 9002}, lambda: KeyError("no such key"))
        for _ in range(5):
            with pytest.raises(KeyError):
                await pool.call(fn)
        assert len(seen) == 5  # never retried
        assert all(s.state == "active" for s in pool.snapshot().endpoints)


async def test_non_idempotent_call_is_not_replayed_after_a_reset() -> None:
    async with EndpointPool(StaticSource(eps(9001, 9002)), policy=policy()) as pool:
        fn, seen = failing_on({9001, 9002}, ConnectionResetError)
        with pytest.raises(ConnectionResetError):
            await pool.call(fn, idempotent=False)
        assert len(seen) == 1
        fn2, seen2 = failing_on({9001, 9002}, ConnectionRefusedError)
        with pytest.raises(CallFailed):  # refused: nothing was sent, replay is safe
            await pool.call(fn2, idempotent=False, deadline=0.3)
        # Refused attempts are not charged: tried again after backoffs until the deadline.
        assert len(seen2) > FAST.max_attempts and set(seen2[:2]) == {9001, 9002}


@pytest.mark.parametrize("sync", [False, True])
async def test_dead_endpoints_do_not_use_up_attempts_while_the_source_re_resolves(
    sync: bool,
) -> None:
    """A whole datacenter's storage dies: every endpoint refuses, Consul has not noticed yet.
    The call keeps probing (with backoff, refreshing the source) until the new set arrives."""
    call = CallPolicy(deadline=10.0, max_attempts=2, backoff=FAST_BACKOFF)
    source = ManualSource()
    source.answer(eps(9001, 9002))
    async with EndpointPool(source, policy=policy(call=call)) as pool:
        loop = asyncio.get_running_loop()
        refused: list[int] = []

        def attempt(endpoint: Endpoint) -> int:
            if endpoint.port in (9001, 9002):
                refused.append(endpoint.port)
                if len(refused) == 12:  # "Consul's checks turned critical": dc2 answers
                    loop.call_soon_threadsafe(source.answer, eps(9101, dc="dc2"), "dc2")
                raise ConnectionRefusedError(f"{endpoint} is down")
            return endpoint.port

        async def async_attempt(endpoint: Endpoint) -> int:
            return attempt(endpoint)

        if sync:
            port = await asyncio.to_thread(pool.call_sync, attempt)
        else:
            port = await pool.call(async_attempt)
        assert port == 9101
        assert len(refused) >= 12 > call.max_attempts
        assert source.refreshes >= 1
        # A charged failure still counts: resets on the new set exhaust max_attempts (2).
        resets: list[int] = []

        def reset(endpoint: Endpoint) -> None:
            resets.append(endpoint.port)
            raise ConnectionResetError("boom")

        source.answer(eps(9201, 9202, 9203, dc="dc2"), "dc2")
        with pytest.raises(AttemptsExhausted):
            await asyncio.to_thread(pool.call_sync, reset)
        assert len(resets) == 2


async def test_every_endpoint_failing_gives_attempts_exhausted_with_each_attempt() -> None:
    call = CallPolicy(deadline=5.0, max_attempts=3, backoff=FAST_BACKOFF)
    async with EndpointPool(StaticSource(eps(9001, 9002)), policy=policy(call=call)) as pool:
        fn, seen = failing_on({9001, 9002}, lambda: ConnectionResetError("boom"))
        with pytest.raises(AttemptsExhausted) as caught:
            await pool.call(fn)
        assert len(caught.value.attempts) == 3 == len(seen)
        assert set(seen[:2]) == {9001, 9002}  # both tried before any backoff
        assert all(isinstance(a.error, ConnectionResetError) for a in caught.value.attempts)
        assert "127.0.0.1:9001" in str(caught.value)


async def test_retry_budget_limits_retries_during_an_outage() -> None:
    budget = RetryBudgetPolicy(percent_can_retry=0.2, min_retries_per_second=0.0)
    outlier = OutlierPolicy(resets=0)  # never eject: a pure budget test
    async with EndpointPool(
        StaticSource(eps(9001, 9002, 9003)), policy=policy(retry_budget=budget, outlier=outlier)
    ) as pool:
        fn, seen = failing_on({9001, 9002, 9003}, ConnectionResetError)
        outcomes: Counter[str] = Counter()
        for _ in range(50):
            try:
                await pool.call(fn)
            except RetryBudgetExhausted:
                outcomes["budget"] += 1
            except AttemptsExhausted:
                outcomes["exhausted"] += 1
        retries = len(seen) - 50
        assert retries <= 0.2 * 50  # 20 % of the original calls
        assert outcomes["budget"] >= 40
        assert pool.snapshot().retry_budget == 0


async def test_deadline_is_honoured_with_blackholed_endpoints() -> None:
    outlier = OutlierPolicy(timeouts=0)  # keep picking them: the deadline must still hold
    call = CallPolicy(deadline=0.4, attempt_timeout=0.1, backoff=FAST_BACKOFF, max_attempts=50)
    async with EndpointPool(
        StaticSource(eps(9001, 9002)), policy=policy(call=call, outlier=outlier)
    ) as pool:

        async def blackhole(endpoint: Endpoint) -> None:
            await asyncio.Event().wait()

        started = time.monotonic()
        with pytest.raises(CallFailed) as caught:
            await pool.call(blackhole)
        elapsed = time.monotonic() - started
        # The deadline is itself a time bound: a generous wall-clock ceiling (0.4 s deadline).
        assert elapsed < 5.0
        assert isinstance(caught.value, DeadlineExceeded | AttemptsExhausted)
        records = caught.value.attempts
        # On the pool's clock: every attempt was cut at its timeout and none outlived the call's
        # deadline; together they used the deadline (no early give-up).
        assert all(a.timeout <= 0.1 + 1e-9 for a in records)
        assert records[-1].ended - records[0].started >= 0.35
        assert all(isinstance(a.error, TimeoutError) for a in caught.value.attempts)
        assert all(s.in_flight == 0 for s in pool.snapshot().endpoints)


async def test_timeout_cut_short_by_the_deadline_does_not_eject() -> None:
    call = CallPolicy(deadline=0.1, attempt_timeout=5.0, backoff=FAST_BACKOFF)
    async with EndpointPool(StaticSource(eps(9001, 9002)), policy=policy(call=call)) as pool:

        async def slow(endpoint: Endpoint) -> None:
            await asyncio.sleep(10)

        with pytest.raises(DeadlineExceeded) as caught:
            await pool.call(slow)
        assert not caught.value.attempts[0].counted
        assert all(s.state == "active" for s in pool.snapshot().endpoints)


async def test_blackholed_node_costs_one_attempt_timeout_then_is_ejected() -> None:
    call = CallPolicy(deadline=5.0, attempt_timeout=0.5, backoff=FAST_BACKOFF)
    async with EndpointPool(StaticSource(eps(9001, 9002)), policy=policy(call=call)) as pool:
        blackholed = 0

        async def fn(endpoint: Endpoint) -> int:
            nonlocal blackholed
            if endpoint.port == 9001:
                blackholed += 1
                await asyncio.Event().wait()
            return endpoint.port

        for _ in range(10):
            assert await pool.call(fn) == 9002
        assert blackholed <= 1  # one attempt timeout at most, then ejected
        assert pool.snapshot().by_state("ejected") == eps(9001)


async def test_hedging_wins_against_a_slow_endpoint_and_cancels_it() -> None:
    call = CallPolicy(deadline=5.0, attempt_timeout=5.0, hedge_delay=0.05)
    async with EndpointPool(StaticSource(eps(9001, 9002)), policy=policy(call=call)) as pool:
        slow, fast = eps(9001, 9002)
        cancelled = asyncio.Event()

        async def fn(endpoint: Endpoint) -> int:
            if endpoint == slow:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    cancelled.set()
                    raise
            return endpoint.port

        busy = pool.attempt(fast)  # P2C then prefers the idle (slow) endpoint first
        records: list[AttemptRecord] = []
        pool.add_attempt_listener(records.append)
        assert await pool.call(fn) == 9002
        busy.abandoned()
        assert cancelled.is_set()
        # The winner is the hedge, and on the pool's clock it started no sooner than hedge_delay
        # into the call: its timeout is what the deadline left it.
        (hedge,) = records
        assert (hedge.endpoint, hedge.hedge) == (fast, True)
        assert hedge.timeout <= call.deadline - call.hedge_delay + 1e-6
        snap = pool.snapshot()
        assert all(s.in_flight == 0 for s in snap.endpoints)
        assert all(s.state == "active" for s in snap.endpoints)  # the loser is not blamed
        # ... but its wait counts as a latency of at least that long, so P2C stops preferring it
        loser = next(s for s in snap.endpoints if s.endpoint == slow)
        assert loser.latency_ewma >= 0.04


async def test_no_hedging_for_non_idempotent_calls() -> None:
    call = CallPolicy(deadline=5.0, attempt_timeout=0.3, hedge_delay=0.01)
    async with EndpointPool(StaticSource(eps(9001, 9002)), policy=policy(call=call)) as pool:
        seen: list[int] = []

        async def fn(endpoint: Endpoint) -> int:
            seen.append(endpoint.port)
            await asyncio.sleep(0.1)
            return endpoint.port

        await pool.call(fn, idempotent=False)
        assert len(seen) == 1


def cluster_classifier(retry_after: float | None) -> Callable[..., AttemptVerdict]:
    def classify(exc: BaseException, context: AttemptContext) -> AttemptVerdict:
        if isinstance(exc, RuntimeError):
            return AttemptVerdict(Fault.CLUSTER, None, True, retry_after, "quorum lost")
        return AttemptVerdict(Fault.CLIENT, reason="other")

    return classify


async def test_one_nodes_cluster_verdict_is_asked_of_another_node_at_once_and_avoided() -> None:
    """A quorum answer from one node (its own view after a restart) does not fail the call
    while another node serves: the other node is tried at once, and the node that answered is
    avoided for a while (standby, out of the picker) without being blamed (no failure count)."""
    async with EndpointPool(StaticSource(eps(9001, 9002)), policy=policy()) as pool:
        seen: list[int] = []

        async def fn(endpoint: Endpoint) -> str:
            seen.append(endpoint.port)
            if endpoint.port == seen[0]:  # the first node asked answers from its own view
                raise RuntimeError("XMinioReadQuorum")
            return "ok"

        assert await pool.call(fn, classify=cluster_classifier(120.0)) == "ok"
        quorum, other = seen
        assert quorum != other
        status = {s.endpoint.port: s for s in pool.snapshot().endpoints}
        assert status[quorum].state == "standby" and not status[quorum].in_picker
        assert not status[quorum].consecutive_failures
        assert pool.picker.keys == {("127.0.0.1", other)}
        for _ in range(5):
            assert await pool.call(fn, classify=cluster_classifier(120.0)) == "ok"
        assert seen[2:] == [other] * 5


async def test_confirmed_cluster_verdict_waits_and_retries_without_blaming_the_node() -> None:
    async with EndpointPool(StaticSource(eps(9001, 9002)), policy=policy()) as pool:
        calls = 0

        async def fn(endpoint: Endpoint) -> str:
            nonlocal calls
            calls += 1
            if calls <= 2:
                raise RuntimeError("XMinioReadQuorum")
            return "ok"

        records: list[AttemptRecord] = []
        pool.add_attempt_listener(records.append)
        assert await pool.call(fn, classify=cluster_classifier(0.1)) == "ok"
        assert calls == 3
        # On the pool's clock: the last attempt waited out the server's Retry-After.
        assert records[-1].started - records[-2].ended >= 0.1 - 1e-6
        assert all(s.state != "ejected" for s in pool.snapshot().endpoints)
        assert all(not s.consecutive_failures for s in pool.snapshot().endpoints)


async def test_cluster_retry_after_beyond_the_deadline_raises_at_once() -> None:
    async with EndpointPool(StaticSource(eps(9001, 9002)), policy=policy()) as pool:
        fn, seen = failing_on({9001, 9002}, lambda: RuntimeError("SlowDown"))
        with pytest.raises(ClusterUnavailable) as caught:
            await pool.call(fn, classify=cluster_classifier(60.0))
        # Given up without waiting: the last attempt is the call's last step.
        assert len(caught.value.attempts) == 2
        assert sorted(seen) == [9001, 9002]  # confirmed by the second node, then given up
        assert caught.value.verdict.retry_after == 60.0


async def test_all_ejected_refreshes_the_source_and_waits_for_a_new_set() -> None:
    source = ManualSource()
    source.answer(eps(9001, 9002))
    async with EndpointPool(source, policy=policy()) as pool:
        stream = pool.stream_events()
        source.on_refresh = lambda: source.answer(eps(9003))
        fn, seen = failing_on({9001, 9002})
        assert await pool.call(fn) == 9003
        assert seen[-1] == 9003 and set(seen[:2]) == {9001, 9002}
        assert source.refreshes >= 1
        await next_event(stream, EventKind.ALL_EJECTED)
        removed = await next_event(stream, EventKind.REMOVED)
        assert removed.endpoint is not None and removed.endpoint.port in (9001, 9002)


async def test_empty_pool_waits_for_endpoints_within_the_deadline() -> None:
    source = ManualSource()
    async with EndpointPool(source, policy=policy()) as pool:
        fn, _ = failing_on(set())
        with pytest.raises(DeadlineExceeded, match="waiting for an endpoint"):
            await pool.call(fn, deadline=0.1)
        assert source.refreshes >= 1
        task = asyncio.create_task(pool.call(fn, deadline=5.0))
        await source.refreshed.wait()
        source.answer(eps(9005))
        assert await task == 9005
        fresh = EndpointPool(ManualSource())
        async with fresh:
            with pytest.raises(NoEndpointAvailable, match="no endpoint within"):
                await fresh.wait_ready(0.05)


async def test_set_changes_keep_survivor_state_and_emit_added_removed() -> None:
    source = ManualSource()
    source.answer(eps(9001, 9002, 9003))
    async with EndpointPool(source, policy=policy()) as pool:
        stream = pool.stream_events()
        fn, _ = failing_on({9001})
        # The first call starts on 9001 (P2C may otherwise never draw it in a few calls).
        await pool.call(fn, exclude=[e.key for e in eps(9002, 9003)])
        for _ in range(4):
            await pool.call(fn)
        source.answer(eps(9001, 9002, 9004))
        added = await next_event(stream, EventKind.ADDED)
        assert added.endpoint == eps(9004)[0]
        snap = pool.snapshot()
        status = {s.endpoint.port: s.state for s in snap.endpoints}
        assert status == {9001: "ejected", 9002: "active", 9004: "active"}
        source.answer(eps(9002, 9004))  # Consul health drops 9001 at once
        removed = await next_event(stream, EventKind.REMOVED, endpoint=eps(9001)[0])
        assert removed.datacenter == "dc1"
        assert pool.picker.keys == {("127.0.0.1", 9002), ("127.0.0.1", 9004)}


async def test_source_error_keeps_last_known_good_and_is_visible() -> None:
    source = ManualSource()
    source.answer(eps(9001))
    async with EndpointPool(source, policy=policy()) as pool:
        stream = pool.stream_events()
        picker = pool.picker
        source.fail(ConnectionError("agent down"))
        event = await next_event(stream, EventKind.SOURCE_ERROR)
        assert "agent down" in event.detail
        snap = pool.snapshot()
        assert snap.stale and snap.source_error is not None and "agent down" in snap.source_error
        assert snap.resolution_age is not None and snap.resolution_age >= 0
        assert pool.picker is picker  # nothing changed: no rebuild
        source.answer(eps(9001))
        await next_event(stream, EventKind.SOURCE_RECOVERED)
        assert not pool.snapshot().stale


async def test_datacenter_failover_on_ejection_and_failback_after_hold_down() -> None:
    source = ManualSource()
    source.answer(eps(9001, 9002) + eps(9101, dc="dc2"), datacenter=None)
    outlier = OutlierPolicy(base_ejection=0.3, jitter=0.0, max_ejected_fraction=1.0)
    async with EndpointPool(
        source,
        local_datacenter="dc1",
        policy=policy(outlier=outlier, failback_hold_down=0.2),
    ) as pool:
        stream = pool.stream_events()
        snap = pool.snapshot()
        assert snap.local_datacenter == "dc1" and snap.active_datacenter == "dc1"
        assert {s.endpoint.port: s.state for s in snap.endpoints}[9101] == "standby"
        fn, _seen = failing_on({9001, 9002})
        assert await pool.call(fn) == 9101  # both local ones refused, then dc2
        event = await next_event(stream, EventKind.FAILOVER)
        assert event.datacenter == "dc2"
        assert pool.snapshot().failed_over
        assert pool.picker.keys == {("127.0.0.1", 9101)}
        restored = await next_event(stream, EventKind.RESTORED, within=10)
        back = await next_event(stream, EventKind.FAILBACK, within=10)
        assert back.datacenter == "dc1"
        # On the pool's clock: fail-back waited the hold-down after the local endpoint returned.
        assert back.at - restored.at >= 0.2 - 1e-6
        assert pool.picker.keys == {("127.0.0.1", 9001), ("127.0.0.1", 9002)}


async def test_local_datacenter_from_first_resolution_and_events_callbacks() -> None:
    source = ManualSource()
    received: list[PoolEvent] = []
    pool = EndpointPool(source, policy=policy())
    pool.events.subscribe(received.append)
    async with pool:
        source.answer(eps(9101, dc="dc2"), datacenter="dc2")
        assert pool.snapshot().local_datacenter == "dc2"
        assert [e.kind for e in received] == [EventKind.ADDED]
    with pytest.raises(PoolClosed):
        await pool.call(failing_on(set())[0])


async def test_round_robin_strategy_and_pick_excludes() -> None:
    pool_policy = policy(strategy=PickStrategy.ROUND_ROBIN)
    async with EndpointPool(StaticSource(eps(9001, 9002, 9003)), policy=pool_policy) as pool:
        picks = Counter(pool.pick().port for _ in range(300))
        assert set(picks.values()) == {100}
        assert pool.pick(exclude={("127.0.0.1", 9001), ("127.0.0.1", 9002)}).port == 9003


async def test_call_sync_from_threads_and_refused_on_the_loop_thread() -> None:
    async with EndpointPool(StaticSource(eps(9001, 9002, 9003)), policy=policy()) as pool:
        stream = pool.stream_events()

        def fn(endpoint: Endpoint) -> int:
            if endpoint.port == 9001:
                raise ConnectionRefusedError()
            time.sleep(0.001)
            return endpoint.port

        def worker() -> list[int]:
            return [pool.call_sync(fn) for _ in range(20)]

        results = await asyncio.gather(*(asyncio.to_thread(worker) for _ in range(4)))
        assert {port for batch in results for port in batch} <= {9002, 9003}
        event = await next_event(stream, EventKind.EJECTED)  # delivered on the loop
        assert event.endpoint == eps(9001)[0]
        assert pool.snapshot().by_state("ejected") == eps(9001)
        with pytest.raises(RuntimeError, match="event loop thread"):
            pool.call_sync(fn)


async def test_call_sync_waits_for_endpoints_published_on_the_loop() -> None:
    source = ManualSource()
    async with EndpointPool(source, policy=policy()) as pool:
        loop = asyncio.get_running_loop()

        def answer_later() -> None:
            loop.call_later(0.05, source.answer, eps(9007))

        source.on_refresh = answer_later
        port = await asyncio.to_thread(pool.call_sync, lambda e: e.port, deadline=5.0)
        assert port == 9007
        with pytest.raises(ConnectionResetError):  # not replayable: raised as is
            await asyncio.to_thread(
                pool.call_sync, _raise(ConnectionResetError()), idempotent=False
            )


def _raise(exc: BaseException) -> Callable[[Endpoint], None]:
    def fn(endpoint: Endpoint) -> None:
        raise exc

    return fn


async def test_pick_and_report_pair_from_threads() -> None:
    async with EndpointPool(StaticSource(eps(9001, 9002)), policy=policy()) as pool:

        def worker() -> None:
            for _ in range(50):
                endpoint = pool.pick()
                handle = pool.attempt(endpoint)
                if endpoint.port == 9001:
                    handle.failed(FailureKind.TIMEOUT, penalty=0.5)
                else:
                    handle.succeeded()

        await asyncio.gather(*(asyncio.to_thread(worker) for _ in range(3)))
        snap = pool.snapshot()
        assert snap.by_state("ejected") == eps(9001)
        assert all(s.in_flight == 0 for s in snap.endpoints)
        pool.report_failure(eps(9002)[0], AttemptVerdict(Fault.CLIENT))
        assert pool.snapshot().by_state("active") == eps(9002)


def test_background_pool_runs_on_its_own_thread_and_stops_cleanly() -> None:
    background = EndpointPool.start_in_thread(
        "static://127.0.0.1:9001,127.0.0.1:9002", policy=policy()
    )
    thread = background._thread
    assert thread is not None and thread.is_alive() and thread is not threading.current_thread()
    try:
        assert background.pool.source.description.startswith("static://")
        ports = {background.call_sync(lambda e: e.port) for _ in range(20)}
        assert ports <= {9001, 9002}
        assert len(background.snapshot().endpoints) == 2
        assert background.run(asyncio.sleep(0, result=7)) == 7
    finally:
        background.close()
    assert not thread.is_alive()
    with pytest.raises(PoolClosed):
        background.pool  # noqa: B018


def test_background_pool_start_fails_clearly_without_endpoints() -> None:
    background = EndpointPool.start_in_thread  # type alias for readability
    with pytest.raises(NoEndpointAvailable):
        background(lambda: ManualSource(), ready_timeout=0.05)


async def test_attempt_listener_sees_every_attempt() -> None:
    async with EndpointPool(StaticSource(eps(9001, 9002)), policy=policy()) as pool:
        records: list[AttemptRecord] = []
        pool.add_attempt_listener(records.append)
        fn, _ = failing_on({9001})
        for _ in range(4):
            await pool.call(fn)
        assert len([r for r in records if r.error is None]) == 4
        assert len([r for r in records if r.error is not None]) <= 1


def test_call_policy_validation() -> None:
    with pytest.raises(ValueError):
        CallPolicy(deadline=0)
    with pytest.raises(ValueError):
        CallPolicy(max_attempts=0)
    assert CallPolicy(deadline=math.inf).deadline == math.inf
    assert CallPolicy().with_overrides(deadline=3.0).deadline == 3.0
    assert not CallPolicy().hedging and CallPolicy(hedge_delay=0.1).hedging


async def test_cluster_wait_honours_retry_after_despite_pool_changes() -> None:
    source = ManualSource()
    source.answer(eps(9001))
    async with EndpointPool(source, policy=policy()) as pool:
        calls = 0

        async def fn(endpoint: Endpoint) -> str:
            nonlocal calls
            calls += 1
            if calls == 1:
                asyncio.get_running_loop().call_later(0.02, source.answer, eps(9001, 9003))
                raise RuntimeError("SlowDown")
            return "ok"

        records: list[AttemptRecord] = []
        pool.add_attempt_listener(records.append)
        assert await pool.call(fn, classify=cluster_classifier(0.3)) == "ok"
        assert calls == 2
        # On the pool's clock: the pool change did not cut the Retry-After wait short.
        assert records[1].started - records[0].ended >= 0.3 - 1e-6


async def test_fallback_engaged_and_released_events_and_duplicate_endpoints() -> None:
    source = ManualSource()
    async with EndpointPool(source, policy=policy()) as pool:
        stream = pool.stream_events()
        first, second = eps(9001, 9002)
        source._publish(Resolution.answered((first, second, first), "static://fallback"))
        assert [s.endpoint for s in pool.snapshot().endpoints] == [first, second]
        source._publish(replace(Resolution.answered((first,), "static://fallback"), fallback=True))
        engaged = await next_event(stream, EventKind.FALLBACK_ENGAGED)
        assert engaged.detail == "static://fallback" and pool.snapshot().fallback
        source.answer((second,))
        await next_event(stream, EventKind.FALLBACK_RELEASED)
        assert not pool.snapshot().fallback


async def test_minio_verdicts_drive_the_pool_with_every_endpoint_tried() -> None:
    """A HEAD answered 503 without code by every node: NODE on each (counted, not ejected by
    the 3-in-a-row rule), CLUSTER once every endpoint was tried (MinIO's from_every_endpoint)."""
    from mcresolve.minio.classify import Affects, Outcome, classify

    contexts: list[AttemptContext] = []

    def classify_head(exc: BaseException, context: AttemptContext) -> object:
        contexts.append(context)
        return classify(
            Outcome("HEAD", status=503, from_every_endpoint=context.every_endpoint_tried)
        )

    async with EndpointPool(StaticSource(eps(9001, 9002, 9003)), policy=policy()) as pool:
        fn, seen = failing_on({9001, 9002, 9003}, lambda: RuntimeError("503"))
        with pytest.raises(ClusterUnavailable) as caught:
            await pool.call(fn, classify=classify_head, deadline=0.5)  # type: ignore[arg-type]
        assert sorted(seen) == [9001, 9002, 9003]
        assert [c.every_endpoint_tried for c in contexts] == [False, False, True]
        assert caught.value.verdict.affects is Affects.READS  # type: ignore[attr-defined]
        assert all(s.state != "ejected" for s in pool.snapshot().endpoints)


async def test_call_sync_fast_path_keeps_the_books() -> None:
    """The first-attempt fast path: success resets failure counters, in-flight returns to 0,
    listeners see the attempt, exceptions that are not failures leave no attempt in flight."""
    async with EndpointPool(StaticSource(eps(9001, 9002)), policy=policy()) as pool:
        records: list[AttemptRecord] = []
        pool.add_attempt_listener(records.append)
        key = eps(9001)[0]
        for _ in range(2):  # SERVER_ERROR ejects after 3 in a row: 2 are counted, no ejection
            pool.report_failure(key, FailureKind.SERVER_ERROR)
        status = {s.endpoint.port: s for s in pool.snapshot().endpoints}[9001]
        assert status.consecutive_failures == {FailureKind.SERVER_ERROR: 2}

        def on_9001(endpoint: Endpoint) -> int:
            return endpoint.port

        ports = await asyncio.to_thread(
            lambda: [pool.call_sync(on_9001, exclude={eps(9002)[0].key}) for _ in range(10)]
        )
        assert ports == [9001] * 10  # exclude honoured while another endpoint exists
        status = {s.endpoint.port: s for s in pool.snapshot().endpoints}[9001]
        assert status.consecutive_failures == {}  # the fast path's success reset them
        assert status.state == "active" and status.in_flight == 0
        assert status.latency_ewma < 0.03  # measured latencies blended into the EWMA
        assert [r.endpoint.port for r in records] == [9001] * 10
        assert all(r.error is None and r.ended >= r.started for r in records)

        def interrupted(endpoint: Endpoint) -> int:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            await asyncio.to_thread(pool.call_sync, interrupted)
        assert all(s.in_flight == 0 for s in pool.snapshot().endpoints)
        assert len(records) == 10  # an interrupted attempt is not an outcome


async def test_call_sync_exclude_of_every_endpoint_uses_them_after_a_backoff() -> None:
    async with EndpointPool(StaticSource(eps(9001, 9002)), policy=policy()) as pool:
        seen: list[int] = []

        def fn(endpoint: Endpoint) -> int:
            seen.append(endpoint.port)
            return endpoint.port

        everything = {e.key for e in eps(9001, 9002)}
        port = await asyncio.to_thread(pool.call_sync, fn, exclude=everything)
        assert port in (9001, 9002) and len(seen) == 1
        fn_async, seen_async = failing_on({9002})
        assert await pool.call(fn_async, exclude={eps(9001)[0].key}) == 9001
        assert seen_async == [9002, 9001]  # 9001 avoided until 9002 had failed
