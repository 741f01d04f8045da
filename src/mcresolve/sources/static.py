"""A fixed list of endpoints (``static://10.0.0.1:9000,10.0.0.2:9000``)."""

from __future__ import annotations

from collections.abc import Sequence

from mcresolve.arguments import check_instance, check_iterable
from mcresolve.endpoint import Endpoint
from mcresolve.sources.base import PublishingSource, Resolution
from mcresolve.sources.target import StaticTarget

__all__ = ["StaticSource", "endpoints_of"]


def endpoints_of(target: StaticTarget) -> tuple[Endpoint, ...]:
    """The endpoints a static target names (entries without a port take ``port=``)."""
    default_port = target.options.port
    endpoints = []
    for entry in target.endpoints:
        port = entry.port if entry.port is not None else default_port
        assert port is not None  # StaticTarget guarantees it
        endpoints.append(Endpoint(entry.host, port))
    return tuple(dict.fromkeys(endpoints))


class StaticSource(PublishingSource):
    """Publishes one fixed set at start and never changes it."""

    def __init__(self, endpoints: StaticTarget | Sequence[Endpoint], description: str = "") -> None:
        check_instance("description", description, (str,), "a string")
        if not isinstance(endpoints, StaticTarget):
            check_iterable("endpoints", endpoints, "a StaticTarget or a sequence of Endpoint")
            endpoints = tuple(endpoints)
            for item in endpoints:
                check_instance("endpoints", item, (Endpoint,), "a sequence of Endpoint")
        if isinstance(endpoints, StaticTarget):
            self._endpoints = endpoints_of(endpoints)
            description = description or str(endpoints)
        else:
            self._endpoints = tuple(endpoints)
            description = description or "static://" + ",".join(
                e.host_port for e in self._endpoints
            )
        super().__init__(description)

    async def start(self) -> None:
        if self.current is None:
            self._publish(Resolution.answered(self._endpoints, self.description))

    async def _run(self) -> None:  # pragma: no cover - start() publishes, nothing runs
        return None
