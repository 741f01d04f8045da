"""The asyncio call adapter (:class:`AsyncCalls`): attempts in the caller's task, or as tasks
when a call hedges (losers cancelled)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from mcresolve.balancer.picker import Picker
from mcresolve.endpoint import Endpoint, Key
from mcresolve.pool.call_policy import CallPolicy, check_call_arguments
from mcresolve.pool.core import _NO_KEYS, _Finished
from mcresolve.pool.driver import CallDriver, Settle
from mcresolve.pool.planner import (
    Attempt,
    AttemptContext,
    AttemptRecord,
    Classifier,
    Wait,
    enter_attempt,
    first_attempt_time,
    leave_attempt,
)
from mcresolve.pool.steps import CallSteps, call_policy_of

__all__ = ["AsyncCalls"]

_log = logging.getLogger(__name__)

T = TypeVar("T")


class AsyncCalls(CallSteps):
    """The asyncio adapter: :meth:`call` runs the driver's attempts as tasks."""

    # --- calls (asyncio) ---------------------------------------------------------------------

    async def call(
        self,
        fn: Callable[[Endpoint], Awaitable[T]],
        *,
        idempotent: bool = True,
        deadline: float | None = None,
        attempt_timeout: float | None = None,
        hedge_delay: float | None = None,
        classify: Classifier | None = None,
        policy: CallPolicy | None = None,
        exclude: Collection[Key] = (),
    ) -> T:
        """Run ``await fn(endpoint)`` with failover (see :mod:`mcresolve.pool.planner` for the
        rules) and return its result.

        ``deadline`` / ``attempt_timeout`` (seconds from now / per attempt), ``hedge_delay``
        override the pool's :class:`~mcresolve.pool.call_policy.CallPolicy` (or ``policy``).
        ``exclude``: endpoint keys to avoid in the first round (eligible again after a
        backoff when nothing else is left).
        ``idempotent=False`` disables hedging and tells the classifier that a request that may
        have executed must not be repeated. Raises the callee's own error for CLIENT and
        non-replayable failures, else a :class:`~mcresolve.errors.CallFailed` subclass.

        A call that does not hedge runs its attempts one at a time in the caller's task (the
        first one without planner, call state or driver unless it fails, like
        :meth:`~mcresolve.pool.EndpointPool.call_sync`); cancelling the caller cancels the
        running attempt. A hedging call runs its attempts as tasks; a hedge that loses the race
        is cancelled.
        """
        if self._closed or not self._started:
            self._check_open()
        check_call_arguments(fn, idempotent, policy, classify)
        call_policy = call_policy_of(
            policy or self.policy.call, deadline, attempt_timeout, hedge_delay
        )
        classifier = classify or self._classify
        excluded: frozenset[Key] = frozenset(exclude) if exclude else _NO_KEYS
        started = self._clock()
        self._budget.record_request(started)
        if self._balancer.wake_at is not None:
            self._catch_up(started)
        if idempotent and call_policy.hedging:
            driver = CallDriver.begin(started, call_policy, idempotent=True, exclude=excluded)
            return await self._call_hedged(fn, driver, classifier)
        picker = self._balancer.picker
        endpoint = self._first_pick(picker, excluded)
        if endpoint is None:
            driver = CallDriver.begin(started, call_policy, idempotent=idempotent, exclude=excluded)
            return await self._call_rounds(fn, driver, classifier)
        return await self._call_fast(
            fn, endpoint, picker, started, call_policy, classifier, idempotent, excluded
        )

    async def _call_fast(
        self,
        fn: Callable[[Endpoint], Awaitable[T]],
        endpoint: Endpoint,
        picker: Picker,
        started: float,
        call_policy: CallPolicy,
        classifier: Classifier,
        idempotent: bool,
        excluded: frozenset[Key],
    ) -> T:
        """The first attempt of a call that does not hedge, in the caller's task (the planner's
        rule 7 for a fresh call: its :class:`~mcresolve.pool.planner.Attempt`, call state and
        driver are built only if it fails)."""
        clock = self._clock
        key = endpoint.key
        load = self._load_of(key)
        load.start()
        timeout, ends = first_attempt_time(started, call_policy)
        token = enter_attempt(timeout, ends, clock)
        scope = None if math.isinf(timeout) else asyncio.timeout(timeout)
        try:
            if scope is None:
                value = await fn(endpoint)
            else:
                async with scope:
                    value = await fn(endpoint)
        except Exception as exc:
            leave_attempt(token)
            timed_out = scope is not None and scope.expired() and isinstance(exc, TimeoutError)
            driver, settle = self._first_attempt_failed(
                exc,
                endpoint,
                picker,
                load,
                started=started,
                call_policy=call_policy,
                idempotent=idempotent,
                excluded=excluded,
                classifier=classifier,
                timed_out=timed_out,
            )
            if settle is Settle.RAISE:
                raise
            return await self._call_rounds(fn, driver, classifier)
        except BaseException:  # cancelled: the attempt is abandoned, not the endpoint's failure
            leave_attempt(token)
            now = clock()
            load.abandon(now, now - started)
            raise
        leave_attempt(token)
        ended = clock()
        load.finish(ended, ended - started)
        if key in self._balancer.failing:
            self._record_success(key, ended)
        if self._attempt_listeners:
            self._notify_attempt(AttemptRecord(endpoint, started, ended, timeout=timeout))
        return value

    async def _call_rounds(
        self, fn: Callable[[Endpoint], Awaitable[T]], driver: CallDriver, classifier: Classifier
    ) -> T:
        """The driver-run part of a call that does not hedge: one attempt at a time, each in
        the caller's task (cancelling the caller cancels it)."""
        while True:
            action, picker, now = self._next_step(driver)
            if isinstance(action, Wait):
                await self._wait_for_async(action)
                driver.waited(action)
                continue
            context = self._begin_attempt(driver, action, picker, now)
            if context is None:
                continue
            finished = await self._run_attempt(fn, action, context, classifier)
            settle = driver.finished(finished.record)
            if settle is Settle.RETURN:
                return finished.value  # type: ignore[no-any-return]
            if settle is Settle.RAISE:
                assert finished.record.error is not None
                raise finished.record.error

    async def _call_hedged(
        self, fn: Callable[[Endpoint], Awaitable[T]], driver: CallDriver, classifier: Classifier
    ) -> T:
        """A hedging call: each attempt in its own task, the caller waits for the first answer
        or the next hedge; the losers are cancelled."""
        running: dict[asyncio.Task[_Finished], Endpoint] = {}
        try:
            while True:
                if not running:
                    action, picker, now = self._next_step(driver)
                    if isinstance(action, Wait):
                        await self._wait_for_async(action)
                        driver.waited(action)
                        continue
                    context = self._begin_attempt(driver, action, picker, now)
                    if context is not None:
                        self._spawn(fn, action, context, classifier, running)
                    continue
                done, _ = await asyncio.wait(
                    running,
                    timeout=driver.hedge_due(self._clock()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:
                    hedge = self._hedge_step(driver)
                    if hedge is not None:
                        self._spawn(fn, *hedge, classifier, running)
                    continue
                for task in done:
                    running.pop(task)
                    finished = task.result()
                    settle = driver.finished(finished.record)
                    if settle is Settle.RETURN:
                        return finished.value  # type: ignore[no-any-return]
                    if settle is Settle.RAISE:
                        assert finished.record.error is not None
                        raise finished.record.error
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _wait_for_async(self, wait: Wait) -> None:
        generation = self._generation
        if wait.refresh:
            self._request_refresh()
        await self._wait_async(wait.delay, generation, wait.interruptible)

    def _spawn(
        self,
        fn: Callable[[Endpoint], Awaitable[Any]],
        action: Attempt,
        context: AttemptContext,
        classifier: Classifier,
        running: dict[asyncio.Task[_Finished], Endpoint],
    ) -> None:
        task = asyncio.create_task(
            self._run_attempt(fn, action, context, classifier),
            name=f"attempt {context.attempt} on {context.endpoint}",
        )
        running[task] = context.endpoint

    async def _run_attempt(
        self,
        fn: Callable[[Endpoint], Awaitable[Any]],
        action: Attempt,
        context: AttemptContext,
        classifier: Classifier,
    ) -> _Finished:
        endpoint = context.endpoint
        load = self._load_of(endpoint.key)
        load.start()
        started = self._clock()
        scope = asyncio.timeout(None if math.isinf(action.timeout) else action.timeout)
        token = enter_attempt(action.timeout, action.ends, self._clock)
        try:
            async with scope:
                value = await fn(endpoint)
        except Exception as exc:
            leave_attempt(token)
            timed_out = scope.expired() and isinstance(exc, TimeoutError)
            record = self._attempt_failed(
                action, context, classifier, exc, load, started, timed_out
            )
            return _Finished(record)
        except BaseException:  # cancelled: the attempt is abandoned, not the endpoint's failure
            leave_attempt(token)
            now = self._clock()
            load.abandon(now, now - started)
            raise
        leave_attempt(token)
        return _Finished(self._attempt_succeeded(action, endpoint, load, started), value)
