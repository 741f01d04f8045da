"""Test bed for ResilientMinio (fixtures re-exported by ``conftest.py``): the session's real
SeaweedFS cluster (``storage_cluster`` / ``storage``) and an emulated two-datacenter Consul where
every storage node is registered in its datacenter with an HTTP check on its ``/healthz`` (through
its fault proxy, so a killed or blackholed node really turns critical), plus the prepared query
``storage-object-minio`` that fails over to dc2.

The Consul emulator runs on its own loop thread (like the storage harness), so synchronous tests
can call the blocking client directly. One emulator per test module.

(The directory is not named ``tests/minio``: with ``src = ["src", "tests"]`` ruff would then treat
the ``minio`` package as first-party in every file of the repository.)
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from mcresolve.consul.config import ConsulConfig
from mcresolve.minio import HttpPolicy, ResilientMinio
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.testing.consul import ConsulEmulator
from mcresolve.testing.storage import StorageCluster
from support import until_sync

SERVICE = "storage-object-minio"
BUCKET = "resilient-minio"
#: Short timeouts: a blackholed node costs READ_TIMEOUT once (the tests measure that).
READ_TIMEOUT = 1.5
FAST_HTTP = HttpPolicy(connect_timeout=1.0, read_timeout=READ_TIMEOUT)
#: Generous deadline for loaded CI machines; attempt timeout equal to the read timeout.
POLICY = CallPolicy(attempt_timeout=READ_TIMEOUT, deadline=30.0, max_attempts=8)
T = TypeVar("T")


class ConsulBed:
    """A ConsulEmulator on a private loop thread, with the storage nodes registered."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.emulator: ConsulEmulator = self.run(self._start())

    async def _start(self) -> ConsulEmulator:
        emulator = ConsulEmulator(["dc1", "dc2"], rtt_ms={("dc1", "dc2"): 40.0})
        await emulator.start()
        return emulator

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def url(self, dc: str) -> str:
        return self.emulator.dc(dc).http_url

    def config(self, dc: str = "dc1") -> ConsulConfig:
        return ConsulConfig.for_addresses(self.url(dc), connect_timeout=0.5, request_timeout=3.0)

    def request(self, dc: str, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url(dc)}{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text else None

    def passing(self, dc: str) -> set[str]:
        entries = self.request(dc, "GET", f"/v1/health/service/{SERVICE}?passing")
        return {entry["Service"]["ID"] for entry in entries}

    def close(self) -> None:
        try:
            self.run(self.emulator.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def consul_bed(mcresolve_storage_cluster: StorageCluster) -> Iterator[ConsulBed]:
    """Consul with every storage node registered in its datacenter, checks passing."""
    bed = ConsulBed()
    try:
        for node in mcresolve_storage_cluster.nodes:
            bed.request(
                node.datacenter,
                "PUT",
                "/v1/agent/service/register",
                {
                    "Name": SERVICE,
                    "ID": node.name,
                    "Address": node.address,
                    "Port": node.port,
                    "Tags": ["minio"],
                    "Check": {
                        "CheckID": f"{node.name}-http",
                        "HTTP": node.health_url,
                        "Interval": "500ms",
                        "Timeout": "500ms",
                    },
                },
            )
        bed.request(
            "dc1",
            "POST",
            "/v1/query",
            {
                "Name": SERVICE,
                "Service": {
                    "Service": SERVICE,
                    "OnlyPassing": True,
                    "Failover": {"Datacenters": ["dc2"]},
                },
            },
        )
        for dc in mcresolve_storage_cluster.datacenters:
            names = {n.name for n in mcresolve_storage_cluster.nodes_in(dc)}
            until_sync(lambda dc=dc, names=names: bed.passing(dc) == names, what=f"{dc} passing")
        yield bed
    finally:
        bed.close()


@pytest.fixture(scope="module")
def bucket(mcresolve_storage_cluster: StorageCluster) -> str:
    """The module's bucket (created once through a direct node client)."""
    client = mcresolve_storage_cluster.nodes[0].client()
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
    return BUCKET


def static_target(cluster: StorageCluster, dc: str = "dc1") -> str:
    return "static://" + ",".join(node.endpoint for node in cluster.nodes_in(dc))


def make_client(cluster: StorageCluster, target: str, **kwargs: Any) -> ResilientMinio:
    options: dict[str, Any] = {
        "access_key": cluster.access_key,
        "secret_key": cluster.secret_key,
        "secure": False,
        "region": "us-east-1",
        "http": FAST_HTTP,
        "call_policy": POLICY,
    }
    options.update(kwargs)
    return ResilientMinio(target, **options)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_all_passing(bed: ConsulBed, cluster: StorageCluster) -> None:
    """After a heal: wait until Consul sees every node passing again."""
    for dc in cluster.datacenters:
        names = {n.name for n in cluster.nodes_in(dc)}
        until_sync(lambda dc=dc, names=names: bed.passing(dc) == names, what=f"{dc} passing")
