"""The Consul side of :class:`~mcresolve.testing.topology.MultiCloudTopology`: how each storage
node is registered (service, HTTP check, prepared query) and how the topology reads and awaits
the check states the emulated agents hold."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from mcresolve.consul.client import ConsulClient
from mcresolve.testing.consul import Datacenter
from mcresolve.testing.storage import StorageCluster, StorageNode
from mcresolve.timing import format_duration

__all__ = ["CheckStatus", "CheckTimeout", "ConsulRegistrations", "NodeRef", "RegisteredNode"]

CheckStatus = Literal["passing", "warning", "critical", "absent"]
NodeRef = StorageNode | tuple[str, int] | str


class CheckTimeout(TimeoutError):
    """A check did not reach the awaited status in time (the message says what it had)."""


@dataclass(frozen=True, slots=True)
class RegisteredNode:
    """A storage node as Consul knows it.

    ``index`` is 0-based within its datacenter (like :meth:`StorageCluster.node`);
    ``service_id`` is ``minio-<cloud>-<index>``; ``consul_node`` is the name of the datacenter's
    agent node, which hosts every registration of that datacenter.
    """

    datacenter: str
    cloud: str
    index: int
    service_id: str
    check_id: str
    consul_node: str
    storage: StorageNode

    @property
    def address(self) -> str:
        """Address registered in Consul (the node's fault proxy, as clients use it)."""
        return self.storage.address

    @property
    def port(self) -> int:
        """Port registered in Consul (the fault proxy's)."""
        return self.storage.port


class ConsulRegistrations:
    """Registration and check state of the storage nodes in the emulated Consul (a part of
    :class:`~mcresolve.testing.topology.MultiCloudTopology`, which provides the attributes and
    accessors declared here)."""

    clouds: dict[str, str]
    service: str
    query: str
    tags: tuple[str, ...]
    check_interval: float
    check_timeout: float
    deregister_critical_after: float | None
    query_ids: dict[str, str]
    _nodes: list[RegisteredNode]
    _node_names: dict[str, str]

    @property
    def storage(self) -> StorageCluster:
        raise NotImplementedError

    def node(self, ref: NodeRef) -> RegisteredNode:
        raise NotImplementedError

    def nodes_in(self, datacenter: str) -> tuple[RegisteredNode, ...]:
        raise NotImplementedError

    def dc(self, datacenter: str) -> Datacenter:
        raise NotImplementedError

    def consul_client(self, datacenter: str, **options: Any) -> ConsulClient:
        raise NotImplementedError

    # -- registration -----------------------------------------------------------------------

    async def _register_all(self) -> None:
        self._nodes = []
        for dc, cloud in self.clouds.items():
            async with self.consul_client(dc, request_timeout=5.0) as client:
                for node in self.storage.nodes_in(dc):
                    registered = RegisteredNode(
                        datacenter=dc,
                        cloud=cloud,
                        index=node.index,
                        service_id=f"minio-{cloud}-{node.index}",
                        check_id=f"minio-{cloud}-{node.index}-health",
                        consul_node=self._node_names[dc],
                        storage=node,
                    )
                    await client.agent_service_register(self.registration_of(registered))
                    self._nodes.append(registered)

    def registration_of(self, node: RegisteredNode) -> dict[str, Any]:
        """The ``PUT /v1/agent/service/register`` body of a storage node."""
        check: dict[str, Any] = {
            "CheckID": node.check_id,
            "Name": f"S3 gateway {node.storage.name} /healthz",
            "HTTP": node.storage.health_url,
            "Interval": format_duration(self.check_interval),
            "Timeout": format_duration(self.check_timeout),
        }
        if self.deregister_critical_after is not None:
            check["DeregisterCriticalServiceAfter"] = format_duration(
                self.deregister_critical_after
            )
        tags = [*self.tags, node.cloud] if node.cloud not in self.tags else list(self.tags)
        return {
            "ID": node.service_id,
            "Name": self.service,
            "Tags": tags,
            "Address": node.address,
            "Port": node.port,
            "Meta": {
                "cloud": node.cloud,
                "storage_node": node.storage.name,
                "s3_port": str(node.storage.s3_port),
            },
            "Check": check,
        }

    def query_definition(self) -> dict[str, Any]:
        """The prepared query created in every datacenter (``Failover: {NearestN: 1}``)."""
        return {
            "Name": self.query,
            "Service": {"Service": self.service, "Failover": {"NearestN": 1}},
        }

    async def _create_queries(self) -> None:
        for dc in self.clouds:
            async with self.consul_client(dc, request_timeout=5.0) as client:
                self.query_ids[dc] = await client.query_create(self.query_definition())

    async def _run_check_until_passing(self, node: RegisteredNode) -> None:
        """Start-up: run the node's check now (instead of waiting for its random first run)
        until it passes; a node that never passes fails the start with its last output."""
        agent = self.dc(node.datacenter).agent
        deadline = time.monotonic() + 30.0
        while True:
            status = await agent.run_check_now(node.check_id)
            if status == "passing":
                return
            if time.monotonic() > deadline:
                output = agent.checks[node.check_id].output
                raise CheckTimeout(f"{node.service_id} never passed its check: {output}")
            await asyncio.sleep(0.05)

    # -- state ------------------------------------------------------------------------------

    def check_status(self, ref: NodeRef) -> CheckStatus:
        """The node's check status in its datacenter's catalog (what the health API serves),
        ``"absent"`` when the service is not registered."""
        node = self.node(ref)
        for entry in self.dc(node.datacenter).health_service(self.service):
            if entry["Service"]["ID"] != node.service_id:
                continue
            for check in entry["Checks"]:
                if check["CheckID"] == node.check_id:
                    status: CheckStatus = check["Status"]
                    return status
        return "absent"

    def check_output(self, ref: NodeRef) -> str:
        """The node's last check output as the catalog holds it (``""`` if absent)."""
        node = self.node(ref)
        for entry in self.dc(node.datacenter).health_service(self.service):
            for check in entry["Checks"]:
                if check["CheckID"] == node.check_id:
                    return str(check["Output"])
        return ""

    def passing_service_ids(self, datacenter: str) -> list[str]:
        """Service IDs of the storage registrations of a datacenter whose checks all pass."""
        return [
            entry["Service"]["ID"]
            for entry in self.dc(datacenter).health_service(self.service)
            if all(c["Status"] == "passing" for c in entry["Checks"])
        ]

    async def wait_for_check(
        self,
        ref: NodeRef,
        status: CheckStatus,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - a deadline for polling emulator state
    ) -> float:
        """Wait until the node's catalog check has ``status``; returns the seconds waited.

        Wakes on every catalog write of the node's datacenter (the emulator's own change
        event), so it returns within milliseconds of the change; raises :class:`CheckTimeout`
        (with the status and output it had) after ``timeout`` seconds.
        """
        node = self.node(ref)
        return await self._wait_for_catalog(
            node.datacenter,
            timeout,
            lambda: self.check_status(node.service_id) == status,
            lambda: (
                f"{node.service_id} check is {self.check_status(node.service_id)!r} after "
                f"{timeout:g} s, expected {status!r} "
                f"(output: {self.check_output(node.service_id)!r})"
            ),
        )

    async def wait_for_passing(
        self,
        datacenter: str,
        count: int | None = None,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - a deadline for polling emulator state
    ) -> float:
        """Wait until ``count`` storage registrations of ``datacenter`` pass (default: all of
        them); returns the seconds waited."""
        wanted = len(self.nodes_in(datacenter)) if count is None else count

        def failure() -> str:
            passing = self.passing_service_ids(datacenter)
            return (
                f"{datacenter}: {len(passing)} passing storage nodes {passing} after "
                f"{timeout:g} s, expected {wanted}"
            )

        return await self._wait_for_catalog(
            datacenter,
            timeout,
            lambda: len(self.passing_service_ids(datacenter)) == wanted,
            failure,
        )

    async def _wait_for_catalog(
        self,
        datacenter: str,
        timeout: float,  # noqa: ASYNC109 - a deadline for polling emulator state
        reached: Callable[[], bool],
        failure: Callable[[], str],
    ) -> float:
        """Evaluate ``reached`` now and after every catalog write of ``datacenter`` until it holds
        (returns the seconds waited) or ``timeout`` seconds pass (:class:`CheckTimeout` with the
        text of ``failure``, evaluated on the same state as the last ``reached``)."""
        catalog = self.dc(datacenter).catalog
        started = time.monotonic()
        deadline = started + timeout
        while True:
            changed = catalog.changed_event()
            if reached():
                return time.monotonic() - started
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CheckTimeout(failure())
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                continue
