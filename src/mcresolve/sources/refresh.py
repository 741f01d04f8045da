"""When a ``refresh_now()`` request may re-resolve: damping of re-resolution storms (pure).

A pool calls ``source.refresh_now()`` every time it finds nothing usable, so while a whole
datacenter's storage is down (dead nodes, Consul's checks still passing) it asks many times a
second, and every request used to cost a DNS query or a prepared-query execution that returned
the same answer (measured by the failover benchmark: 210 DNS queries in 20 s from one stage-1
application instance). The rule:

* The **first** ``refresh_now()`` after the answer changed (or the first ever) re-resolves at
  once: failover speed does not suffer.
* Each ``refresh_now()``-triggered re-resolution that returns the **same** answer as the one
  before it makes the next one wait longer: ``base`` (50 ms), doubling, capped at ``cap``
  (2 s), each drawn uniformly in ``[delay / 2, delay]`` (jitter spreads the application
  instances that were all ejected at the same moment; the lower half bound keeps the count
  bounded). Requests arriving meanwhile are coalesced into one re-resolution.
* A **different** answer (any re-resolution: periodic, health-watch triggered or forced; an
  error after an answer or an answer after an error counts as different) resets the sequence.
* After ``quiet`` seconds (10 s) without a forced re-resolution the sequence starts over (a new
  outage is a new episode).
* Other re-resolutions (periodic, a health-watch event) are never delayed by this rule.

So a source hammered with ``refresh_now()`` whose answer never changes re-resolves at most
:meth:`RefreshDamping.max_forced` times in any window of continuous hammering (defaults: 7 in
the first 1.6 s, then one per second at most, ~0.67 per second on average).

Precedents: gRPC's DNS resolver rate-limits re-resolution requests to one per 30 s
(``grpc.dns_min_time_between_resolutions_ms``); consul-template never polls faster than every
100 ms. Ours starts faster (the first request is free and the next ones start at 50 ms) because
a re-execution is how stage 3 fails over, and caps lower because Consul's answers change within
seconds of a check failing.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from mcresolve.arguments import check_seconds
from mcresolve.timing import RandomSource

__all__ = ["RefreshDamper", "RefreshDamping"]

_UNSET: object = object()


@dataclass(frozen=True, slots=True)
class RefreshDamping:
    """How ``refresh_now()``-triggered re-resolutions back off while the answer stays the same.

    Attributes:
        base: delay after the first unchanged forced re-resolution, in seconds.
        multiplier: growth per further unchanged forced re-resolution.
        cap: the delay never exceeds this, in seconds.
        quiet: this long without a forced re-resolution starts the sequence over, in seconds.
    """

    base: float = 0.05
    multiplier: float = 2.0
    cap: float = 2.0
    quiet: float = 10.0

    def __post_init__(self) -> None:
        for name in ("base", "multiplier", "cap", "quiet"):
            check_seconds(f"RefreshDamping.{name}", getattr(self, name))
        if not self.base > 0:
            raise ValueError(f"damping base must be > 0 seconds, got {self.base!r}")
        if not self.multiplier >= 1:
            raise ValueError(f"damping multiplier must be >= 1, got {self.multiplier!r}")
        if not self.cap >= self.base:
            raise ValueError(f"damping cap ({self.cap!r}) must be >= base ({self.base!r})")
        if not self.quiet > self.cap:
            raise ValueError(f"damping quiet ({self.quiet!r}) must be > cap ({self.cap!r})")

    def ceiling(self, streak: int) -> float:
        """The un-jittered delay after ``streak`` unchanged forced re-resolutions (``>= 1``)."""
        if streak < 1:
            raise ValueError(f"streak must be >= 1, got {streak!r}")
        delay = self.base
        for _ in range(streak - 1):  # step by step: no float overflow for a huge streak
            delay *= self.multiplier
            if delay >= self.cap:
                return self.cap
        return min(delay, self.cap)

    def delay(self, streak: int, random_value: float) -> float:
        """The jittered delay: uniform in ``[ceiling / 2, ceiling]`` for ``random_value`` in
        ``[0, 1)``."""
        ceiling = self.ceiling(streak)
        return ceiling / 2 + ceiling / 2 * random_value

    def max_forced(self, duration: float) -> int:
        """The most forced re-resolutions that can happen within any ``duration`` seconds
        while the answer does not change (every delay at its lower bound, from the start of a
        sequence, which is the densest case)."""
        if duration < 0:
            raise ValueError(f"duration must be >= 0, got {duration!r}")
        count, elapsed, streak = 1, 0.0, 1
        while True:
            gap = self.ceiling(streak) / 2
            if gap >= self.cap / 2 or self.multiplier == 1:  # the rest are evenly spaced
                return count + math.floor((duration - elapsed) / gap + 1e-9)
            if elapsed + gap > duration + 1e-9:
                return count
            elapsed += gap
            count += 1
            streak += 1


class RefreshDamper:
    """The damping state of one source (see the module doc). Pure: the caller passes the time
    (any monotonic clock, seconds) and the source of randomness.

    Use: :attr:`ready_at` says when a pending ``refresh_now()`` may re-resolve; after every
    re-resolution call :meth:`observe` with its outcome (any value comparable with ``==``: the
    endpoint set, or the error's type) and whether a ``refresh_now()`` triggered it.
    """

    __slots__ = ("_last_forced", "_last_outcome", "_policy", "_random", "_ready_at", "streak")

    def __init__(
        self, policy: RefreshDamping | None = None, random_source: RandomSource = random.random
    ) -> None:
        self._policy = policy or RefreshDamping()
        self._random = random_source
        self._last_outcome: object = _UNSET
        self._last_forced = -math.inf
        self._ready_at = -math.inf
        #: Consecutive unchanged forced re-resolutions (0: the next forced one is not delayed).
        self.streak = 0

    @property
    def policy(self) -> RefreshDamping:
        """The policy this state follows."""
        return self._policy

    @property
    def ready_at(self) -> float:
        """When a pending ``refresh_now()`` request may re-resolve (clock of :meth:`observe`;
        ``-inf`` when at once)."""
        return self._ready_at

    def observe(self, outcome: object, now: float, *, forced: bool) -> bool:
        """Record a re-resolution that ended at ``now`` with ``outcome``; return whether the
        outcome differs from the previous one (the first one always does)."""
        changed = self._last_outcome is _UNSET or outcome != self._last_outcome
        self._last_outcome = outcome
        if changed:
            self.streak = 0
            self._ready_at = -math.inf
        elif forced:
            if now - self._last_forced >= self._policy.quiet:
                self.streak = 0
            self.streak += 1
            self._ready_at = now + self._policy.delay(self.streak, self._random())
        if forced:
            self._last_forced = now
        return changed
