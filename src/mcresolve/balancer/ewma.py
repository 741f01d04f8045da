"""Per-endpoint load estimates for power-of-two-choices picking: peak-EWMA latency and in-flight
requests.

Peak-EWMA as in Finagle's ``PeakEwma`` balancer and linkerd2-proxy / tower's
``load::PeakEwma``: a latency above the current estimate replaces it at once (react to a node
becoming slow immediately), a lower one is blended in with a weight that depends on the time since
the previous observation (time constant ``decay``), and reading the estimate decays it towards zero
with the time since the last observation, so an endpoint that stopped receiving traffic because it
looked slow is eventually tried again instead of being starved forever.

Pure: every method takes ``now`` (float seconds, monotonic). :class:`EndpointLoad` is mutated by
the requests it measures; its updates are serialised by a lock so threads may share it.
"""

from __future__ import annotations

import math
import threading

DEFAULT_DECAY = 10.0
"""Time constant of the EWMA in seconds (Finagle ``decayTime`` and linkerd's default: 10 s)."""
DEFAULT_INITIAL_LATENCY = 0.030
"""Estimate of an endpoint never measured (linkerd2-proxy's ``default_rtt``: 30 ms). Non-zero so a
new endpoint is not flooded with every request before its first answer arrives."""
_COST_FLOOR = 1e-6
"""Added to the latency in :meth:`EndpointLoad.cost` so in-flight counts still rank endpoints
whose estimates have decayed to zero."""


class PeakEwma:
    """Peak-sensitive exponentially weighted moving average of latencies, in seconds."""

    __slots__ = ("_estimate", "_stamp", "decay")

    def __init__(
        self, now: float, decay: float = DEFAULT_DECAY, initial: float = DEFAULT_INITIAL_LATENCY
    ) -> None:
        if decay <= 0:
            raise ValueError("PeakEwma decay must be > 0")
        if initial < 0:
            raise ValueError("PeakEwma initial latency must be >= 0")
        self.decay = decay
        self._estimate = initial
        self._stamp = now

    def observe(self, latency: float, now: float) -> None:
        """Record one measured ``latency`` completed at ``now``."""
        latency = max(0.0, latency)
        if latency > self._estimate:
            self._estimate = latency
        else:
            elapsed = max(0.0, now - self._stamp)
            weight = math.exp(-elapsed / self.decay)
            self._estimate = self._estimate * weight + latency * (1.0 - weight)
        self._stamp = max(self._stamp, now)

    def value(self, now: float) -> float:
        """The estimate at ``now``, decayed towards zero since the last observation."""
        elapsed = now - self._stamp
        if elapsed <= 0:
            return self._estimate
        return self._estimate * math.exp(-elapsed / self.decay)


class EndpointLoad:
    """Live load of one endpoint: requests in flight and a :class:`PeakEwma` of their latency.

    The pool calls :meth:`start` when an attempt begins and :meth:`finish` when it ends (with the
    measured latency; for a failure pass a penalty such as the attempt timeout, or ``None`` to
    leave the estimate alone). Pickers read :meth:`cost`.
    """

    __slots__ = ("_inflight", "_lock", "ewma")

    def __init__(self, now: float, ewma: PeakEwma | None = None) -> None:
        self.ewma = ewma if ewma is not None else PeakEwma(now)
        self._inflight = 0
        self._lock = threading.Lock()

    @property
    def inflight(self) -> int:
        """Attempts started and not yet finished."""
        return self._inflight

    def start(self) -> None:
        """An attempt on this endpoint begins."""
        with self._lock:
            self._inflight += 1

    def finish(self, now: float, latency: float | None) -> None:
        """An attempt ends at ``now``; ``latency`` (seconds) feeds the EWMA unless None."""
        with self._lock:
            self._inflight = max(0, self._inflight - 1)
            if latency is not None:
                self.ewma.observe(latency, now)

    def abandon(self, now: float, elapsed: float) -> None:
        """An attempt cancelled after ``elapsed`` seconds (a hedge that lost, a caller that
        gave up) ends at ``now``. Its latency is unknown but at least ``elapsed``: a censored
        observation, which raises the estimate when above it and is otherwise ignored (a lower
        bound says nothing about a node that may be faster). Without it, a slow node whose
        attempts always lose to hedges would keep its old, fast estimate and keep being picked.
        """
        with self._lock:
            self._inflight = max(0, self._inflight - 1)
            if elapsed > self.ewma.value(now):
                self.ewma.observe(elapsed, now)

    def cost(self, now: float) -> float:
        """``(latency estimate + 1 µs) × (in-flight + 1)``: lower is better (linkerd/tower's
        peak-EWMA cost)."""
        return (self.ewma.value(now) + _COST_FLOOR) * (self._inflight + 1)
