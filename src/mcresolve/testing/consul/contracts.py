"""The seams between the parts of the Consul emulator.

The emulator is split so that each part can be built and tested on its own:

* ``cluster``/``state``/``http_api`` own the datacenters, the catalog, checks, blocking queries and
  the HTTP API (they implement :class:`DatacenterView` and :class:`ClusterView`);
* ``prepared_query`` owns prepared queries (definitions, templates, execution and failover) and is
  mounted by the HTTP API under ``/v1/query``;
* ``dns_server`` answers Consul's DNS interface from a :class:`ClusterView`.

Records are passed around in Consul's own JSON shape (the dicts that ``/v1/health/service/<name>``
returns), so that no part needs to know another's internal classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

#: One element of ``/v1/health/service/<name>``:
#: ``{"Node": {...}, "Service": {...}, "Checks": [...]}`` exactly
#: as Consul 1.0.8 renders it (node-level checks first, then the service's own checks).
HealthEntry = dict[str, Any]


class EmulatorError(Exception):
    """A Consul error answer: HTTP ``status`` with Consul's exact plain-text ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DatacenterUnreachable(EmulatorError):
    """The datacenter is unknown or cannot be reached (agent stopped, WAN link cut).

    HTTP answers 500 with the message (``No path to datacenter`` or an ``rpc error ...``); DNS
    answers SERVFAIL.
    """

    def __init__(self, message: str = "No path to datacenter") -> None:
        super().__init__(500, message)


class QueryNotFound(EmulatorError):
    """No prepared query by that name or ID (HTTP 404 ``Query not found``; DNS NXDOMAIN)."""

    def __init__(self, message: str = "Query not found") -> None:
        super().__init__(404, message)


@dataclass(frozen=True)
class HttpAnswer:
    """A complete HTTP answer produced by a part of the emulator, to be sent as is.

    ``body`` is the JSON value to send (rendered the way the dev agent pretty-prints) when
    ``json_body`` is true, otherwise the exact text (empty string = empty body, no Content-Type).
    """

    status: int
    body: Any = ""
    json_body: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)


class DatacenterView(Protocol):
    """What the prepared-query and DNS parts may read from one emulated datacenter."""

    @property
    def name(self) -> str: ...

    @property
    def agent_node(self) -> str:
        """Name of the node of this datacenter's agent (``n1`` in the recordings)."""
        ...

    def health_service(self, service: str) -> list[HealthEntry]:
        """Every instance of ``service`` (name matched case-insensitively), unfiltered, in Consul's
        order (node name, then service ID), as fresh copies the caller may keep."""
        ...

    def node(self, node: str) -> dict[str, Any] | None:
        """The catalog node
        (``{"ID","Node","Address","Datacenter","TaggedAddresses","Meta",...}``)."""
        ...

    def sort_near(self, entries: Sequence[HealthEntry], near: str) -> list[HealthEntry]:
        """Apply ``?near=`` semantics (``_agent`` = this agent's node; unknown node: unchanged)."""
        ...

    def next_index(self) -> int:
        """Allocate the raft index of a new write in this datacenter (monotonic)."""
        ...

    def execute_prepared_query(self, name_or_id: str) -> dict[str, Any]:
        """Execute a prepared query defined in this datacenter; the response JSON of
        ``/v1/query/<q>/execute`` (``Service``, ``Nodes``, ``DNS``, ``Datacenter``,
        ``Failovers``...).
        Raises :class:`QueryNotFound`."""
        ...


class ClusterView(Protocol):
    """The WAN view from one datacenter's agent: which other datacenters it can reach."""

    def reach(self, origin: str, target: str) -> DatacenterView:
        """The datacenter ``target`` as seen from ``origin``'s agent, or raise
        :class:`DatacenterUnreachable` (unknown name, stopped agent, cut WAN link)."""
        ...

    def datacenters_by_rtt(self, origin: str) -> list[str]:
        """Every known datacenter, nearest first as seen from ``origin`` (itself first)."""
        ...
