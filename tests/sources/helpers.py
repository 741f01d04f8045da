"""A source driven by the test (publishes exactly what the test tells it to), waiting for
resolutions, and the prepared query the stage 1 and stage 3 tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from mcresolve.endpoint import Endpoint
from mcresolve.sources.base import PublishingSource, Resolution

from .conftest import SERVICE, Cluster


def eps(*ports: int, dc: str = "dc1") -> tuple[Endpoint, ...]:
    """Endpoints 127.0.0.1:<port> in ``dc``."""
    return tuple(Endpoint("127.0.0.1", p, datacenter=dc) for p in ports)


class ManualSource(PublishingSource):
    """Publishes answers and errors when the test calls :meth:`answer` / :meth:`fail`."""

    def __init__(self, description: str = "manual://primary") -> None:
        super().__init__(description)
        self.refreshes = 0
        self.started = asyncio.Event()

    async def start(self) -> None:
        self.started.set()

    async def _run(self) -> None:
        return None

    def answer(self, endpoints: Sequence[Endpoint], datacenter: str | None = "dc1") -> None:
        self._publish(Resolution.answered(endpoints, self.description, datacenter))

    def fail(self, error: Exception) -> None:
        self._publish_error(error)

    def refresh_now(self) -> None:
        self.refreshes += 1


async def next_matching(
    source: PublishingSource, predicate: Callable[[Resolution], bool], within: float = 10.0
) -> Resolution:
    """The first resolution (current or later) that satisfies ``predicate``, within ``within``
    seconds (a deadline, not a sleep)."""
    async with asyncio.timeout(within):
        async for resolution in source.updates():
            if predicate(resolution):
                return resolution
    raise AssertionError(f"{source} stopped before a matching resolution")


async def define_query(cluster: Cluster, name: str = SERVICE) -> None:
    """Create prepared query ``name`` in dc1: passing ``minio``-tagged instances of the service,
    failing over to dc2."""
    await cluster.dc1.query_create(
        {
            "Name": name,
            "Service": {
                "Service": SERVICE,
                "Tags": ["minio"],
                "OnlyPassing": True,
                "Failover": {"Datacenters": ["dc2"]},
            },
        }
    )
