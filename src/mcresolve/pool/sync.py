"""The synchronous call adapter (:class:`SyncCalls`): attempts in the calling thread, or on
attempt threads when a call hedges (a loser's value goes to ``discard``)."""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import logging
import threading
from asyncio.events import _get_running_loop
from collections.abc import Callable, Collection
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

__all__ = ["SyncCalls"]

_log = logging.getLogger(__name__)

T = TypeVar("T")


class SyncCalls(CallSteps):
    """The thread adapter: :meth:`call_sync` runs the driver's attempts in the calling thread,
    or on attempt threads when the call hedges."""

    # --- calls (threads) ---------------------------------------------------------------------

    def call_sync(
        self,
        fn: Callable[[Endpoint], T],
        *,
        idempotent: bool = True,
        deadline: float | None = None,
        attempt_timeout: float | None = None,
        hedge_delay: float | None = None,
        classify: Classifier | None = None,
        policy: CallPolicy | None = None,
        exclude: Collection[Key] = (),
        discard: Callable[[T], object] | None = None,
    ) -> T:
        """Run the blocking ``fn(endpoint)`` with failover in the calling thread (the same
        driver and planner as :meth:`call`). Must not be called on a thread running an event
        loop (:class:`RuntimeError`).

        ``exclude``: endpoint keys to avoid in the first round (e.g. the node a stream just
        broke on); they become eligible again after a backoff when nothing else is left.

        A running ``fn`` cannot be interrupted, so it must bound its own I/O by the time its
        attempt was given: :func:`mcresolve.pool.planner.attempt_time_left` returns it inside
        ``fn`` (``min(attempt_timeout, time left in the call)``, never past the deadline); use
        it as (or to cap) the socket / HTTP client timeouts of the request, as
        :class:`~mcresolve.minio.ResilientMinio` does. An attempt that was given the time left
        (shorter than ``attempt_timeout``) and ran until the deadline is the deadline's failure,
        not the endpoint's: it is not counted against the endpoint.

        Hedging (an idempotent call whose policy has a ``hedge_delay``, or ``hedge_delay``
        given here): attempts run on their own threads, carrying the caller's context
        variables; when ``hedge_delay`` passes without an answer a hedge starts on another
        endpoint, and the first answer wins. A losing attempt cannot be interrupted: it runs
        to its end (its outcome still feeds the endpoint's health) and its value, if it
        succeeds, is passed to ``discard`` (e.g. to close a response) instead of leaking.

        Without hedging the first attempt takes a fast path (no planner, no call state, no
        allocation beyond the attempt's time unless an attempt listener is registered): what
        is left per successful call is one retry-budget deposit, the endpoint's in-flight count
        and latency EWMA, and a set lookup for its outlier counters. Anything else (a failure,
        nothing to pick) goes through the driver.
        """
        if _get_running_loop() is not None:
            raise RuntimeError(
                "EndpointPool.call_sync() blocks and cannot run on an event loop thread; "
                "use 'await pool.call(...)' there, or call_sync from a worker thread"
            )
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
            return self._call_sync_hedged(fn, driver, classifier, discard)
        picker = self._balancer.picker
        endpoint = self._first_pick(picker, excluded)
        if endpoint is None:
            driver = CallDriver.begin(started, call_policy, idempotent=idempotent, exclude=excluded)
            return self._call_sync_rounds(fn, driver, classifier)
        return self._call_sync_fast(
            fn, endpoint, picker, started, call_policy, classifier, idempotent, excluded
        )

    def _call_sync_fast(
        self,
        fn: Callable[[Endpoint], T],
        endpoint: Endpoint,
        picker: Picker,
        started: float,
        call_policy: CallPolicy,
        classifier: Classifier,
        idempotent: bool,
        excluded: frozenset[Key],
    ) -> T:
        """The first attempt of a call that does not hedge, at once (the planner's rule 7 for a
        fresh call: its :class:`~mcresolve.pool.planner.Attempt` is built only if it fails)."""
        clock = self._clock
        key = endpoint.key
        load = self._load_of(key)
        load.start()
        timeout, ends = first_attempt_time(started, call_policy)
        token = enter_attempt(timeout, ends, clock)
        try:
            value = fn(endpoint)
        except Exception as exc:
            leave_attempt(token)
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
                timed_out=False,
            )
            if settle is Settle.RAISE:
                raise
            return self._call_sync_rounds(fn, driver, classifier)
        except BaseException:
            leave_attempt(token)
            load.finish(clock(), None)
            raise
        leave_attempt(token)
        ended = clock()
        load.finish(ended, ended - started)
        if key in self._balancer.failing:
            self._record_success(key, ended)
        if self._attempt_listeners:
            self._notify_attempt(AttemptRecord(endpoint, started, ended, timeout=timeout))
        return value

    def _call_sync_rounds(
        self, fn: Callable[[Endpoint], T], driver: CallDriver, classifier: Classifier
    ) -> T:
        """The driver-run part of a call that does not hedge, attempts in the calling thread."""
        while True:
            action, picker, now = self._next_step(driver)
            if isinstance(action, Wait):
                self._wait_for(action)
                driver.waited(action)
                continue
            context = self._begin_attempt(driver, action, picker, now)
            if context is None:
                continue
            finished = self._run_attempt_sync(fn, action, context, classifier)
            settle = driver.finished(finished.record)
            if settle is Settle.RETURN:
                return finished.value  # type: ignore[no-any-return]
            if settle is Settle.RAISE:
                assert finished.record.error is not None
                raise finished.record.error

    def _call_sync_hedged(
        self,
        fn: Callable[[Endpoint], T],
        driver: CallDriver,
        classifier: Classifier,
        discard: Callable[[T], object] | None,
    ) -> T:
        """A hedging call: each attempt on its own thread, the calling thread waits for the
        first answer or the next hedge (the asyncio adapter's loop, with futures)."""
        running: dict[concurrent.futures.Future[_Finished], Endpoint] = {}
        try:
            while True:
                if not running:
                    action, picker, now = self._next_step(driver)
                    if isinstance(action, Wait):
                        self._wait_for(action)
                        driver.waited(action)
                        continue
                    context = self._begin_attempt(driver, action, picker, now)
                    if context is not None:
                        self._start_thread(fn, action, context, classifier, running)
                    continue
                done, _ = concurrent.futures.wait(
                    running,
                    timeout=driver.hedge_due(self._clock()),
                    return_when=concurrent.futures.FIRST_COMPLETED,
                )
                if not done:
                    hedge = self._hedge_step(driver)
                    if hedge is not None:
                        self._start_thread(fn, *hedge, classifier, running)
                    continue
                for future in done:
                    running.pop(future)
                    finished = future.result()
                    settle = driver.finished(finished.record)
                    if settle is Settle.CONTINUE:
                        continue
                    for other in done - {future}:  # finished in the same instant: losers too
                        running.setdefault(other, finished.record.endpoint)
                    if settle is Settle.RETURN:
                        return finished.value  # type: ignore[no-any-return]
                    assert finished.record.error is not None
                    raise finished.record.error
        finally:
            for future in running:
                future.add_done_callback(functools.partial(self._discard_loser, discard))

    def _start_thread(
        self,
        fn: Callable[[Endpoint], Any],
        action: Attempt,
        context: AttemptContext,
        classifier: Classifier,
        running: dict[concurrent.futures.Future[_Finished], Endpoint],
    ) -> None:
        future: concurrent.futures.Future[_Finished] = concurrent.futures.Future()
        variables = contextvars.copy_context()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = variables.run(self._run_attempt_sync, fn, action, context, classifier)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

        name = f"mcresolve attempt {context.attempt} on {context.endpoint}"
        threading.Thread(target=run, name=name, daemon=True).start()
        running[future] = context.endpoint

    def _discard_loser(
        self, discard: Callable[[Any], object] | None, future: concurrent.futures.Future[_Finished]
    ) -> None:
        """A losing attempt finished: hand a successful one's value to ``discard``."""
        if discard is None or future.cancelled() or future.exception() is not None:
            return
        finished = future.result()
        if finished.record.error is not None:
            return
        try:
            discard(finished.value)
        except Exception:
            _log.exception("pool %s: discarding a hedge loser's value failed", self)

    def _run_attempt_sync(
        self,
        fn: Callable[[Endpoint], Any],
        action: Attempt,
        context: AttemptContext,
        classifier: Classifier,
    ) -> _Finished:
        endpoint = context.endpoint
        load = self._load_of(endpoint.key)
        load.start()
        started = self._clock()
        token = enter_attempt(action.timeout, action.ends, self._clock)
        try:
            value = fn(endpoint)
        except Exception as exc:
            leave_attempt(token)
            record = self._attempt_failed(action, context, classifier, exc, load, started, False)
            return _Finished(record)
        except BaseException:
            leave_attempt(token)
            load.finish(self._clock(), None)
            raise
        leave_attempt(token)
        return _Finished(self._attempt_succeeded(action, endpoint, load, started), value)

    def _wait_for(self, wait: Wait) -> None:
        generation = self._generation
        if wait.refresh:
            self._request_refresh()
        self._wait_sync(wait.delay, generation, wait.interruptible)
