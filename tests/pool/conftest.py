"""An emulated two-datacenter Consul with a MinIO-like service, for the pool's end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.blocking import BlockingPolicy
from mcresolve.consul.watch import WatchPolicy, WatchRegistry
from mcresolve.testing.consul import ConsulEmulator
from mcresolve.timing import BackoffPolicy

SERVICE = "storage-object-minio"
#: (service ID, port); each has a passing TTL check "<id>-ttl".
DC1 = [("minio-dc1-a", 9001), ("minio-dc1-b", 9002), ("minio-dc1-c", 9003)]
DC2 = [("minio-dc2-a", 9101), ("minio-dc2-b", 9102)]
#: Fast watch retries so that recovery after an agent restart takes milliseconds.
FAST_WATCH = WatchPolicy(
    blocking=BlockingPolicy(wait=30.0, min_interval=0.0, burst=10),
    backoff=BackoffPolicy(base=0.02, multiplier=2.0, cap=0.2),
)


@dataclass
class Cluster:
    consul: ConsulEmulator
    dc1: ConsulClient
    registry: WatchRegistry

    def flip(self, dc: str, service_id: str, status: str) -> None:
        self.consul.dc(dc).set_check_status(f"{service_id}-ttl", status)


async def register(client: ConsulClient, instances: list[tuple[str, int]]) -> None:
    for service_id, port in instances:
        await client.agent_service_register(
            {
                "Name": SERVICE,
                "ID": service_id,
                "Port": port,
                "Address": "127.0.0.1",
                "Tags": ["minio"],
                "Check": {"CheckID": f"{service_id}-ttl", "TTL": "15m", "Status": "passing"},
            }
        )


@pytest.fixture
def consul_version() -> str:
    """The Consul the emulator answers like; a module overrides this fixture with
    ``params=["1.0.8", "1.21"]`` to run its tests against both profiles."""
    return "1.0.8"


@pytest.fixture
async def cluster(consul_version: str) -> AsyncIterator[Cluster]:
    async with ConsulEmulator(
        ["dc1", "dc2"], rtt_ms={("dc1", "dc2"): 40.0}, version=consul_version
    ) as consul:
        dc1, dc2 = (
            ConsulClient(
                ConsulConfig.for_addresses(
                    consul.dc(dc).http_url, connect_timeout=0.5, request_timeout=2.0
                )
            )
            for dc in ("dc1", "dc2")
        )
        registry = WatchRegistry(dc1, FAST_WATCH)
        try:
            await register(dc1, DC1)
            await register(dc2, DC2)
            await dc1.query_create(
                {
                    "Name": SERVICE,
                    "Service": {
                        "Service": SERVICE,
                        "OnlyPassing": True,
                        "Failover": {"Datacenters": ["dc2"]},
                    },
                }
            )
            yield Cluster(consul, dc1, registry)
        finally:
            await registry.aclose()
            await dc1.close()
            await dc2.close()
