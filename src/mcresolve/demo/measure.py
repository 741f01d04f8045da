"""What the demo's traffic recorded, and the numbers the table shows (pure: no I/O, no clock).

A :class:`Sample` is one shopper visit (a page and its images), one local-only probe or one write;
:func:`summarize` turns the samples of one phase into :class:`PhaseStats`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

SHOPPERS = "shoppers"
"""Traffic class: shoppers resolving the storefront through Consul (stage 3), storefronts using
``storage-object-minio.query.consul`` (stage 3)."""
LOCAL_ONLY = "local-only"
"""Traffic class: visits to the stage-2 storefront whose storage scope is its own datacenter."""
WRITES = "writes"
"""Traffic class: object uploads through Consul's prepared query (stage 3)."""
SIDECAR = "sidecar"
"""Traffic class: visits to the storefront whose storage client is a plain ``minio.Minio`` on
one local port, an ``mcresolve sidecar`` (tcp mode) on the prepared query (stage 3)."""

TRAFFIC_CLASSES = (SHOPPERS, LOCAL_ONLY, SIDECAR, WRITES)


@dataclass(frozen=True, slots=True)
class Sample:
    """One unit of traffic.

    ``started`` is seconds on the demo's monotonic clock; ``latency`` seconds; ``served_by``
    the datacenter that answered ('' when unknown or failed); ``error`` a short reason.
    """

    traffic: str
    started: float
    latency: float
    ok: bool
    served_by: str = ""
    error: str = ""

    @property
    def ended(self) -> float:
        """When the request finished."""
        return self.started + self.latency


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``fraction`` in [0, 1]) or ``None`` for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be within [0, 1]")
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class PhaseStats:
    """Counts and latencies of one traffic class over one phase of a scenario.

    ``failover_window`` is the time from the phase start to the end of the last failed request
    (``0.0`` when nothing failed): how long the fault was visible to this traffic.
    """

    traffic: str
    served: int
    failed: int
    p50: float | None
    p99: float | None
    failover_window: float
    served_by: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    errors: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def total(self) -> int:
        """Requests issued."""
        return self.served + self.failed

    @property
    def failed_fraction(self) -> float:
        """Failed / total (0 when nothing was issued)."""
        return self.failed / self.total if self.total else 0.0

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "traffic": self.traffic,
            "served": self.served,
            "failed": self.failed,
            "p50_ms": None if self.p50 is None else round(self.p50 * 1000, 1),
            "p99_ms": None if self.p99 is None else round(self.p99 * 1000, 1),
            "failover_window_s": round(self.failover_window, 2),
            "served_by": dict(self.served_by),
            "errors": dict(self.errors),
        }


def summarize(samples: Iterable[Sample], traffic: str, *, start: float, end: float) -> PhaseStats:
    """Statistics of ``traffic`` for the samples that *ended* within ``[start, end)``: what
    users saw during that time (a request that hung into the next phase is judged there; one
    rescued by a repair does not count as served during the fault).

    Latency percentiles are over served requests only (a refused request is fast, not good).
    """
    chosen = [s for s in samples if s.traffic == traffic and start <= s.ended < end]
    served = [s for s in chosen if s.ok]
    failed = [s for s in chosen if not s.ok]
    latencies = [s.latency for s in served]
    window = max((s.ended - start for s in failed), default=0.0)
    return PhaseStats(
        traffic=traffic,
        served=len(served),
        failed=len(failed),
        p50=percentile(latencies, 0.50),
        p99=percentile(latencies, 0.99),
        failover_window=max(0.0, window),
        served_by=MappingProxyType(dict(Counter(s.served_by for s in served if s.served_by))),
        errors=MappingProxyType(dict(Counter(s.error or "error" for s in failed))),
    )
