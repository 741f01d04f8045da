"""Injecting and repairing the demo's faults on a running topology.

:class:`FaultInjector` carries out a :class:`~mcresolve.demo.scenarios.Fault` (and its repair)
on the topology the demo started; which fault each scenario injects is decided in
:mod:`mcresolve.demo.scenarios`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from mcresolve.testing.topology import MultiCloudTopology

from .scenarios import Fault


@dataclass(frozen=True, slots=True)
class FaultInjector:
    """Injects and repairs faults in ``local`` (the datacenter the faults hit), with ``remote``
    the other one. ``local_storefronts`` are the local stage-3 storefront processes' kill
    and start actions (what :data:`Fault.STOREFRONT_DATACENTER` takes down)."""

    stack: MultiCloudTopology
    local: str
    remote: str
    kill_storefronts: Callable[[], Sequence[Awaitable[object]]]
    start_storefronts: Callable[[], Sequence[Awaitable[object]]]

    async def inject(self, fault: Fault) -> None:
        """Bring ``fault`` about (nothing for :data:`Fault.NONE`)."""
        storage, consul = self.stack.storage, self.stack.consul
        local, remote = self.local, self.remote
        if fault is Fault.ONE_STORAGE_NODE:
            await storage.node(local, 0).kill()
        elif fault is Fault.TWO_STORAGE_NODES:
            await asyncio.gather(storage.node(local, 0).kill(), storage.node(remote, 0).kill())
            for node in storage.nodes:
                if node.index != 0:
                    node.proxy.answer_error("XMinioWriteQuorum", methods={"PUT", "POST", "DELETE"})
        elif fault is Fault.STORAGE_DATACENTER:
            await storage.kill_datacenter(local)
        elif fault is Fault.STOREFRONT_DATACENTER:
            await asyncio.gather(*self.kill_storefronts())
        elif fault is Fault.CONSUL_AGENT:
            await consul.stop_agent(local)
        elif fault is Fault.WAN_LINK:
            consul.partition(local, remote)

    async def repair(self, fault: Fault) -> None:
        """Undo what :meth:`inject` did for ``fault``."""
        storage, consul = self.stack.storage, self.stack.consul
        local, remote = self.local, self.remote
        if fault is Fault.ONE_STORAGE_NODE:
            await storage.node(local, 0).restart()
        elif fault is Fault.TWO_STORAGE_NODES:
            for node in storage.nodes:
                node.proxy.pass_through()
            await asyncio.gather(
                storage.node(local, 0).restart(), storage.node(remote, 0).restart()
            )
        elif fault is Fault.STORAGE_DATACENTER:
            await storage.restart_datacenter(local)
        elif fault is Fault.STOREFRONT_DATACENTER:
            await asyncio.gather(*self.start_storefronts())
        elif fault is Fault.CONSUL_AGENT:
            await consul.start_agent(local)
        elif fault is Fault.WAN_LINK:
            consul.heal(local, remote)
