"""Retry budget: retries may add at most a fixed fraction on top of the original requests.

Finagle's ``RetryBudget`` (``ttl`` 10 s, ``percentCanRetry`` 20 %, ``minRetriesPerSec`` 10) and
Envoy's retry budget (20 % of active requests, floor 3) exist because per-request retry limits
multiply load during an outage: with 3 attempts per call, a failing backend receives 3× the
traffic exactly when it can least take it. A budget caps the *aggregate* instead.

Rule: within the sliding window of the last ``ttl`` seconds,
``retries <= percent_can_retry × requests + min_retries_per_second × ttl``. Every original
request deposits (:meth:`RetryBudget.record_request`); every retry withdraws
(:meth:`RetryBudget.try_retry`, or :meth:`RetryBudget.can_retry` then
:meth:`RetryBudget.record_retry`). Both expire after the window, as in Finagle's leaky token
bucket. The window is kept in ``slots`` buckets of ``ttl / slots`` seconds, so an event expires
between ``ttl - ttl/slots`` and ``ttl`` seconds after it happened; memory is O(slots) whatever the
request rate.

Pure state: time comes in as ``now`` (float seconds, monotonic) on every call, and a time earlier
than one already seen counts as that latest time. Calls are serialised by an internal lock, so
threads may share a budget.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

from mcresolve.arguments import check_int_range, check_seconds

_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class RetryBudgetPolicy:
    """Size of the retry budget."""

    ttl: float = 10.0
    """Window in seconds over which deposits and withdrawals count (Finagle: 10 s)."""
    percent_can_retry: float = 0.2
    """Retries allowed per original request (Finagle and Envoy: 20 %)."""
    min_retries_per_second: float = 10.0
    """Reserve for clients with little traffic, as a rate (Finagle: 10/s, i.e. 100 retries per
    10 s window). It lets a quiet client retry every failure while still bounding the retry
    rate of any one client to a small constant during an outage."""
    slots: int = 10
    """Buckets the window is kept in (granularity of expiry: ttl / slots = 1 s by default)."""

    def __post_init__(self) -> None:
        check_seconds("RetryBudgetPolicy.ttl", self.ttl)
        for name in ("percent_can_retry", "min_retries_per_second"):
            check_seconds(f"RetryBudgetPolicy.{name}", getattr(self, name), zero=True)
        check_int_range("RetryBudgetPolicy.slots", self.slots, 1)
        if self.ttl <= 0:
            raise ValueError("RetryBudgetPolicy.ttl must be > 0")
        if self.percent_can_retry < 0 or self.min_retries_per_second < 0:
            raise ValueError(
                "RetryBudgetPolicy.percent_can_retry and min_retries_per_second must be >= 0"
            )
        if self.slots < 1:
            raise ValueError("RetryBudgetPolicy.slots must be >= 1")

    @property
    def reserve(self) -> float:
        """Retries always allowed per window: ``min_retries_per_second × ttl``."""
        return self.min_retries_per_second * self.ttl


class RetryBudget:
    """Sliding-window retry budget (see the module docstring for the rule)."""

    def __init__(self, policy: RetryBudgetPolicy | None = None) -> None:
        self.policy = policy if policy is not None else RetryBudgetPolicy()
        self._width = self.policy.ttl / self.policy.slots
        # (slot index, requests, retries), oldest first.
        self._window: deque[list[int]] = deque()
        self._requests = 0
        self._retries = 0
        self._latest_slot: int | None = None
        self._lock = threading.Lock()

    def _advance(self, now: float) -> list[int]:
        slot = math.floor(now / self._width)
        if self._latest_slot is not None and slot < self._latest_slot:
            slot = self._latest_slot
        self._latest_slot = slot
        oldest_kept = slot - self.policy.slots + 1
        while self._window and self._window[0][0] < oldest_kept:
            _, requests, retries = self._window.popleft()
            self._requests -= requests
            self._retries -= retries
        if not self._window or self._window[-1][0] != slot:
            self._window.append([slot, 0, 0])
        return self._window[-1]

    def _allowance(self) -> float:
        return self.policy.percent_can_retry * self._requests + self.policy.reserve

    def record_request(self, now: float) -> None:
        """An original request (not a retry) is being sent: deposit."""
        with self._lock:
            self._advance(now)[1] += 1
            self._requests += 1

    def can_retry(self, now: float) -> bool:
        """Whether one more retry fits the budget at ``now`` (does not withdraw)."""
        with self._lock:
            self._advance(now)
            return self._retries + 1 <= self._allowance() + _EPSILON

    def record_retry(self, now: float) -> None:
        """A retry is being sent: withdraw (even if over budget; prefer :meth:`try_retry`)."""
        with self._lock:
            self._advance(now)[2] += 1
            self._retries += 1

    def try_retry(self, now: float) -> bool:
        """Withdraw one retry if the budget allows it; True when the retry may be sent."""
        with self._lock:
            bucket = self._advance(now)
            if self._retries + 1 > self._allowance() + _EPSILON:
                return False
            bucket[2] += 1
            self._retries += 1
            return True

    def balance(self, now: float) -> int:
        """How many retries the budget would allow right now (for introspection)."""
        with self._lock:
            self._advance(now)
            return max(0, math.floor(self._allowance() + _EPSILON) - self._retries)

    def counts(self, now: float) -> tuple[int, int]:
        """``(requests, retries)`` inside the window at ``now``."""
        with self._lock:
            self._advance(now)
            return (self._requests, self._retries)
