"""The asyncio call adapter (:class:`AsyncCalls`): attempts as tasks, losers cancelled."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from mcresolve.endpoint import Endpoint, Key
from mcresolve.pool.call_policy import CallPolicy, check_call_arguments
from mcresolve.pool.core import _Finished
from mcresolve.pool.driver import CallDriver, Settle
from mcresolve.pool.planner import (
    Attempt,
    AttemptContext,
    Classifier,
    Wait,
    enter_attempt,
    leave_attempt,
)
from mcresolve.pool.steps import CallSteps

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
        non-replayable failures, else a :class:`~mcresolve.errors.CallFailed` subclass. A hedge
        that loses the race is cancelled.
        """
        self._check_open()
        check_call_arguments(fn, idempotent, policy, classify)
        call_policy = (policy or self.policy.call).with_overrides(
            deadline=deadline, attempt_timeout=attempt_timeout, hedge_delay=hedge_delay
        )
        classifier = classify or self._classify
        now = self._clock()
        driver = CallDriver.begin(now, call_policy, idempotent=idempotent, exclude=exclude)
        self._budget.record_request(now)
        running: dict[asyncio.Task[_Finished], Endpoint] = {}
        try:
            while True:
                if not running:
                    action, picker, now = self._next_step(driver)
                    if isinstance(action, Wait):
                        generation = self._generation
                        if action.refresh:
                            self._request_refresh()
                        await self._wait_async(action.delay, generation, action.interruptible)
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
        except asyncio.CancelledError:
            now = self._clock()
            load.abandon(now, now - started)
            raise
        except Exception as exc:
            leave_attempt(token)
            timed_out = scope.expired() and isinstance(exc, TimeoutError)
            record = self._attempt_failed(
                action, context, classifier, exc, load, started, timed_out
            )
            return _Finished(record)
        leave_attempt(token)
        return _Finished(self._attempt_succeeded(action, endpoint, load, started), value)
