"""An emulated two-datacenter Consul with the recordings' service, for the source tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from support import Cluster, Instance, consul_cluster

SERVICE = "storage-object-minio"
DC1: list[Instance] = [
    ("minio-dc1-a", 9001, ["minio", "primary", "v1"]),
    ("minio-dc1-b", 9002, ["minio", "v1"]),
    ("minio-dc1-c", 9003, ["minio", "v2"]),
    ("minio-dc1-d", 9004, ["minio", "v1"]),
    ("minio-dc1-e", 9005, ["other"]),
]
DC2: list[Instance] = [
    ("minio-dc2-a", 9101, ["minio", "v1"]),
    ("minio-dc2-b", 9102, ["minio", "v1"]),
]


@pytest.fixture
async def cluster(consul_version: str) -> AsyncIterator[Cluster]:
    async with consul_cluster(consul_version, SERVICE, DC1, DC2) as bed:
        yield bed
