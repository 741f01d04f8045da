"""The demo's infrastructure on loopback: two emulated Consul datacenters and a real SeaweedFS
cluster whose storage nodes are split across them, registered with HTTP health checks, plus the
prepared query ``storage-object-minio`` with ``Failover: NearestN 1`` in each datacenter.

::

    async with DemoStack(DemoLayout()) as stack:
        stack.consul.dc("dc1").http_url
        await stack.await_storage_passing({"dc1": 2, "dc2": 2}, within=20)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.testing.consul import ConsulEmulator
from mcresolve.testing.storage import StorageCluster, StorageNode

STORAGE_SERVICE = "storage-object-minio"
"""The service name of the storage nodes, as in the reference deployment."""

STORAGE_QUERY = "storage-object-minio"
"""The prepared query that fails over to the nearest other datacenter."""


@dataclass(frozen=True)
class DemoLayout:
    """What the demo brings up.

    ``clouds`` labels each datacenter (dc1 plays AWS, dc2 plays GCP); ``storage_nodes`` is the
    number of S3 gateways per datacenter; ``rtt_ms`` the WAN round trip between the two.
    ``check_interval`` is the storage nodes' HTTP check interval (Consul duration).
    """

    clouds: Mapping[str, str] = field(default_factory=lambda: {"dc1": "aws", "dc2": "gcp"})
    storage_nodes: int = 2
    volume_servers: int = 3
    rtt_ms: float = 40.0
    check_interval: str = "1s"
    check_timeout: str = "1s"
    access_key: str = "mcresolve-access"
    secret_key: str = "mcresolve-secret-key"

    @property
    def datacenters(self) -> tuple[str, ...]:
        """Datacenter names, in order."""
        return tuple(self.clouds)


def storage_registration(node: StorageNode, layout: DemoLayout) -> dict[str, object]:
    """The agent service definition of one storage node (HTTP check on its ``/healthz``)."""
    return {
        "ID": f"{STORAGE_SERVICE}-{node.name}",
        "Name": STORAGE_SERVICE,
        "Tags": ["minio", "s3", layout.clouds[node.datacenter]],
        "Address": node.address,
        "Port": node.port,
        "Meta": {"node": node.name, "cloud": layout.clouds[node.datacenter]},
        "Check": {
            "CheckID": f"{STORAGE_SERVICE}-{node.name}-http",
            "Name": f"{node.name} S3 /healthz",
            "HTTP": node.health_url,
            "Interval": layout.check_interval,
            "Timeout": layout.check_timeout,
        },
    }


def storage_query_definition() -> dict[str, object]:
    """The article's prepared query: passing instances only, the nearest other datacenter when
    the local one has none, DNS TTL 0."""
    return {
        "Name": STORAGE_QUERY,
        "Service": {
            "Service": STORAGE_SERVICE,
            "OnlyPassing": True,
            "Failover": {"NearestN": 1},
        },
        "DNS": {"TTL": "0s"},
    }


class DemoStack:
    """Consul emulator + SeaweedFS cluster + registrations. Stop with :meth:`stop` (idempotent)
    or use as an async context manager; everything started is stopped even when start fails."""

    def __init__(self, layout: DemoLayout | None = None) -> None:
        self.layout = layout if layout is not None else DemoLayout()
        dcs = self.layout.datacenters
        self.consul = ConsulEmulator(dcs, rtt_ms={(dcs[0], dcs[-1]): self.layout.rtt_ms})
        self.storage = StorageCluster(
            datacenters={dc: self.layout.storage_nodes for dc in dcs},
            access_key=self.layout.access_key,
            secret_key=self.layout.secret_key,
            volume_servers=self.layout.volume_servers,
        )
        self._clients: dict[str, ConsulClient] = {}
        self.query_ids: dict[str, str] = {}
        self.startup_seconds: float | None = None

    async def __aenter__(self) -> DemoStack:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def client(self, dc: str) -> ConsulClient:
        """An mcresolve Consul client bound to ``dc``'s agent (cached; closed by :meth:`stop`)."""
        if dc not in self._clients:
            address = self.consul.dc(dc).http_url
            self._clients[dc] = ConsulClient(
                ConsulConfig.for_addresses(address, connect_timeout=1.0, request_timeout=3.0)
            )
        return self._clients[dc]

    async def start(self) -> None:
        """Start Consul and storage, register every storage node in its datacenter's agent,
        create the prepared query in every datacenter and wait until every node passes."""
        began = time.monotonic()
        try:
            await self.consul.start()
            await self.storage.start()
            for node in self.storage.nodes:
                await self.client(node.datacenter).agent_service_register(
                    storage_registration(node, self.layout)
                )
            for dc in self.layout.datacenters:
                self.query_ids[dc] = await self.client(dc).query_create(storage_query_definition())
            await self.await_storage_passing(
                {dc: self.layout.storage_nodes for dc in self.layout.datacenters}, within=30.0
            )
        except BaseException:
            await self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    async def stop(self) -> None:
        """Stop everything (idempotent)."""
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        try:
            await self.storage.stop()
        finally:
            await self.consul.stop()

    async def passing_storage(self, dc: str) -> int:
        """How many storage nodes of ``dc`` Consul reports passing (read from the emulator's
        state, so it works while that agent is stopped)."""
        entries = self.consul.dc(dc).health_service(STORAGE_SERVICE)
        return sum(
            1 for entry in entries if all(check["Status"] == "passing" for check in entry["Checks"])
        )

    async def await_storage_passing(self, counts: Mapping[str, int], *, within: float) -> None:
        """Wait until Consul sees exactly ``counts[dc]`` passing storage nodes in each dc."""
        deadline = time.monotonic() + within
        pause = 0.05
        while True:
            seen = {dc: await self.passing_storage(dc) for dc in counts}
            if seen == dict(counts):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"storage health: wanted {dict(counts)}, Consul shows {seen}")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 0.5)
