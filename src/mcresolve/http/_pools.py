"""Pools of the HTTP adapters: one per target, created on first use, closed with the adapter.

Shared by :mod:`mcresolve.http.httpx` and :mod:`mcresolve.http.aiohttp`. Pools the caller passes
in (as values of ``targets``) are used as they are and left open.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from mcresolve.errors import CallFailed, PoolClosed
from mcresolve.http.failover import HttpFailoverPolicy, StatusFailure
from mcresolve.pool import BackgroundPool, EndpointPool
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.sources.target import Target

__all__ = [
    "AsyncPools",
    "AttemptClock",
    "RequestOptions",
    "SyncPools",
    "call_policy",
    "check_options",
    "final_answer",
    "split_targets",
]

P = TypeVar("P", EndpointPool, BackgroundPool)

_GIVEN = "pool:"


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """Per-request overrides of the pool's :class:`~mcresolve.pool.call_policy.CallPolicy` and of
    the idempotency rule (httpx: ``extensions={"mcresolve": RequestOptions(...)}``; aiohttp:
    ``mcresolve=RequestOptions(...)``)."""

    idempotent: bool | None = None
    """True: replay this request like a GET even if its method is POST/PATCH (the caller knows
    the server deduplicates it); False: never replay it once sent. None: the method and the
    policy's idempotency header decide."""
    deadline: float | None = None
    """Seconds for the whole request, every attempt and wait included."""
    attempt_timeout: float | None = None
    """Seconds per attempt (until the response head arrives)."""
    hedge_delay: float | None = None
    """Send a second attempt to another endpoint after this many seconds without an answer
    (idempotent requests, asyncio clients)."""


def split_targets(
    targets: Mapping[str, str | Target | P] | None,
) -> tuple[dict[str, str], dict[str, P]]:
    """Host → target-string mapping (pool-valued entries get a private key) and the given
    pools by that key."""
    if targets is not None and not isinstance(targets, Mapping):
        raise TypeError(
            "targets must be a mapping of host name to target or pool, got "
            f"{type(targets).__name__}"
        )
    strings: dict[str, str] = {}
    given: dict[str, P] = {}
    for host, value in (targets or {}).items():
        if not isinstance(host, str) or not host:
            raise TypeError("targets: keys must be host names (str)")
        name = host.lower().rstrip(".")
        if isinstance(value, EndpointPool | BackgroundPool):
            key = f"{_GIVEN}{name}"
            strings[name] = key
            given[key] = value
        elif isinstance(value, str | Target):
            strings[name] = str(value)
        else:
            raise TypeError(
                f"targets[{host!r}]: expected a target string, a parsed target or a pool, "
                f"got {type(value).__name__}"
            )
    return strings, given


class AsyncPools:
    """Lazily created :class:`EndpointPool` per target (asyncio)."""

    def __init__(self, given: Mapping[str, EndpointPool], options: Mapping[str, Any]) -> None:
        self._given = dict(given)
        self._options = dict(options)
        self._owned: dict[str, EndpointPool] = {}
        self._lock: asyncio.Lock | None = None
        self._closed = False

    async def get(self, target: str) -> EndpointPool:
        """The pool of ``target`` (started)."""
        pool = self._given.get(target) or self._owned.get(target)
        if pool is not None:
            return pool
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._closed:
                raise PoolClosed("the HTTP client's pools are closed")
            pool = self._owned.get(target)
            if pool is None:
                pool = EndpointPool(target, **self._options)
                await pool.start()
                self._owned[target] = pool
            return pool

    @property
    def pools(self) -> dict[str, EndpointPool]:
        """Every pool in use, by target."""
        return {**self._given, **self._owned}

    async def aclose(self) -> None:
        """Close the pools created here."""
        self._closed = True
        owned, self._owned = self._owned, {}
        for pool in owned.values():
            await pool.aclose()


class SyncPools:
    """Lazily started :class:`BackgroundPool` per target (threads)."""

    def __init__(self, given: Mapping[str, BackgroundPool], options: Mapping[str, Any]) -> None:
        self._given = dict(given)
        self._options = dict(options)
        self._owned: dict[str, BackgroundPool] = {}
        self._lock = threading.Lock()
        self._closed = False

    def get(self, target: str) -> BackgroundPool:
        """The background pool of ``target`` (started; it may have no endpoint yet: calls
        wait for one within their deadline)."""
        pool = self._given.get(target) or self._owned.get(target)
        if pool is not None:
            return pool
        with self._lock:
            if self._closed:
                raise PoolClosed("the HTTP client's pools are closed")
            pool = self._owned.get(target)
            if pool is None:
                pool = BackgroundPool(target, **self._options)
                pool.start(ready_timeout=None)
                self._owned[target] = pool
            return pool

    @property
    def pools(self) -> dict[str, BackgroundPool]:
        """Every pool in use, by target."""
        return {**self._given, **self._owned}

    def close(self) -> None:
        """Close the pools created here."""
        with self._lock:
            self._closed = True
            owned, self._owned = self._owned, {}
        for pool in owned.values():
            pool.close()


def check_options(policy: object, pool_options: object) -> None:
    """TypeError naming the parameter for a ``policy`` / ``pool_options`` of the wrong type."""
    if policy is not None and not isinstance(policy, HttpFailoverPolicy):
        raise TypeError(
            f"policy must be a mcresolve.http.failover.HttpFailoverPolicy, got "
            f"{type(policy).__name__}"
        )
    if pool_options is not None and not isinstance(pool_options, Mapping):
        raise TypeError(
            f"pool_options must be a mapping of EndpointPool keyword arguments, got "
            f"{type(pool_options).__name__}"
        )


def call_policy(pool: EndpointPool, options: RequestOptions) -> CallPolicy:
    """The pool's call policy with the request's overrides."""
    return pool.policy.call.with_overrides(
        deadline=options.deadline,
        attempt_timeout=options.attempt_timeout,
        hedge_delay=options.hedge_delay,
    )


class AttemptClock:
    """Per-attempt time limit of a synchronous call: ``min(attempt timeout, time left)``.

    The pool cannot interrupt a blocking attempt, so the adapter bounds the attempt's own I/O
    with this (the call's deadline starts when the adapter starts the call, a moment before the
    pool's, so it never ends later)."""

    def __init__(self, policy: CallPolicy) -> None:
        self._policy = policy
        self._deadline = time.monotonic() + policy.deadline

    def limit(self) -> float:
        """Seconds the next attempt may take (``math.inf``: no limit; at least 1 ms)."""
        left = self._deadline - time.monotonic()
        limit = min(self._policy.attempt_timeout, left)
        return limit if math.isinf(limit) else max(0.001, limit)


def final_answer(error: CallFailed) -> object | None:
    """The answer to return when the pool gave up: the last attempt's 5xx response if a server
    answered (the caller sees what a server said, as Envoy returns the last upstream response
    once its retries are exhausted), else None (raise ``error``)."""
    last = error.attempts[-1].error if error.attempts else None
    if isinstance(last, StatusFailure):
        response: object = last.response
        return response
    return None
