"""Waiting for resolutions, and the prepared query the stage 1 and stage 3 tests share (the source
the test drives is in ``tests/manual_source.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mcresolve.sources.base import PublishingSource, Resolution
from support import Cluster

from .conftest import SERVICE


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
