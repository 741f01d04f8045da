"""In-test stand-ins for the emulator's ``DatacenterView`` / ``ClusterView`` contracts, shared by
the DNS responder, DNS server and prepared-query store tests (imported as a top-level module:
``tests/emulator`` is on ``sys.path``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from mcresolve.testing.consul.contracts import DatacenterUnreachable, HealthEntry, QueryNotFound


class _Named(Protocol):
    @property
    def name(self) -> str: ...


DatacenterT = TypeVar("DatacenterT", bound=_Named)


class FakeDatacenter:
    """A ``DatacenterView`` over fixed health entries, in the order given; no coordinates
    (``sort_near`` keeps the order). ``queries`` maps a prepared query's name or ID to what
    executing it returns, or to the exception it raises; unknown ones raise ``QueryNotFound``."""

    def __init__(self, name: str, entries: list[HealthEntry], agent_node: str = "n1") -> None:
        self._name = name
        self._agent_node = agent_node
        self.entries = entries
        self.queries: dict[str, dict[str, Any] | Exception] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def agent_node(self) -> str:
        return self._agent_node

    def health_service(self, service: str) -> list[HealthEntry]:
        return [dict(e) for e in self.entries if e["Service"]["Service"].lower() == service.lower()]

    def node(self, node: str) -> dict[str, Any] | None:
        for e in self.entries:
            if e["Node"]["Node"].lower() == node.lower():
                return dict(e["Node"])
        return None

    def sort_near(self, entries: Sequence[HealthEntry], near: str) -> list[HealthEntry]:
        return list(entries)

    def next_index(self) -> int:
        return 1

    def execute_prepared_query(self, name_or_id: str) -> dict[str, Any]:
        result = self.queries.get(name_or_id, QueryNotFound())
        if isinstance(result, Exception):
            raise result
        return result


class FakeCluster(Generic[DatacenterT]):
    """A ``ClusterView`` over named datacenters: the origin first, then the others in the order
    given, as nearest-first; unknown ones and those in ``down`` are unreachable."""

    def __init__(self, dcs: Iterable[DatacenterT]) -> None:
        self.dcs = {dc.name: dc for dc in dcs}
        self.down: set[str] = set()

    def reach(self, origin: str, target: str) -> DatacenterT:
        if target not in self.dcs or target in self.down:
            raise DatacenterUnreachable()
        return self.dcs[target]

    def datacenters_by_rtt(self, origin: str) -> list[str]:
        return [origin, *(name for name in self.dcs if name != origin)]
