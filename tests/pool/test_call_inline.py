"""``pool.call`` runs the attempts of a call that does not hedge in the caller's task: what a
separate task gave for free must still hold. A cancelled caller cancels its attempt (the
endpoint is not blamed and its in-flight count returns to zero), and the attempt's time
(:func:`~mcresolve.pool.planner.attempt_time_left`) does not outlive the attempt in the caller's
context, on success, failure, retry or cancellation."""

from __future__ import annotations

import asyncio
import contextvars
import math

import pytest

from mcresolve.endpoint import Endpoint
from mcresolve.pool import EndpointPool
from mcresolve.pool.planner import AttemptRecord, attempt_time, attempt_time_left

TARGET = "static://127.0.0.1:9,127.0.0.1:10"
"""Closed ports; the functions below never connect."""


def _idle(pool: EndpointPool) -> bool:
    return all(
        s.in_flight == 0 and s.state == "active" and not any(s.consecutive_failures.values())
        for s in pool.snapshot().endpoints
    )


@pytest.mark.parametrize("retry_first", [False, True], ids=["first attempt", "retry"])
async def test_a_cancelled_caller_cancels_its_attempt_and_blames_no_endpoint(
    retry_first: bool,
) -> None:
    async with EndpointPool(TARGET) as pool:
        records: list[AttemptRecord] = []
        pool.add_attempt_listener(records.append)
        entered = asyncio.Event()
        cancelled = asyncio.Event()
        calls = 0

        async def fn(endpoint: Endpoint) -> None:
            nonlocal calls
            calls += 1
            if retry_first and calls == 1:
                raise ConnectionResetError("first attempt")
            entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        caller = asyncio.create_task(pool.call(fn))
        await entered.wait()
        assert any(s.in_flight == 1 for s in pool.snapshot().endpoints)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert cancelled.is_set()
        assert all(s.in_flight == 0 for s in pool.snapshot().endpoints)
        # only the reset (when there was one) is an attempt record; the cancelled one is not
        assert len(records) == (1 if retry_first else 0)
        if not retry_first:
            assert _idle(pool)


async def test_the_attempt_time_does_not_outlive_the_attempt_in_the_callers_context() -> None:
    async with EndpointPool(TARGET) as pool:
        seen: list[float | None] = []
        calls = 0

        async def ok(endpoint: Endpoint) -> str:
            seen.append(attempt_time_left())
            return "ok"

        async def fails_once(endpoint: Endpoint) -> str:
            nonlocal calls
            calls += 1
            seen.append(attempt_time_left())
            if calls == 1:
                raise ConnectionResetError("first attempt")
            return "ok"

        async def client_error(endpoint: Endpoint) -> str:
            raise KeyError("an answer, raised as is")

        assert await pool.call(ok) == "ok"
        assert attempt_time_left() is None
        assert await pool.call(fails_once) == "ok"
        assert attempt_time_left() is None
        with pytest.raises(KeyError):
            await pool.call(client_error)
        assert attempt_time_left() is None
        assert len(seen) == 3 and all(t is not None and 0 < t <= 10.0 for t in seen)

        entered = asyncio.Event()

        async def hangs(endpoint: Endpoint) -> None:
            entered.set()
            await asyncio.Event().wait()

        async def caller() -> float | None:
            try:
                await pool.call(hangs)
            except asyncio.CancelledError:
                return attempt_time_left()
            raise AssertionError("not cancelled")

        task = asyncio.create_task(caller(), context=contextvars.copy_context())
        await entered.wait()
        task.cancel()
        assert await task is None


async def test_per_call_arguments_derive_the_policy_of_their_own_base_every_time() -> None:
    """The policy a call derives from its arguments is remembered; a hit must still be the
    policy those arguments and that base give, and a rejected argument still rejected."""
    from mcresolve.pool.call_policy import CallPolicy

    async with EndpointPool(TARGET) as pool:
        times: list[float] = []

        async def fn(endpoint: Endpoint) -> None:
            given = attempt_time()
            assert given is not None
            times.append(given.timeout)

        short = CallPolicy(attempt_timeout=0.5)
        long = CallPolicy(attempt_timeout=7.0)
        for _ in range(2):
            await pool.call(fn, deadline=20.0)
            await pool.call(fn, deadline=20.0, policy=short)
            await pool.call(fn, deadline=20.0, policy=long)
            await pool.call(fn, deadline=3, policy=long)
        assert times == [10.0, 0.5, 7.0, 3.0] * 2  # min(attempt_timeout, deadline)
        await pool.call(fn, deadline=1.0)
        with pytest.raises(TypeError, match="deadline"):
            await pool.call(fn, deadline=True)
        with pytest.raises(ValueError, match="deadline"):
            await pool.call(fn, deadline=math.nan)
        with pytest.raises(ValueError, match="deadline"):
            await pool.call(fn, deadline=math.nan)
