"""What every sidecar listener offers the sidecar that runs it.

A listener accepts client connections on one local address and carries each one to an endpoint
of one :class:`~mcresolve.pool.EndpointPool`. The sidecar starts it, reads its counters for the
admin port, drains it on shutdown and closes it; how bytes move (whole TCP connections, or
HTTP/1.1 requests one at a time) is the listener's own concern.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Listener", "ListenerStats"]


@dataclass(frozen=True, slots=True)
class ListenerStats:
    """Counters of one listener since it started (totals only grow)."""

    active_connections: int = 0
    accepted_total: int = 0
    requests_total: int = 0
    retried_total: int = 0
    failed_total: int = 0
    bytes_in_total: int = 0
    bytes_out_total: int = 0
    rejected_total: int = 0
    """Connections accepted and closed at once because the listener was at its limit."""


class Listener(Protocol):
    """One local address forwarded to one pool."""

    @property
    def mode(self) -> str:
        """``"tcp"`` or ``"http"``."""
        ...

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (host, port); valid after :meth:`start`."""
        ...

    async def start(self) -> None:
        """Bind and begin accepting connections."""
        ...

    async def drain(self, grace: float) -> None:
        """Stop accepting; let work in flight finish for up to ``grace`` seconds, then cut it."""
        ...

    async def aclose(self) -> None:
        """Close at once: the listening socket and every connection."""
        ...

    def stats(self) -> ListenerStats:
        """The counters now."""
        ...
