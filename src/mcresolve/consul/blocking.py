"""Consul blocking-query rules (pure: no I/O; time is passed in as numbers).

Sources: Consul's "Blocking Queries" API page (reset the index when it goes backwards, sanity-check
that the index is at least 1, rate-limit the loop with a token bucket allowing a burst of 2) and the
behaviour recorded from Consul 1.0.8 (the golden recordings; ``wait`` defaults to 5 min,
is capped at 10 min, the server adds up to ``wait/16``; an index *above* the current one blocks for
the full wait even if the data changes meanwhile; filters are applied after waking, so a wake-up
does not mean the filtered answer changed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Consul caps ``wait`` at 10 minutes.
MAX_WAIT = 600.0
#: Consul's wait when none is given (or ``wait=0``): 5 minutes.
SERVER_DEFAULT_WAIT = 300.0
#: Consul adds a random delay of up to ``wait / JITTER_DIVISOR`` to every blocking wait.
JITTER_DIVISOR = 16
#: Added to ``wait + wait/16`` for a blocking request's client timeout, seconds: room for the
#: request and answer to cross the network and a loaded event loop.
TIMEOUT_MARGIN = 3.0
#: Smallest wait we send: ``wait=0`` would mean Consul's 5 minute default, not "do not wait".
MIN_WAIT = 0.001


@dataclass(frozen=True, slots=True)
class BlockingPolicy:
    """How a watch uses blocking queries.

    Attributes:
        wait: the ``wait`` sent with each blocking request, seconds. Default 60 s, like
            consul-template's ``block_query_wait``: an idle watch costs one request a minute, and a
            connection that silently died (blackholed agent) is noticed after at most
            ``wait + wait/16 +`` :data:`TIMEOUT_MARGIN` (about 67 s) even when nothing else fails.
        min_interval: the token bucket refills one request per ``min_interval`` seconds. 100 ms is
            consul-template's limit (~1 request per 100 ms): it turns a churning service into
            10 requests/s at most while a single change is delivered without delay.
        burst: tokens the bucket holds (Consul's docs suggest a burst of 2, so two quick successive
            changes both go through before the rate limit applies).
    """

    wait: float = 60.0
    min_interval: float = 0.1
    burst: int = 2

    def __post_init__(self) -> None:
        if not MIN_WAIT <= self.wait <= MAX_WAIT:
            raise ValueError(
                f"wait must be between {MIN_WAIT} and {MAX_WAIT} seconds, got {self.wait!r}"
            )
        if not self.min_interval >= 0:
            raise ValueError(f"min_interval must be >= 0 seconds, got {self.min_interval!r}")
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {self.burst!r}")

    @property
    def client_timeout(self) -> float:
        """Total client timeout for one blocking request (see :func:`client_timeout`)."""
        return client_timeout(self.wait)


def effective_wait(wait: float | None) -> float:
    """The wait Consul actually applies for a requested ``wait`` (``None``/``<= 0``: 5 min)."""
    if wait is None or wait <= 0:
        return SERVER_DEFAULT_WAIT
    return min(wait, MAX_WAIT)


def client_timeout(wait: float | None, margin: float = TIMEOUT_MARGIN) -> float:
    """The client-side timeout for a blocking request: strictly above the longest time Consul may
    legitimately hold it (``wait + wait/16``), plus ``margin``. Shorter timeouts abort healthy long
    polls (the bug of py-consul's asyncio client)."""
    applied = effective_wait(wait)
    return applied + applied / JITTER_DIVISOR + margin


def format_wait(seconds: float) -> str:
    """Render a wait for the ``wait`` query parameter in whole milliseconds (``"1500ms"``),
    clamped to ``[1 ms, 10 min]``: never ``0`` (Consul would wait 5 minutes), never above Consul's
    cap (Consul would silently cap it, and our timeout would be computed from the wrong value)."""
    if math.isnan(seconds):
        raise ValueError("wait must be a number of seconds, got NaN")
    ms = round(min(max(seconds, MIN_WAIT), MAX_WAIT) * 1000)
    return f"{max(ms, 1)}ms"


@dataclass(frozen=True, slots=True)
class IndexStep:
    """What to do with the index a blocking answer returned.

    Attributes:
        next_index: the ``index`` to send with the next request (0 = an immediate read).
        went_backwards: the answer's index is below the one we sent: the data was reset (server
            restored from a snapshot or restarted with fresh state); the answer is the current
            state and must be delivered.
        unchanged: the answer's index equals the one we sent: the wait elapsed without a write.
    """

    next_index: int
    went_backwards: bool
    unchanged: bool


def next_index(sent: int, returned: int) -> IndexStep:
    """Apply Consul's index rules to an answer.

    ``sent`` is the index the request carried (0 for an immediate read) and ``returned`` the
    answer's ``X-Consul-Index``.

    * ``returned < sent``: the index went backwards. Reset to 0 so the next request is an immediate
      read that learns the new current index (blocking on the stale, higher index would hold the
      request for the full wait even if the data changes: Consul only wakes when the index passes
      the one sent).
    * otherwise the next index is ``returned``, but never below 1: an index of 0 would make every
      following request return at once (busy loop); index 1 is always safe to block on. A
      returned 0 therefore always leads to index 1, even when it is below the index sent.
    """
    if sent < 0 or returned < 0:
        raise ValueError(f"indexes are never negative (sent={sent!r}, returned={returned!r})")
    if returned < sent:
        # A returned 0 is the "index must be > 0" bug rather than a reset: block on 1, so that
        # a buggy agent cannot make the loop alternate between index 0 and 1 without blocking.
        return IndexStep(next_index=0 if returned else 1, went_backwards=True, unchanged=False)
    return IndexStep(next_index=max(returned, 1), went_backwards=False, unchanged=returned == sent)


def is_change(*, first: bool, previous: object, current: object) -> bool:
    """Whether an answer must be delivered to subscribers.

    The first answer always is; after that only when the value differs from the last delivered
    one. A wake-up is no guarantee of a change: idempotent writes, and filters applied after
    waking (``?passing``), return the same answer with a higher index. An index reset is judged the
    same way: the answer is the current state, delivered only if it differs.
    """
    return first or previous != current


class TokenBucket:
    """Rate limit for a blocking-query loop: ``burst`` requests may go at once, then one per
    ``interval`` seconds. Pure: the caller passes the current monotonic time.

    In the happy case (a change every few seconds) requests proceed without waiting; when the data
    churns, the loop degrades into polling every ``interval``.
    """

    __slots__ = ("_burst", "_interval", "_stamp", "_tokens")

    def __init__(self, interval: float, burst: int, now: float) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0, got {interval!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self._interval = interval
        self._burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now <= self._stamp:
            return
        if self._interval == 0:
            self._tokens = float(self._burst)
        else:
            self._tokens = min(
                float(self._burst), self._tokens + (now - self._stamp) / self._interval
            )
        self._stamp = now

    def delay(self, now: float) -> float:
        """Seconds to wait from ``now`` before the next request may go (0 = at once)."""
        self._refill(now)
        if self._tokens >= 1 or self._interval == 0:
            return 0.0
        return (1 - self._tokens) * self._interval

    def take(self, now: float) -> None:
        """Spend one token for a request sent at ``now`` (call once :meth:`delay` is 0)."""
        self._refill(now)
        self._tokens = max(self._tokens - 1, 0.0) if self._interval else self._tokens

    def reserve(self, now: float) -> float:
        """Take the next token, returning how long to wait before sending (``delay`` + ``take``
        in one step, the request being sent at ``now + returned delay``)."""
        wait = self.delay(now)
        self.take(now + wait)
        return wait
