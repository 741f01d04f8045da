"""Hedging in ``call_sync``: the same driver as ``call``, attempts on their own threads.

The slow attempt is held by an event the test controls, so what is asserted is the sequence of
attempts (their records), never how long anything took."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from manual_source import eps
from mcresolve.endpoint import Endpoint
from mcresolve.pool import EndpointPool
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.pool.planner import AttemptRecord
from mcresolve.sources.static import StaticSource
from support import until

HEDGING = CallPolicy(deadline=30.0, attempt_timeout=20.0, hedge_delay=0.01, max_hedges=1)

caller_says: contextvars.ContextVar[str] = contextvars.ContextVar("caller_says", default="")


class FirstAttemptHangs:
    """``fn`` for call_sync: the first attempt blocks until :meth:`release`, later ones answer
    at once. Values are objects with a ``closed`` flag, like responses."""

    class Value:
        def __init__(self, port: int, seen: str) -> None:
            self.port = port
            self.seen = seen
            self.closed = False

    def __init__(self) -> None:
        self._gate = threading.Event()
        self._lock = threading.Lock()
        self.calls: list[int] = []

    def __call__(self, endpoint: Endpoint) -> FirstAttemptHangs.Value:
        with self._lock:
            self.calls.append(endpoint.port)
            first = len(self.calls) == 1
        if first:
            assert self._gate.wait(30.0)
        return self.Value(endpoint.port, caller_says.get())

    def release(self) -> None:
        self._gate.set()


def _closed(value: FirstAttemptHangs.Value) -> None:
    value.closed = True


async def test_call_sync_hedges_to_another_endpoint_and_hands_the_loser_to_discard() -> None:
    async with EndpointPool(StaticSource(eps(9001, 9002))) as pool:
        records: list[AttemptRecord] = []
        pool.add_attempt_listener(records.append)
        fn = FirstAttemptHangs()
        discarded: list[FirstAttemptHangs.Value] = []
        loser_done = threading.Event()

        def discard(value: FirstAttemptHangs.Value) -> None:
            _closed(value)
            discarded.append(value)
            loser_done.set()

        def call() -> FirstAttemptHangs.Value:
            caller_says.set("from the caller")
            return pool.call_sync(fn, policy=HEDGING, discard=discard)

        value = await asyncio.to_thread(call)
        slow, fast = fn.calls
        assert slow != fast
        assert value.port == fast and not value.closed
        assert value.seen == "from the caller"  # attempts run in the caller's context
        [hedge] = records  # the slow attempt has not finished yet
        assert hedge.hedge and hedge.error is None and hedge.endpoint.port == fast
        fn.release()
        assert await asyncio.to_thread(loser_done.wait, 30.0)
        [loser] = discarded
        assert loser.port == slow and loser.closed
        assert [r.endpoint.port for r in records] == [fast, slow]
        assert not records[1].hedge and records[1].error is None  # its outcome still counted


async def test_no_hedge_for_a_call_that_is_not_idempotent() -> None:
    async with EndpointPool(StaticSource(eps(9001, 9002))) as pool:
        records: list[AttemptRecord] = []
        pool.add_attempt_listener(records.append)
        fn = FirstAttemptHangs()
        threading.Timer(0.3, fn.release).start()  # whatever the delay: only one attempt
        value = await asyncio.to_thread(pool.call_sync, fn, policy=HEDGING, idempotent=False)
        assert fn.calls == [value.port]
        assert [r.hedge for r in records] == [False]


async def test_hedge_delay_given_to_call_sync_turns_hedging_on() -> None:
    async with EndpointPool(StaticSource(eps(9001, 9002))) as pool:
        records: list[AttemptRecord] = []
        pool.add_attempt_listener(records.append)
        fn = FirstAttemptHangs()
        value = await asyncio.to_thread(
            pool.call_sync, fn, hedge_delay=0.01, deadline=30.0, attempt_timeout=20.0
        )
        fn.release()
        assert records[0].hedge and records[0].endpoint.port == value.port


async def test_a_failing_hedge_leaves_the_call_to_the_running_attempt() -> None:
    async with EndpointPool(StaticSource(eps(9001, 9002))) as pool:
        records: list[AttemptRecord] = []
        pool.add_attempt_listener(records.append)
        gate = threading.Event()
        calls: list[int] = []

        def fn(endpoint: Endpoint) -> int:
            calls.append(endpoint.port)
            if len(calls) == 1:
                assert gate.wait(30.0)
                return endpoint.port
            gate.set()  # the hedge fails, then lets the first attempt answer
            raise ConnectionResetError("hedge fails")

        port = await asyncio.to_thread(pool.call_sync, fn, policy=HEDGING)
        assert port == calls[0]
        # The hedge's record may come after the call returned (it is written on the hedge's
        # thread after it let the first attempt answer), and in either order.
        await until(lambda: len(records) == 2, what="the hedge's record")
        assert sorted((r.hedge, r.error is None) for r in records) == [(False, True), (True, False)]


@pytest.mark.parametrize("hedging", [True, False])
async def test_the_callee_error_is_raised_as_is_with_or_without_hedging(hedging: bool) -> None:
    policy = HEDGING if hedging else CallPolicy(deadline=30.0)
    async with EndpointPool(StaticSource(eps(9001, 9002))) as pool:

        def fn(endpoint: Endpoint) -> int:
            raise ValueError("the caller's own bug")

        with pytest.raises(ValueError, match="own bug"):
            await asyncio.to_thread(pool.call_sync, fn, policy=policy)
