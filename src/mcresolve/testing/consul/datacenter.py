"""One emulated datacenter: a single dev-mode agent (server + client on one node) with its catalog,
its local agent, its HTTP API and DNS listeners, prepared queries and fault injection.

Implements :class:`~mcresolve.testing.consul.contracts.DatacenterView`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from .agent import AgentConfig, LocalAgent
from .catalog import (
    CHECK_STATES,
    PASSING,
    SERF_CHECK_ID,
    CatalogState,
    CheckRecord,
    NodeRecord,
    ServiceRecord,
)
from .connlimit import ConnectionLimiter, LimitedSite
from .contracts import ClusterView, HealthEntry, QueryNotFound
from .faults import AgentFaults
from .http_api import AgentHttpApi
from .profile import LEGACY, ConsulProfile
from .queries import sort_near
from .timebase import EmulatorClock


@dataclass(frozen=True)
class PeerLink:
    """A cluster peering as the importing side sees it: the peer's name here, the exporting
    datacenter and the services it exports (``None`` = all)."""

    name: str
    remote: Datacenter
    services: frozenset[str] | None = None

    def exports(self, service: str) -> bool:
        return self.services is None or service.lower() in self.services


def with_peer_name(entry: HealthEntry, peer: str) -> HealthEntry:
    """A health entry imported from a peer: ``PeerName`` on the node (after ``Meta``), the
    service and each check (after ``Definition``), as structs.Node/NodeService/HealthCheck
    render it when set (PR #13835; the field positions are *inferred* from the structs)."""
    node: dict[str, Any] = {}
    for key, value in entry["Node"].items():
        if key == "CreateIndex":
            node["PeerName"] = peer
        node[key] = value
    service = dict(entry["Service"])
    service["PeerName"] = peer
    checks = []
    for check in entry["Checks"]:
        out: dict[str, Any] = {}
        for key, value in check.items():
            if key == "CreateIndex":
                out["PeerName"] = peer
            out[key] = value
        checks.append(out)
    return {"Node": node, "Service": service, "Checks": checks}


class Datacenter:
    """A datacenter and its agent. Obtain it with ``ConsulEmulator.dc(name)``."""

    def __init__(
        self,
        name: str,
        *,
        agent_node: str,
        cluster: ClusterView,
        clock: EmulatorClock,
        ordinal: int,
        host: str = "127.0.0.1",
        http_port: int = 0,
        dns_port: int = 0,
        agent_config: AgentConfig | None = None,
        lookup: Callable[[str], Datacenter] | None = None,
        seed: int | None = None,
        profile: ConsulProfile = LEGACY,
    ) -> None:
        self._name = name
        #: which Consul this datacenter's agent answers like (see ``profile.py``)
        self.profile = profile
        self._agent_node = agent_node
        self.cluster = cluster
        self._lookup: Callable[[str], Datacenter] = lookup or (lambda _name: self)
        #: Consul-time seconds after a stop until WAN members show the agent as failed (0.5 s
        #: observed) and until ``?dc=`` calls say ``No path to datacenter`` (54.6 s observed).
        self.member_fail_after = 0.5
        self.no_path_after = 54.6
        self.clock = clock
        self.host = host
        self.node_id = str(uuid.uuid4())
        #: the fictional server RPC port (dc1 8320, dc2 8330, ... as in the recordings);
        #: serf LAN is +1, serf WAN +2. Nothing listens there; it appears in texts only.
        self.server_port = 8310 + 10 * ordinal
        self.catalog = CatalogState(name, profile)
        #: seeds the agent's and the HTTP API's random choices (check staggers, wait jitter)
        self.seed: str | None = None if seed is None else f"{seed}-{name}"
        self.agent = LocalAgent(self.catalog, agent_node, clock, agent_config, seed=self.seed)
        self.faults = AgentFaults()
        #: ``limits.http_max_conns_per_client`` (modern default 200, ``None`` = no limit);
        #: may be changed at any time, new connections see the new value
        self.http_max_conns_per_client: int | None = profile.http_max_conns_per_client
        #: open HTTP connections per client IP (``.open``) and refusals (``.refused``)
        self.connections = ConnectionLimiter(lambda: self.http_max_conns_per_client)
        self.http_port = http_port
        self.dns_port = dns_port
        self.running = False
        self.stopped_at: float | None = None
        self.down_event = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: LimitedSite | None = None
        self._api: AgentHttpApi | None = None
        self._dns: Any = None
        self._dns_enable_truncate = False
        self.prepared_queries: Any = None
        #: cluster peers this datacenter imports services from (name -> link)
        self.peers: dict[str, PeerLink] = {}
        self._bootstrap()

    # ---------------------------------------------------------------- DatacenterView

    @property
    def name(self) -> str:
        return self._name

    @property
    def agent_node(self) -> str:
        return self._agent_node

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:<port>`` of this datacenter's agent."""
        return f"http://{self.host}:{self.http_port}"

    def health_service(self, service: str) -> list[HealthEntry]:
        return [self.catalog.health_entry(s) for s in self.catalog.instances(service)]

    def peer_health_service(self, peer: str, service: str) -> list[HealthEntry] | None:
        """Every instance of ``service`` imported from cluster peer ``peer`` (``None`` when
        no peer has that name; ``[]`` when the peer does not export the service)."""
        link = self.peers.get(peer)
        if link is None:
            return None
        if not link.exports(service):
            return []
        return [with_peer_name(e, peer) for e in link.remote.health_service(service)]

    def node(self, node: str) -> dict[str, Any] | None:
        record = self.catalog.node(node)
        return self.catalog.render_node(record) if record else None

    def distances_from(self, near: str) -> dict[str, float] | None:
        """Distances (lower-cased node -> value) from ``near`` (``_agent`` = this agent), or
        ``None`` when that node has no coordinate (no sorting then)."""
        if near == "_agent":
            near = self.agent_node
        if near.lower() not in self.catalog.coordinates:
            return None
        return {node: (0.0 if node == near.lower() else 1.0) for node in self.catalog.coordinates}

    def sort_near(self, entries: Sequence[HealthEntry], near: str) -> list[HealthEntry]:
        distances = self.distances_from(near)
        if distances is None:
            return list(entries)
        return sort_near(entries, lambda e: str(e["Node"]["Node"]), distances)

    def next_index(self) -> int:
        return self.catalog.allocate_index()

    def execute_prepared_query(self, name_or_id: str) -> dict[str, Any]:
        if self.prepared_queries is None:
            raise QueryNotFound()
        result: dict[str, Any] = self.prepared_queries.execute(name_or_id)
        return result

    # ------------------------------------------------------------------- fault helpers

    def rewind_index(self, to_index: int = 1) -> None:
        """Make this datacenter's raft index go backwards (as after a server restart with a
        fresh state): every index is clamped to ``to_index``; watchers holding a higher index
        then block for their full wait, as Consul does."""
        self.catalog.rewind(to_index)

    def set_check_status(self, check_id: str, status: str, output: str = "") -> None:
        """Flip any check: an agent check (synced like a check result), or a catalog check on
        any node of this datacenter (written directly)."""
        if status not in CHECK_STATES:
            raise ValueError(f"invalid check status {status!r}")
        check = self.agent.checks.get(check_id)
        if check is not None:
            self.agent.set_status(check, status, output)
            self.agent._sync_check(check)
            return
        for record in self.catalog.checks.values():
            if record.check_id.lower() == check_id.lower():
                self.catalog.update_check(record.node, record.check_id, status, output)
                return
        raise KeyError(f"no check {check_id!r} in datacenter {self.name}")

    # ---------------------------------------------------------------------- lifecycle

    def _bootstrap(self) -> None:
        """The state a fresh dev agent has: its node, the ``consul`` service and serfHealth."""
        self.catalog.index = 4
        tagged = {"lan": self.host, "wan": self.host}
        meta = {"consul-network-segment": ""}
        if self.profile.modern:
            # the published 1.21.3 answer: lan/lan_ipv4/wan/wan_ipv4 and consul-version
            tagged = {"lan": self.host, "lan_ipv4": self.host, "wan": self.host}
            tagged["wan_ipv4"] = self.host
            meta["consul-version"] = self.profile.version
        node = NodeRecord(
            name=self.agent_node,
            address=self.host,
            node_id=self.node_id,
            tagged_addresses=tagged,
            meta=meta,
        )
        self.catalog.register(
            node,
            ServiceRecord(
                node=self.agent_node,
                service_id="consul",
                name="consul",
                tags=[],
                address="",
                meta={},
                port=self.server_port,
            ),
            [
                CheckRecord(
                    node=self.agent_node,
                    check_id=SERF_CHECK_ID,
                    name="Serf Health Status",
                    status=PASSING,
                    output="Agent alive and reachable",
                )
            ],
        )
        self.agent.node_info = replace(node)
        record = self.catalog.node(self.agent_node)
        assert record is not None
        record.modify_index = self.catalog.allocate_index()
        self.catalog.table_index["nodes"] = record.modify_index

    def _load_prepared_queries(self) -> None:
        try:
            module = importlib.import_module(".prepared_query", __package__)
        except ImportError:
            self.prepared_queries = None
            return
        self.prepared_queries = module.PreparedQueryStore(self, self.cluster)

    async def start(self) -> None:
        """Open the HTTP and DNS listeners (the same ports again after a stop)."""
        if self.running:
            return
        if self.prepared_queries is None:
            self._load_prepared_queries()
        if self._api is None:
            self._api = AgentHttpApi(self)
            await self.agent.start()
        self._runner = web.AppRunner(
            self._api.app, access_log=None, handle_signals=False, shutdown_timeout=0.05
        )
        await self._runner.setup()
        self._site = LimitedSite(
            self._runner,
            self.connections,
            host=self.host,
            port=self.http_port,
            reuse_address=True,
        )
        await self._site.start()
        server = self._site._server
        if self.http_port == 0 and server is not None:
            sockets = getattr(server, "sockets", None) or []
            self.http_port = int(sockets[0].getsockname()[1])
        await self._start_dns()
        self.down_event = asyncio.Event()
        self.running = True
        self.stopped_at = None

    async def _start_dns(self) -> None:
        try:
            module = importlib.import_module(".dns_server", __package__)
        except ImportError:
            return
        self._dns = module.ConsulDnsServer(
            self.name,
            self.cluster,
            a_record_limit=self.profile.a_record_limit,
            modern=self.profile.modern,
        )
        self._dns.responder.enable_truncate = self._dns_enable_truncate
        self.dns_port = int(await self._dns.start(self.host, self.dns_port))

    @property
    def dns_enable_truncate(self) -> bool:
        """``dns_config.enable_truncate`` (default false, as in Consul): whether a DNS answer
        cut for UDP carries the TC bit, so that resolvers retry over TCP; without it the cut
        is silent (agent/dns/response_generator.go ``trimDNSResponse``)."""
        return self._dns_enable_truncate

    @dns_enable_truncate.setter
    def dns_enable_truncate(self, value: bool) -> None:
        self._dns_enable_truncate = bool(value)
        if self._dns is not None:
            self._dns.responder.enable_truncate = self._dns_enable_truncate

    async def stop(self) -> None:
        """Close the listening sockets and drop in-flight requests; the state is kept."""
        if not self.running:
            return
        self.running = False
        self.stopped_at = self.clock.consul_now()
        self.down_event.set()
        if self._api is not None:
            await self._api.drop_in_flight()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None
        if self._dns is not None:
            with contextlib.suppress(Exception):
                await self._dns.stop()
            self._dns = None

    async def close(self) -> None:
        """Stop the listeners and every background task (checks, reaper)."""
        await self.stop()
        await self.agent.close()

    # ----------------------------------------------------------------------- helpers

    def member(self, *, wan: bool) -> dict[str, Any]:
        """This agent as a serf member (LAN or WAN pool)."""
        tags = {
            "build": "1.0.8dev:" if not self.profile.modern else f"{self.profile.version}:",
            "dc": self.name,
            "id": self.node_id,
            "port": str(self.server_port),
            "raft_vsn": "3",
            "role": "consul",
            "segment": "",
            "vsn": "2",
            "vsn_max": "3",
            "vsn_min": "2",
        }
        if not wan:
            tags["wan_join_port"] = str(self.server_port + 2)
        return {
            "Name": f"{self.agent_node}.{self.name}" if wan else self.agent_node,
            "Addr": self.host,
            "Port": self.server_port + (2 if wan else 1),
            "Tags": tags,
            "Status": 1,
            "ProtocolMin": 1,
            "ProtocolMax": 5,
            "ProtocolCur": 2,
            "DelegateMin": 2,
            "DelegateMax": 5,
            "DelegateCur": 4,
        }

    def cluster_dc(self, name: str) -> Datacenter:
        """Any datacenter of the emulator, reachable or not (for membership listings)."""
        return self._lookup(name)

    def member_failed(self) -> bool:
        """Whether the WAN pool already sees this (stopped) agent as failed."""
        if self.running or self.stopped_at is None:
            return False
        return self.clock.consul_elapsed(self.stopped_at) >= self.member_fail_after
