"""An emulated two-datacenter Consul with a MinIO-like service, for the pool's end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from support import Cluster, Instance, consul_cluster

SERVICE = "storage-object-minio"
DC1: list[Instance] = [
    ("minio-dc1-a", 9001, ["minio"]),
    ("minio-dc1-b", 9002, ["minio"]),
    ("minio-dc1-c", 9003, ["minio"]),
]
DC2: list[Instance] = [("minio-dc2-a", 9101, ["minio"]), ("minio-dc2-b", 9102, ["minio"])]
QUERY = {
    "Name": SERVICE,
    "Service": {"Service": SERVICE, "OnlyPassing": True, "Failover": {"Datacenters": ["dc2"]}},
}


@pytest.fixture
async def cluster(consul_version: str) -> AsyncIterator[Cluster]:
    async with consul_cluster(consul_version, SERVICE, DC1, DC2, query=QUERY) as bed:
        yield bed
