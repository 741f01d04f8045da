"""The benchmark's world: the multi-cloud topology plus what the benchmark adds to it.

Built on :class:`mcresolve.testing.topology.MultiCloudTopology` (emulated Consul ``dc1``/``dc2``,
real SeaweedFS nodes behind fault proxies, HTTP checks, the prepared query). The benchmark adds:

* a second, TTL check per storage registration (``<service id>-maintenance``, passing), so that
  "health check flipped to critical while the node still answers" lasts as long as the
  scenario wants (the HTTP check would turn passing again at its next run);
* per-peer counting relays to the ``dc1`` agent (:mod:`benchmarks.failover.relay`), stopped and
  started with the agent;
* a bucket with the objects the read workload fetches.
"""

from __future__ import annotations

import asyncio
import io
import os
from dataclasses import dataclass

from benchmarks.failover.relay import ConsulRelays

from mcresolve.testing.topology import MultiCloudTopology, RegisteredNode

__all__ = ["BenchEnvironment", "EnvironmentSettings"]

LOCAL_DC = "dc1"
REMOTE_DC = "dc2"


@dataclass(frozen=True)
class EnvironmentSettings:
    """Shape of the world: nodes per datacenter, objects to read, check interval, the Consul
    version the emulator answers like."""

    nodes_per_datacenter: int = 2
    bucket: str = "failover-bench"
    objects: int = 16
    object_size: int = 4096
    check_interval: float = 1.0
    check_timeout: float = 1.0
    #: which Consul the emulated agents answer like: "1.0.8" (recorded), "1.21", "2.x"
    consul_version: str = "1.0.8"


class BenchEnvironment:
    """Topology + maintenance checks + relays + test objects. Use ``async with``."""

    def __init__(self, settings: EnvironmentSettings | None = None) -> None:
        self.settings = settings or EnvironmentSettings()
        self.topology = MultiCloudTopology(
            nodes_per_datacenter=self.settings.nodes_per_datacenter,
            check_interval=self.settings.check_interval,
            check_timeout=self.settings.check_timeout,
            buckets=(self.settings.bucket,),
            consul_version=self.settings.consul_version,
        )
        self._relays: list[ConsulRelays] = []
        self.keys: tuple[str, ...] = tuple(f"obj-{i:03d}" for i in range(self.settings.objects))
        self.payload = os.urandom(self.settings.object_size)

    async def __aenter__(self) -> BenchEnvironment:
        await self.topology.start()
        try:
            await self._register_maintenance_checks()
            await asyncio.to_thread(self._put_objects)
        except BaseException:
            await self.topology.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close_relays()
        await self.topology.stop()

    # -- what peers need --------------------------------------------------------------------

    @property
    def access_key(self) -> str:
        return self.topology.storage.access_key

    @property
    def secret_key(self) -> str:
        return self.topology.storage.secret_key

    @property
    def service(self) -> str:
        return self.topology.service

    def nodes(self, datacenter: str) -> tuple[RegisteredNode, ...]:
        return self.topology.nodes_in(datacenter)

    @property
    def victim(self) -> RegisteredNode:
        """The node single-node faults hit: the first node of the local datacenter."""
        return self.topology.node((LOCAL_DC, 0))

    async def open_relays(self) -> ConsulRelays:
        """New counting relays (HTTP + DNS) to the local agent, for one peer."""
        dc = self.topology.dc(LOCAL_DC)
        relays = ConsulRelays(dc.http_port, dc.dns_port)
        await relays.start()
        if not dc.running:
            await relays.stop()
        self._relays.append(relays)
        return relays

    async def close_relays(self) -> None:
        """Stop every relay opened so far (between scenarios)."""
        relays, self._relays = self._relays, []
        for relay in relays:
            await relay.stop()

    # -- faults -----------------------------------------------------------------------------

    async def stop_local_agent(self) -> None:
        """The local Consul agent dies: its HTTP and DNS go away, and so do the relays to it."""
        await self.topology.stop_agent(LOCAL_DC)
        for relay in self._relays:
            await relay.stop()

    async def start_local_agent(self) -> None:
        """The local agent returns on the same ports (state kept)."""
        await self.topology.start_agent(LOCAL_DC)
        for relay in self._relays:
            await relay.restart()

    def flip_maintenance(self, node: RegisteredNode, status: str) -> None:
        """Set the node's maintenance TTL check (``critical`` takes it out of ``?passing``)."""
        self.topology.dc(node.datacenter).set_check_status(
            maintenance_check_id(node), status, f"benchmark set {status}"
        )

    async def heal(self) -> None:
        """Everything back to normal and every check passing (between scenarios)."""
        await self.topology.heal()
        for dc in self.topology.datacenters:
            for node in self.nodes(dc):
                self.flip_maintenance(node, "passing")
        for dc in self.topology.datacenters:
            await self.topology.wait_for_passing(dc, timeout=30)

    # -- set-up -----------------------------------------------------------------------------

    async def _register_maintenance_checks(self) -> None:
        for dc in self.topology.datacenters:
            async with self.topology.consul_client(dc) as consul:
                for node in self.nodes(dc):
                    await consul.agent_check_register(
                        {
                            "CheckID": maintenance_check_id(node),
                            "Name": f"maintenance flag of {node.service_id}",
                            "ServiceID": node.service_id,
                            "TTL": "24h",
                            "Status": "passing",
                        }
                    )
        for dc in self.topology.datacenters:
            await self.topology.wait_for_passing(dc, timeout=30)

    def _put_objects(self) -> None:
        client = self.topology.minio_client(LOCAL_DC, 0)
        for key in self.keys:
            client.put_object(
                self.settings.bucket, key, io.BytesIO(self.payload), len(self.payload)
            )


def maintenance_check_id(node: RegisteredNode) -> str:
    """ID of the benchmark's maintenance TTL check of a node."""
    return f"{node.service_id}-maintenance"
