"""Several WAN-joined emulated Consul datacenters in one process (the public entry point).

::

    async with ConsulEmulator(["dc1", "dc2"], rtt_ms={("dc1", "dc2"): 40.0}) as consul:
        dc1 = consul.dc("dc1")
        dc1.http_url, dc1.dns_port
        await consul.stop_agent("dc2"); await consul.start_agent("dc2")
        consul.partition("dc1", "dc2"); consul.heal("dc1", "dc2")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mcresolve.lifecycle import AsyncStartClose

from .agent import AgentConfig
from .contracts import DatacenterUnreachable, DatacenterView
from .datacenter import Datacenter, PeerLink
from .profile import ConsulProfile, profile_for
from .timebase import EmulatorClock


class ConsulEmulator(AsyncStartClose):
    """An in-process emulation of Consul dev agents (1.0.8 by default, or 1.21 / 2.x CE per
    datacenter), one per datacenter, WAN-joined.

    ``rtt_ms`` gives the round-trip time between datacenter pairs (symmetric; missing pairs
    count as 1000 ms after the given ones, then by name) and orders ``/v1/catalog/datacenters``.
    ``node_names`` maps a datacenter to its agent's node name (default ``n1`` for the first,
    ``n2`` for the second, ...). ``http_ports``/``dns_ports`` fix ports (default: ephemeral).
    ``time_scale`` multiplies every duration the emulator waits for (see
    :class:`~mcresolve.testing.consul.timebase.EmulatorClock`); it can be changed later through
    :attr:`time_scale`. ``agent_config`` sets agent timing knobs (check_update_interval,
    reap_interval, min_deregister_critical_after, anti_entropy_interval, first_coordinate_after).
    ``seed`` makes the random choices (HTTP/TCP check first-run staggers, blocking-wait jitter)
    reproducible. ``version`` chooses which Consul the agents answer like: ``"1.0.8"`` (the
    recorded default), ``"1.21"`` or ``"2.x"`` (modern Community Edition; see
    :mod:`~mcresolve.testing.consul.profile`), one for all or a mapping per datacenter
    (missing datacenters: 1.0.8).
    """

    def __init__(
        self,
        datacenters: Sequence[str] = ("dc1",),
        *,
        rtt_ms: Mapping[tuple[str, str], float] | None = None,
        node_names: Mapping[str, str] | None = None,
        http_ports: Mapping[str, int] | None = None,
        dns_ports: Mapping[str, int] | None = None,
        time_scale: float = 1.0,
        host: str = "127.0.0.1",
        agent_config: AgentConfig | None = None,
        seed: int | None = None,
        version: str | ConsulProfile | Mapping[str, str | ConsulProfile] = "1.0.8",
    ) -> None:
        if not datacenters:
            raise ValueError("at least one datacenter is needed")
        self.clock = EmulatorClock(time_scale)
        self._rtt: dict[frozenset[str], float] = {}
        for (a, b), value in (rtt_ms or {}).items():
            self._rtt[frozenset((a, b))] = value
        self._partitions: set[frozenset[str]] = set()
        self._dcs: dict[str, Datacenter] = {}
        for ordinal, name in enumerate(datacenters, start=1):
            node = (node_names or {}).get(name, f"n{ordinal}")
            chosen = version.get(name, "1.0.8") if isinstance(version, Mapping) else version
            self._dcs[name] = Datacenter(
                name,
                agent_node=node,
                cluster=self,
                clock=self.clock,
                ordinal=ordinal,
                host=host,
                http_port=(http_ports or {}).get(name, 0),
                dns_port=(dns_ports or {}).get(name, 0),
                agent_config=AgentConfig(**vars(agent_config)) if agent_config else None,
                lookup=self.dc,
                seed=seed,
                profile=profile_for(chosen),
            )
        self._started = False

    # ------------------------------------------------------------------------ lifecycle

    async def start(self) -> ConsulEmulator:
        """Start every agent (HTTP and DNS listeners, check runners)."""
        try:
            for dc in self._dcs.values():
                await dc.start()
        except BaseException:
            await self.aclose()
            raise
        self._started = True
        return self

    async def aclose(self) -> None:
        """Stop every agent and every background task."""
        for dc in self._dcs.values():
            await dc.close()
        self._started = False

    # --------------------------------------------------------------------------- access

    @property
    def time_scale(self) -> float:
        """Multiplier applied to every emulator wait (1.0 = Consul's real timing)."""
        return self.clock.scale

    @time_scale.setter
    def time_scale(self, value: float) -> None:
        if value <= 0:
            raise ValueError("time scale must be > 0")
        self.clock.scale = value

    @property
    def datacenters(self) -> list[str]:
        """Datacenter names in creation order."""
        return list(self._dcs)

    def dc(self, name: str) -> Datacenter:
        """The datacenter ``name`` (``KeyError`` if unknown)."""
        return self._dcs[name]

    # --------------------------------------------------------------------------- faults

    async def stop_agent(self, name: str) -> None:
        """Kill a datacenter's agent: its HTTP and DNS sockets close and in-flight requests are
        dropped. Other datacenters first answer ``rpc error ...`` for it, then
        ``No path to datacenter``; its WAN member turns failed."""
        await self._dcs[name].stop()

    async def start_agent(self, name: str) -> None:
        """Bring a stopped agent back on the same ports with its state kept."""
        await self._dcs[name].start()

    def partition(self, a: str, b: str) -> None:
        """Cut the WAN link between two datacenters (``?dc=`` and failover between them fail
        with ``No path to datacenter``)."""
        self._partitions.add(frozenset((a, b)))

    def peer(
        self,
        local: str,
        remote: str,
        *,
        name: str | None = None,
        services: Sequence[str] | None = None,
    ) -> None:
        """Establish a cluster peering in which ``local`` imports from ``remote`` under the
        peer ``name`` (default: the remote datacenter's name) the ``services`` it exports
        (default: all). Both must run a modern profile (peering is GA since 1.14). Reads:
        ``?peer=<name>`` on health/catalog service, prepared-query ``Failover.Targets``
        ``[{"Peer": name}]`` and DNS ``<svc>.service.<name>.peer.consul``."""
        here, there = self._dcs[local], self._dcs[remote]
        if not (here.profile.modern and there.profile.modern):
            raise ValueError("cluster peering needs modern profiles on both sides (1.14+)")
        exported = None if services is None else frozenset(s.lower() for s in services)
        here.peers[name or remote] = PeerLink(name or remote, there, exported)

    def heal(self, a: str, b: str) -> None:
        """Restore the WAN link between two datacenters."""
        self._partitions.discard(frozenset((a, b)))

    # ---------------------------------------------------------------------- ClusterView

    def reach(self, origin: str, target: str) -> DatacenterView:
        dc = self._dcs.get(target)
        if dc is None:
            raise DatacenterUnreachable()
        if target == origin:
            return dc
        if frozenset((origin, target)) in self._partitions:
            raise DatacenterUnreachable()
        if not dc.running:
            if dc.stopped_at is None or self.clock.consul_elapsed(dc.stopped_at) >= (
                dc.no_path_after
            ):
                raise DatacenterUnreachable()
            raise DatacenterUnreachable(
                "rpc error getting client: failed to get conn: dial tcp "
                f"{dc.host}:0->{dc.host}:{dc.server_port}: connect: connection refused"
            )
        return dc

    def rtt(self, a: str, b: str) -> float:
        """Configured round-trip time between two datacenters in ms (0 for itself)."""
        if a == b:
            return 0.0
        return self._rtt.get(frozenset((a, b)), 1000.0)

    def datacenters_by_rtt(self, origin: str) -> list[str]:
        names = list(self._dcs)
        return sorted(names, key=lambda n: (self.rtt(origin, n), n != origin, n))
