"""Pool events as values: what changed (:class:`EventKind`) and its record (:class:`PoolEvent`).

The balancer decides and returns these; the pool's :class:`~mcresolve.pool.events.EventHub`
delivers them to callbacks and async iterators.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mcresolve.endpoint import Endpoint

if TYPE_CHECKING:
    from mcresolve.balancer.outlier import FailureKind

__all__ = ["EventKind", "PoolEvent"]


class EventKind(enum.Enum):
    """What happened."""

    ADDED = "added"
    """An endpoint appeared in the source's set."""
    REMOVED = "removed"
    """An endpoint left the source's set (Consul health dropped it, or it was deregistered)."""
    EJECTED = "ejected"
    """Passive outlier detection ejected an endpoint (``reason``, ``until``)."""
    RESTORED = "restored"
    """An ejection ended: the endpoint takes traffic again."""
    ALL_EJECTED = "all_ejected"
    """Every endpoint is ejected: the pool asked the source to re-resolve."""
    SOURCE_ERROR = "source_error"
    """The source failed to refresh (the last known good set stays in use)."""
    SOURCE_RECOVERED = "source_recovered"
    """The source answered again after errors."""
    FALLBACK_ENGAGED = "fallback_engaged"
    """The source serves endpoints from its fallback target."""
    FALLBACK_RELEASED = "fallback_released"
    """The source's primary target is in use again."""
    FAILOVER = "failover"
    """Traffic moved to another datacenter (``datacenter``: the new one)."""
    FAILBACK = "failback"
    """Traffic returned to the local datacenter."""


@dataclass(frozen=True, slots=True)
class PoolEvent:
    """One event. ``at`` is the pool clock (monotonic seconds)."""

    kind: EventKind
    at: float
    pool: str
    """The pool's name (its source's description unless given)."""
    endpoint: Endpoint | None = None
    datacenter: str | None = None
    """For FAILOVER/FAILBACK: the datacenter now active; else the endpoint's datacenter."""
    reason: FailureKind | None = None
    """For EJECTED: the failure kind that caused it."""
    until: float | None = None
    """For EJECTED: when the ejection ends (pool clock)."""
    detail: str = ""
    """Human-readable details (never secrets)."""

    def __str__(self) -> str:
        parts = [self.kind.value]
        if self.endpoint is not None:
            parts.append(str(self.endpoint))
        elif self.datacenter:
            parts.append(self.datacenter)
        if self.reason is not None:
            parts.append(f"reason={self.reason.value}")
        if self.detail:
            parts.append(self.detail)
        return " ".join(parts)
