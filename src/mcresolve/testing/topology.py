"""The article's multi-cloud set-up on one machine: emulated Consul datacenters ("aws", "gcp")
and a real SeaweedFS cluster whose storage nodes are registered, each in its datacenter, as
``storage-object-minio`` with an HTTP health check that the emulated agent really runs.

::

    async with MultiCloudTopology(buckets=("minio-store",)) as topo:
        topo.target("query", dc="dc1")          # "consul+query://127.0.0.1:<port>/storage-object-minio"
        await topo.kill_storage_node("dc1", 1)
        await topo.wait_for_check(("dc1", 1), "critical", timeout=5)
        await topo.restart_storage_node("dc1", 1)
        await topo.wait_for_check(("dc1", 1), "passing", timeout=5)

Everything (emulator, registrations, waits) lives on the event loop that entered the topology;
the storage cluster runs on its own harness thread and may be shared between topologies
(``storage=``), in which case the topology neither starts nor stops it. See
``docs/testbed.md``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlencode

import minio

from mcresolve.consul.client import ConsulClient
from mcresolve.consul.config import ConsulConfig
from mcresolve.lifecycle import AsyncStartStop
from mcresolve.testing.consul import AgentConfig, ConsulEmulator, Datacenter
from mcresolve.testing.storage import StorageCluster
from mcresolve.testing.topology_consul import (
    CheckTimeout,
    ConsulRegistrations,
    NodeRef,
    RegisteredNode,
)
from mcresolve.timing import format_duration

__all__ = [
    "DEFAULT_CLOUDS",
    "STORAGE_SERVICE",
    "CheckTimeout",
    "MultiCloudTopology",
    "RegisteredNode",
    "StageName",
]

#: The service (and prepared query) name of the reference deployment.
STORAGE_SERVICE = "storage-object-minio"
#: Datacenter name -> the cloud it plays, as in the article (AWS first, GCP second).
DEFAULT_CLOUDS: Mapping[str, str] = {"dc1": "aws", "dc2": "gcp"}

StageName = Literal["dns", "health", "query", "static"]


class MultiCloudTopology(ConsulRegistrations, AsyncStartStop):
    """Emulated Consul datacenters plus a real storage cluster, registered and queryable.

    Args:
        clouds: datacenter name -> cloud role (default ``{"dc1": "aws", "dc2": "gcp"}``); the
            first datacenter is the "local" one by convention.
        nodes_per_datacenter: storage nodes per datacenter (an int for all, or a mapping).
            Ignored when ``storage`` is given (its layout is used; its datacenter names must be
            the same).
        rtt_ms: round-trip time between datacenters (one number for every pair, or per pair);
            orders ``NearestN`` failover.
        check_interval / check_timeout: the HTTP check of each storage node, in seconds.
            1 s interval: a killed node turns critical within about a second.
        deregister_critical_after: ``DeregisterCriticalServiceAfter`` (seconds) of the storage
            registrations; ``None`` (default) keeps dead nodes registered, as tests expect.
        tags: service tags of every storage registration (the cloud name is added).
        buckets: buckets created (if missing) once the cluster serves.
        storage: an already running cluster to use (shared; not stopped by the topology).
        consul_node_names: datacenter -> agent node name (default ``consul-<cloud>``).
        service / query: names of the service and of the prepared query.
        prepared_query: create the prepared query (``Failover: {NearestN: 1}``) in every
            datacenter.
        time_scale, seed, agent_config: passed to :class:`ConsulEmulator`.
        volume_servers: for a cluster the topology starts itself.
        consul_version: which Consul the agents answer like (``"1.0.8"``, the recorded
            default, ``"1.21"``, ``"2.x"``, or a mapping per datacenter): the emulator's
            ``version``.
    """

    def __init__(
        self,
        clouds: Mapping[str, str] | None = None,
        *,
        nodes_per_datacenter: int | Mapping[str, int] = 2,
        rtt_ms: float | Mapping[tuple[str, str], float] = 40.0,
        check_interval: float = 1.0,
        check_timeout: float = 1.0,
        deregister_critical_after: float | None = None,
        tags: Sequence[str] = ("minio",),
        buckets: Sequence[str] = (),
        storage: StorageCluster | None = None,
        consul_node_names: Mapping[str, str] | None = None,
        service: str = STORAGE_SERVICE,
        query: str = STORAGE_SERVICE,
        prepared_query: bool = True,
        time_scale: float = 1.0,
        seed: int | None = None,
        agent_config: AgentConfig | None = None,
        volume_servers: int = 2,
        consul_version: str | Mapping[str, str] = "1.0.8",
    ) -> None:
        self.clouds: dict[str, str] = dict(clouds if clouds is not None else DEFAULT_CLOUDS)
        if not self.clouds:
            raise ValueError("at least one datacenter is needed")
        if check_interval <= 0 or check_timeout <= 0:
            raise ValueError("check_interval and check_timeout must be > 0")
        if storage is not None:
            if set(storage.datacenters) != set(self.clouds):
                raise ValueError(
                    f"the storage cluster's datacenters {list(storage.datacenters)} differ "
                    f"from the topology's {list(self.clouds)}"
                )
            self._layout = {dc: len(storage.nodes_in(dc)) for dc in self.clouds}
        elif isinstance(nodes_per_datacenter, int):
            self._layout = dict.fromkeys(self.clouds, nodes_per_datacenter)
        else:
            self._layout = {dc: nodes_per_datacenter[dc] for dc in self.clouds}
        if isinstance(rtt_ms, Mapping):
            self._rtt = dict(rtt_ms)
        else:
            names = list(self.clouds)
            self._rtt = {(a, b): float(rtt_ms) for i, a in enumerate(names) for b in names[i + 1 :]}
        self.check_interval = check_interval
        self.check_timeout = check_timeout
        self.deregister_critical_after = deregister_critical_after
        self.tags = tuple(tags)
        self.buckets = tuple(buckets)
        self.service = service
        self.query = query
        self._want_query = prepared_query
        self._node_names = {
            dc: (consul_node_names or {}).get(dc, f"consul-{cloud}")
            for dc, cloud in self.clouds.items()
        }
        self._time_scale = time_scale
        self._seed = seed
        self._agent_config = agent_config
        self._volume_servers = volume_servers
        self.consul_version = consul_version
        self._storage = storage
        self._owns_storage = storage is None
        self._consul: ConsulEmulator | None = None
        self._nodes: list[RegisteredNode] = []
        self.query_ids: dict[str, str] = {}
        """Datacenter -> ID of the prepared query created there."""
        self.startup_seconds: float | None = None
        """Wall time of the last :meth:`start`."""

    # -- access -----------------------------------------------------------------------------

    @property
    def consul(self) -> ConsulEmulator:
        """The Consul emulator (``stop_agent``, ``partition``, ``dc(name)``...)."""
        if self._consul is None:
            raise RuntimeError("the topology is not started")
        return self._consul

    @property
    def storage(self) -> StorageCluster:
        """The storage cluster."""
        if self._storage is None:
            raise RuntimeError("the topology is not started")
        return self._storage

    @property
    def datacenters(self) -> list[str]:
        """Datacenter names, in order (the first is the "local" one by convention)."""
        return list(self.clouds)

    @property
    def nodes(self) -> tuple[RegisteredNode, ...]:
        """Every registered storage node, datacenter by datacenter."""
        return tuple(self._nodes)

    def nodes_in(self, datacenter: str) -> tuple[RegisteredNode, ...]:
        """The registered storage nodes of one datacenter."""
        self._dc_or_raise(datacenter)
        return tuple(n for n in self._nodes if n.datacenter == datacenter)

    def node(self, ref: NodeRef) -> RegisteredNode:
        """A registered node by ``(datacenter, index)``, service ID or :class:`StorageNode`."""
        for candidate in self._nodes:
            if isinstance(ref, tuple):
                if (candidate.datacenter, candidate.index) == ref:
                    return candidate
            elif isinstance(ref, str):
                if candidate.service_id == ref:
                    return candidate
            elif candidate.storage is ref:
                return candidate
        raise KeyError(f"no registered storage node {ref!r}")

    def dc(self, datacenter: str) -> Datacenter:
        """The emulated datacenter (``http_url``, ``dns_port``, ``faults``...)."""
        self._dc_or_raise(datacenter)
        return self.consul.dc(datacenter)

    def consul_address(self, datacenter: str) -> str:
        """``127.0.0.1:<http port>`` of a datacenter's agent (a ``CONSUL_HTTP_ADDR`` value)."""
        return f"127.0.0.1:{self.dc(datacenter).http_port}"

    def consul_env(self, datacenter: str) -> dict[str, str]:
        """Environment variables that point the consul CLI (and mcresolve) at a datacenter."""
        return {"CONSUL_HTTP_ADDR": self.consul_address(datacenter)}

    def consul_config(self, datacenter: str, **options: Any) -> ConsulConfig:
        """A :class:`ConsulConfig` for a datacenter's agent (other fields as keywords)."""
        return ConsulConfig.for_addresses(self.dc(datacenter).http_url, **options)

    def consul_client(self, datacenter: str, **options: Any) -> ConsulClient:
        """A new :class:`ConsulClient` on a datacenter's agent (close it when done)."""
        return ConsulClient(self.consul_config(datacenter, **options))

    def minio_client(self, datacenter: str, index: int) -> minio.Minio:
        """A ``minio.Minio`` for one storage node (through its proxy, short timeouts)."""
        return self.storage.node(datacenter, index).client()

    def target(self, stage: StageName, dc: str | None = None, **options: str | int | float) -> str:
        """The target string of a stage as seen from ``dc`` (default: the first datacenter).

        * ``"dns"``: stage 1, ``dns://<service>.service.consul?server=127.0.0.1:<dns port>``
          (SRV through that datacenter's Consul DNS; never fails over).
        * ``"health"``: stage 2, ``consul://127.0.0.1:<http port>/<service>`` (a
          ``?passing`` watch on that datacenter's agent; local scope only).
        * ``"query"``: stage 3, ``consul+query://127.0.0.1:<http port>/<query>`` (the
          prepared query with ``NearestN: 1`` failover).
        * ``"static"``: ``static://`` every storage node of the datacenter.

        Keyword ``options`` become query options (``tag="minio"``, ``refresh="1s"``...;
        underscores turn into dashes: ``empty_hold="0"`` -> ``empty-hold=0``).
        """
        name = dc or self.datacenters[0]
        datacenter = self.dc(name)
        items: list[tuple[str, str]] = []
        if stage == "dns":
            where = f"dns://{self.service}.service.consul"
            items.append(("server", f"127.0.0.1:{datacenter.dns_port}"))
        elif stage == "health":
            where = f"consul://127.0.0.1:{datacenter.http_port}/{self.service}"
        elif stage == "query":
            where = f"consul+query://127.0.0.1:{datacenter.http_port}/{self.query}"
        elif stage == "static":
            where = "static://" + ",".join(n.storage.endpoint for n in self.nodes_in(name))
        else:
            raise ValueError(f"stage must be dns, health, query or static, got {stage!r}")
        for key, value in options.items():
            text = format_duration(value) if isinstance(value, float) else str(value)
            items.append((key.replace("_", "-"), text))
        if not items:
            return where
        return f"{where}?{urlencode(items, safe=':,')}"

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the emulator and (unless shared) the storage cluster, register every storage
        node, create the prepared queries and buckets, and wait until every check passes."""
        started = time.monotonic()
        try:
            self._consul = ConsulEmulator(
                list(self.clouds),
                rtt_ms=self._rtt,
                node_names=self._node_names,
                time_scale=self._time_scale,
                seed=self._seed,
                agent_config=self._agent_config,
                version=self.consul_version,
            )
            if self._storage is None:
                cluster = StorageCluster(
                    datacenters=self._layout, volume_servers=self._volume_servers
                )
                await asyncio.gather(self._consul.start(), cluster.start())
                self._storage = cluster
            else:
                await self._consul.start()
            await self._register_all()
            if self._want_query:
                await self._create_queries()
            if self.buckets:
                await asyncio.to_thread(self._create_buckets)
            await asyncio.gather(*(self._run_check_until_passing(n) for n in self._nodes))
        except BaseException:
            await self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    async def stop(self) -> None:
        """Stop the emulator and, if the topology started it, the storage cluster."""
        consul, self._consul = self._consul, None
        if consul is not None:
            await consul.aclose()
        if self._owns_storage and self._storage is not None:
            cluster, self._storage = self._storage, None
            await cluster.stop()

    def _create_buckets(self) -> None:
        client = self.storage.nodes[0].client()
        for bucket in self.buckets:
            if not client.bucket_exists(bucket):
                client.make_bucket(bucket)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: per datacenter its cloud, agent addresses, stage targets and
        storage nodes with their check status (for demos and logs)."""
        out: dict[str, Any] = {}
        for dc, cloud in self.clouds.items():
            datacenter = self.dc(dc)
            out[dc] = {
                "cloud": cloud,
                "consul_node": self._node_names[dc],
                "http": datacenter.http_url,
                "dns": f"127.0.0.1:{datacenter.dns_port}",
                "agent_running": datacenter.running,
                "targets": {s: self.target(s, dc) for s in ("dns", "health", "query")},
                "storage_nodes": [
                    {
                        "service_id": n.service_id,
                        "endpoint": n.storage.endpoint,
                        "running": n.storage.running,
                        "check": self.check_status(n.service_id),
                    }
                    for n in self.nodes_in(dc)
                ],
            }
        return out

    # -- faults -----------------------------------------------------------------------------

    async def kill_storage_node(self, datacenter: str, index: int) -> RegisteredNode:
        """SIGKILL storage node ``index`` (0-based) of ``datacenter``; its proxy refuses."""
        node = self.node((datacenter, index))
        await node.storage.kill()
        return node

    async def restart_storage_node(self, datacenter: str, index: int) -> RegisteredNode:
        """Restart a storage node; returns once it serves again (its check passes at its next
        run: await :meth:`wait_for_check`)."""
        node = self.node((datacenter, index))
        await node.storage.restart()
        return node

    async def kill_datacenter_storage(self, datacenter: str) -> None:
        """SIGKILL every storage node of ``datacenter`` at once."""
        self._dc_or_raise(datacenter)
        await self.storage.kill_datacenter(datacenter)

    async def restart_datacenter_storage(self, datacenter: str) -> None:
        """Restart every storage node of ``datacenter``."""
        self._dc_or_raise(datacenter)
        await self.storage.restart_datacenter(datacenter)

    async def stop_agent(self, datacenter: str) -> None:
        """Stop a datacenter's Consul agent (HTTP and DNS sockets closed, state kept)."""
        await self.consul.stop_agent(datacenter)

    async def start_agent(self, datacenter: str) -> None:
        """Bring a stopped agent back on the same ports."""
        await self.consul.start_agent(datacenter)

    def partition(self, a: str, b: str) -> None:
        """Cut the WAN link between two datacenters."""
        self.consul.partition(a, b)

    def heal_partition(self, a: str, b: str) -> None:
        """Restore the WAN link between two datacenters."""
        self.consul.heal(a, b)

    async def heal(self, *, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Undo every fault: agents started, WAN links restored, emulator faults cleared,
        storage healed (dead nodes restarted, proxies back to pass-through), and wait until
        every storage check passes again."""
        names = list(self.clouds)
        for dc in names:
            datacenter = self.dc(dc)
            datacenter.faults.clear()
            if not datacenter.running:
                await self.consul.start_agent(dc)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                self.consul.heal(a, b)
        await self.storage.heal()
        await asyncio.gather(*(self._run_check_until_passing(n) for n in self._nodes))
        for dc in names:
            await self.wait_for_passing(dc, timeout=timeout)

    def _dc_or_raise(self, datacenter: str) -> None:
        if datacenter not in self.clouds:
            raise KeyError(f"unknown datacenter {datacenter!r}; have {list(self.clouds)}")
