"""Time arithmetic shared by the transport, the sources and the pool (pure: no clock, no sleeping;
randomness is passed in): jittered exponential backoff, jittered periods and Go-style duration
strings.

Jittered exponential backoff

A :class:`BackoffPolicy` is a value describing *how long to wait before retry number n*; a
:class:`Backoff` tracks the consecutive failures of one retrying loop and asks the policy.

Defaults and why
----------------
Consul's Go ``watch`` package waits ``5 s × failures²`` capped at 180 s: after an agent restart
lasting a few seconds a watcher is blind for 20–45 s, and after a longer outage for 3 minutes,
far too slow for a failover client. consul-template's Consul retry starts at 250 ms and doubles up
to 1 min; gRPC's connection backoff starts at 1 s (× 1.6, cap 120 s). We take consul-template's
250 ms base and doubling but cap at 10 s, so the view of Consul is at most ~10 s stale after the
agent returns, while a dead agent still costs at most one request per 5 s on average per watch
(full jitter halves the mean). Full jitter (AWS Architecture Blog, "Exponential Backoff And
Jitter") spreads a herd of clients that failed together (all watchers of a restarted agent)
over the whole interval; the watch loop's rate limiter keeps a near-zero draw from turning into a
busy loop.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from mcresolve.arguments import check_instance, check_seconds

#: A source of uniform random floats in ``[0, 1)`` (``random.Random().random`` fits).
RandomSource = Callable[[], float]


class Jitter(enum.Enum):
    """How randomness is applied to the exponential delay."""

    #: No randomness: exactly ``min(cap, base × multiplier^(n-1))``.
    NONE = "none"
    #: Uniform in ``[0, exponential]``.
    FULL = "full"
    #: Half fixed, half random: uniform in ``[exponential / 2, exponential]``.
    EQUAL = "equal"
    #: ``min(cap, uniform(base, previous × 3))`` (depends on the previous delay, not on n).
    DECORRELATED = "decorrelated"


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """How long to wait before the n-th consecutive retry.

    Attributes:
        base: delay before the first retry, in seconds (before jitter).
        multiplier: growth factor per consecutive failure.
        cap: no delay is ever longer than this, in seconds.
        jitter: how randomness is applied (see :class:`Jitter`).
    """

    base: float = 0.25
    multiplier: float = 2.0
    cap: float = 10.0
    jitter: Jitter = Jitter.FULL

    def __post_init__(self) -> None:
        check_seconds("BackoffPolicy.base", self.base)
        check_seconds("BackoffPolicy.multiplier", self.multiplier)
        check_seconds("BackoffPolicy.cap", self.cap)
        check_instance("BackoffPolicy.jitter", self.jitter, (Jitter,), "a Jitter")
        if not self.base > 0:
            raise ValueError(f"backoff base must be > 0 seconds, got {self.base!r}")
        if not self.multiplier >= 1:
            raise ValueError(f"backoff multiplier must be >= 1, got {self.multiplier!r}")
        if not self.cap >= self.base:
            raise ValueError(f"backoff cap ({self.cap!r}) must be >= base ({self.base!r})")

    def exponential(self, failures: int) -> float:
        """The un-jittered delay after ``failures`` consecutive failures (``failures >= 1``)."""
        if failures < 1:
            raise ValueError(f"failures must be >= 1, got {failures!r}")
        delay = self.base
        # Multiply step by step so a huge failure count cannot overflow a float power.
        for _ in range(failures - 1):
            delay *= self.multiplier
            if delay >= self.cap:
                return self.cap
        return min(delay, self.cap)

    def delay(self, failures: int, previous: float, random: RandomSource) -> float:
        """The delay before the next retry.

        Args:
            failures: consecutive failures so far, including the one just seen (``>= 1``).
            previous: the previous delay returned for this loop (0 when none); only
                :attr:`Jitter.DECORRELATED` uses it.
            random: uniform ``[0, 1)`` source.
        """
        exp = self.exponential(failures)
        if self.jitter is Jitter.NONE:
            return exp
        if self.jitter is Jitter.FULL:
            return exp * random()
        if self.jitter is Jitter.EQUAL:
            return exp / 2 + exp / 2 * random()
        upper = max(self.base, previous * 3)
        return min(self.cap, self.base + (upper - self.base) * random())


class Backoff:
    """The retry state of one loop: consecutive failures and the last delay chosen."""

    __slots__ = ("_policy", "_random", "failures", "last_delay")

    def __init__(self, policy: BackoffPolicy, random: RandomSource) -> None:
        self._policy = policy
        self._random = random
        self.failures = 0
        self.last_delay = 0.0

    @property
    def policy(self) -> BackoffPolicy:
        """The policy this state follows."""
        return self._policy

    def failure(self) -> float:
        """Record one more failure; return how long to wait before retrying."""
        self.failures += 1
        self.last_delay = self._policy.delay(self.failures, self.last_delay, self._random)
        return self.last_delay

    def success(self) -> None:
        """Record a success: the next failure starts from the base delay again."""
        self.failures = 0
        self.last_delay = 0.0


def jittered(period: float, random_value: float, spread: float = 0.2) -> float:
    """``period`` scaled by a factor in ``[1 - spread, 1 + spread)`` chosen by ``random_value``
    (uniform in ``[0, 1)``)."""
    return period * (1 - spread + 2 * spread * random_value)


# Durations as Consul writes its own settings (Go style: "500ms", "5s", "1m30s", "1.5h");
# mcresolve.sources.target.parse_duration reads them back.


def format_duration(seconds: float) -> str:
    """A string :func:`parse_duration` reads back as ``seconds`` (``"1.5s"``, ``"250ms"``)."""
    if seconds == 0:
        return "0"
    if seconds < 1:
        ms = _plain_number(seconds * 1000)
        if float(ms) / 1000 == seconds:
            return ms + "ms"
    return _plain_number(seconds) + "s"


def _plain_number(number: float) -> str:
    text = repr(number)
    if "e" in text or "E" in text:
        text = f"{number:.12f}".rstrip("0")
    return text[:-2] if text.endswith(".0") else text.rstrip(".")
