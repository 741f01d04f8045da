"""An emulated two-datacenter Consul with the recordings' service, for the source tests."""

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
#: dc1 instances: (service ID, port, tags); each has a passing TTL check "<id>-ttl".
DC1 = [
    ("minio-dc1-a", 9001, ["minio", "primary", "v1"]),
    ("minio-dc1-b", 9002, ["minio", "v1"]),
    ("minio-dc1-c", 9003, ["minio", "v2"]),
    ("minio-dc1-d", 9004, ["minio", "v1"]),
    ("minio-dc1-e", 9005, ["other"]),
]
DC2 = [("minio-dc2-a", 9101, ["minio", "v1"]), ("minio-dc2-b", 9102, ["minio", "v1"])]
#: Fast retries so that recovery tests take milliseconds, not the production backoff.
FAST_WATCH = WatchPolicy(
    blocking=BlockingPolicy(wait=30.0, min_interval=0.0, burst=10),
    backoff=BackoffPolicy(base=0.02, multiplier=2.0, cap=0.2),
)


@dataclass
class Cluster:
    """The emulator plus clients on each agent and a fast watch registry on dc1's."""

    consul: ConsulEmulator
    dc1: ConsulClient
    dc2: ConsulClient
    registry: WatchRegistry

    @property
    def dns_server(self) -> str:
        return f"127.0.0.1:{self.consul.dc('dc1').dns_port}"


async def register(client: ConsulClient, instances: list[tuple[str, int, list[str]]]) -> None:
    for service_id, port, tags in instances:
        await client.agent_service_register(
            {
                "Name": SERVICE,
                "ID": service_id,
                "Port": port,
                "Address": "127.0.0.1",
                "Tags": tags,
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
        dc1 = ConsulClient(
            ConsulConfig.for_addresses(
                consul.dc("dc1").http_url, connect_timeout=0.5, request_timeout=2.0
            )
        )
        dc2 = ConsulClient(
            ConsulConfig.for_addresses(
                consul.dc("dc2").http_url, connect_timeout=0.5, request_timeout=2.0
            )
        )
        registry = WatchRegistry(dc1, FAST_WATCH)
        try:
            await register(dc1, DC1)
            await register(dc2, DC2)
            yield Cluster(consul, dc1, dc2, registry)
        finally:
            await registry.aclose()
            await dc1.close()
            await dc2.close()
