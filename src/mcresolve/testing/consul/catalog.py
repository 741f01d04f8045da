"""One datacenter's replicated state (what Consul's servers keep in raft): nodes, services, checks,
the raft index, per-table and per-service indexes, and the wake-up signal for blocking queries.

Pure state: no I/O, no clocks. Every write that changes something allocates one new raft index
(like one raft transaction); identical writes allocate nothing. Rendering helpers return Consul
1.0.8's JSON shapes.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .profile import LEGACY, ConsulProfile

PASSING = "passing"
WARNING = "warning"
CRITICAL = "critical"
CHECK_STATES = (PASSING, WARNING, CRITICAL)

SERF_CHECK_ID = "serfHealth"


@dataclass
class NodeRecord:
    """A catalog node."""

    name: str
    address: str
    node_id: str = ""
    datacenter: str = ""
    tagged_addresses: dict[str, str] | None = None
    meta: dict[str, str] | None = None
    create_index: int = 0
    modify_index: int = 0

    def same_content(self, other: NodeRecord) -> bool:
        return (
            self.address == other.address
            and self.node_id == other.node_id
            and self.tagged_addresses == other.tagged_addresses
            and self.meta == other.meta
        )


@dataclass
class ServiceRecord:
    """A service instance registered on a node."""

    node: str
    service_id: str
    name: str
    tags: list[str] = field(default_factory=list)
    address: str = ""
    meta: dict[str, str] | None = None
    port: int = 0
    enable_tag_override: bool = False
    #: ``{"lan_ipv4": {"Address": ..., "Port": ...}, ...}`` (rendered by modern profiles only)
    tagged_addresses: dict[str, dict[str, Any]] | None = None
    #: ``Weights`` ``(Passing, Warning)`` (rendered by modern profiles only)
    weights: tuple[int, int] = (1, 1)
    create_index: int = 0
    modify_index: int = 0

    def same_content(self, other: ServiceRecord) -> bool:
        return (
            self.name == other.name
            and self.tags == other.tags
            and self.address == other.address
            and self.meta == other.meta
            and self.port == other.port
            and self.enable_tag_override == other.enable_tag_override
            and self.tagged_addresses == other.tagged_addresses
            and self.weights == other.weights
        )


@dataclass
class CheckRecord:
    """A health check (node-level when ``service_id`` is empty)."""

    node: str
    check_id: str
    name: str
    status: str = CRITICAL
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: list[str] = field(default_factory=list)
    #: ``Type``/``Interval``/``Timeout`` as modern agents render them (``ttl``, ``1s``, ``0s``);
    #: not part of the content comparison (1.0.8 has no such fields)
    check_type: str = ""
    interval: str = ""
    timeout: str = ""
    create_index: int = 0
    modify_index: int = 0

    def same_content(self, other: CheckRecord) -> bool:
        return (
            self.name == other.name
            and self.status == other.status
            and self.notes == other.notes
            and self.output == other.output
            and self.service_id == other.service_id
            and self.service_name == other.service_name
            and self.service_tags == other.service_tags
        )


def _key(text: str) -> str:
    return text.lower()


def empty_proxy() -> dict[str, Any]:
    """``Proxy`` of a service that is not a mesh proxy, as 1.21 renders it."""
    return {"Mode": "", "MeshGateway": {}, "Expose": {}}


class CatalogState:
    """The catalog of one datacenter with Consul's index bookkeeping."""

    def __init__(self, datacenter: str, profile: ConsulProfile = LEGACY) -> None:
        self.datacenter = datacenter
        #: the answer shapes (1.0.8 or modern) of every rendering helper below
        self.profile = profile
        self.index = 0
        self.nodes: dict[str, NodeRecord] = {}
        self.services: dict[tuple[str, str], ServiceRecord] = {}
        self.checks: dict[tuple[str, str], CheckRecord] = {}
        self.coordinates: dict[str, dict[str, Any]] = {}
        self.table_index: dict[str, int] = {"nodes": 0, "services": 0, "checks": 0, "coords": 0}
        self.service_index: dict[str, int] = {}
        self._changed = asyncio.Event()

    # ----------------------------------------------------------------- indexes and wake-ups

    def allocate_index(self) -> int:
        """Allocate the raft index of a write (monotonic unless rewound)."""
        self.index += 1
        return self.index

    def changed_event(self) -> asyncio.Event:
        """An event set at the next write (take it *before* reading, then await it)."""
        return self._changed

    def notify(self) -> None:
        """Wake every blocking query of this datacenter."""
        self._changed.set()
        self._changed = asyncio.Event()

    def rewind(self, to_index: int = 1) -> None:
        """Make the raft index go backwards, as after a server restart with fresh state: every
        index in the state is clamped to ``to_index`` and new writes continue from there."""
        self.index = max(0, to_index)
        for table, value in self.table_index.items():
            self.table_index[table] = min(value, self.index)
        for name, value in self.service_index.items():
            self.service_index[name] = min(value, self.index)
        records: Iterable[NodeRecord | ServiceRecord | CheckRecord] = [
            *self.nodes.values(),
            *self.services.values(),
            *self.checks.values(),
        ]
        for record in records:
            record.create_index = min(record.create_index, self.index)
            record.modify_index = min(record.modify_index, self.index)
        self.notify()

    def _touch_service(self, name: str, index: int) -> None:
        self.service_index[_key(name)] = index

    def _touch_node_services(self, node: str, index: int) -> None:
        for svc in self.services.values():
            if _key(svc.node) == _key(node):
                self._touch_service(svc.name, index)

    def max_index(self, *tables: str) -> int:
        """The highest index over ``tables`` (Consul's answer for unknown services)."""
        return max((self.table_index[t] for t in tables), default=0)

    def service_read_index(self, name: str, *, with_checks: bool) -> int:
        """``X-Consul-Index`` of ``/v1/health/service/<name>`` (``with_checks``) or
        ``/v1/catalog/service/<name>``: the per-service index, or the max over the tables when the
        service is unknown."""
        found = self.service_index.get(_key(name))
        if found:
            return found
        if with_checks:
            return self.max_index("nodes", "services", "checks")
        return self.max_index("nodes", "services")

    # ------------------------------------------------------------------------------ writes

    def register(
        self,
        node: NodeRecord | None,
        service: ServiceRecord | None = None,
        checks: Iterable[CheckRecord] = (),
        *,
        force_check_ids: Iterable[str] = (),
        keep_node: bool = False,
    ) -> int | None:
        """Apply one registration as a single raft transaction.

        ``node`` replaces the node's fields (``None`` values clear them, as Consul does) unless
        ``keep_node``; identical records are not rewritten. Checks whose ID is in
        ``force_check_ids`` are rewritten even when identical (the agent re-syncing them).
        Returns the index used, or ``None`` when nothing changed.
        """
        index: int | None = None

        def idx() -> int:
            nonlocal index
            if index is None:
                index = self.allocate_index()
            return index

        if node is not None:
            current = self.nodes.get(_key(node.name))
            if current is None:
                new = replace(node, datacenter=self.datacenter)
                new.create_index = new.modify_index = idx()
                self.nodes[_key(node.name)] = new
                self.table_index["nodes"] = idx()
            elif not keep_node and not current.same_content(node):
                current.address = node.address
                current.node_id = node.node_id
                current.tagged_addresses = copy.deepcopy(node.tagged_addresses)
                current.meta = copy.deepcopy(node.meta)
                current.modify_index = idx()
                self.table_index["nodes"] = idx()
        if service is not None:
            skey = (_key(service.node), _key(service.service_id))
            existing = self.services.get(skey)
            if existing is None or not existing.same_content(service):
                new_svc = replace(service, tags=list(service.tags))
                new_svc.create_index = existing.create_index if existing else idx()
                new_svc.modify_index = idx()
                if existing is not None and _key(existing.name) != _key(service.name):
                    self._touch_service(existing.name, idx())
                self.services[skey] = new_svc
                self.table_index["services"] = idx()
                self._touch_service(service.name, idx())
                # checks carry a copy of the service's name and tags
                for chk in self.checks.values():
                    if (_key(chk.node), _key(chk.service_id)) == skey:
                        chk.service_name = new_svc.name
                        chk.service_tags = list(new_svc.tags)
        forced = set(force_check_ids)
        for check in checks:
            ckey = (_key(check.node), _key(check.check_id))
            existing_chk = self.checks.get(ckey)
            new_chk = replace(check, service_tags=list(check.service_tags))
            if new_chk.service_id:
                svc = self.services.get((_key(check.node), _key(check.service_id)))
                if svc is not None:
                    new_chk.service_name = svc.name
                    new_chk.service_tags = list(svc.tags)
            if (
                existing_chk is not None
                and existing_chk.same_content(new_chk)
                and check.check_id not in forced
            ):
                continue
            new_chk.create_index = existing_chk.create_index if existing_chk else idx()
            new_chk.modify_index = idx()
            self.checks[ckey] = new_chk
            self.table_index["checks"] = idx()
            if new_chk.service_id:
                self._touch_service(new_chk.service_name, idx())
            else:
                self._touch_node_services(new_chk.node, idx())
        if index is not None:
            self.notify()
        return index

    def update_check(self, node: str, check_id: str, status: str, output: str) -> int | None:
        """Write a check's status and output (the agent syncing it); ``None`` if unchanged or
        unknown."""
        chk = self.checks.get((_key(node), _key(check_id)))
        if chk is None or (chk.status == status and chk.output == output):
            return None
        updated = replace(chk, status=status, output=output)
        return self.register(None, None, [updated])

    def deregister(
        self, node: str, *, service_id: str | None = None, check_id: str | None = None
    ) -> int | None:
        """Remove a service (with its checks), a check, or a whole node (with everything on it)."""
        nkey = _key(node)
        if nkey not in self.nodes:
            return None
        removed_services: list[ServiceRecord] = []
        removed_checks: list[CheckRecord] = []
        removed_node = False
        if service_id is not None:
            svc = self.services.get((nkey, _key(service_id)))
            if svc is not None:
                removed_services.append(svc)
                removed_checks.extend(
                    c
                    for c in self.checks.values()
                    if _key(c.node) == nkey and _key(c.service_id) == _key(service_id)
                )
        elif check_id is not None:
            chk = self.checks.get((nkey, _key(check_id)))
            if chk is not None:
                removed_checks.append(chk)
        else:
            removed_node = True
            removed_services.extend(s for s in self.services.values() if _key(s.node) == nkey)
            removed_checks.extend(c for c in self.checks.values() if _key(c.node) == nkey)
        if not (removed_node or removed_services or removed_checks):
            return None
        index = self.allocate_index()
        node_services = [s for s in self.services.values() if _key(s.node) == nkey]
        for chk in removed_checks:
            del self.checks[(_key(chk.node), _key(chk.check_id))]
            self.table_index["checks"] = index
            if chk.service_id:
                self._touch_service(chk.service_name, index)
            else:
                for svc in node_services:
                    self._touch_service(svc.name, index)
        for svc in removed_services:
            del self.services[(_key(svc.node), _key(svc.service_id))]
            self.table_index["services"] = index
            self._touch_service(svc.name, index)
        if removed_node:
            del self.nodes[nkey]
            self.coordinates.pop(nkey, None)
            self.table_index["nodes"] = index
        self.notify()
        return index

    def set_coordinate(self, node: str, coord: Mapping[str, Any]) -> int:
        """Store a node's network coordinate (a raft write of its own)."""
        index = self.allocate_index()
        self.coordinates[_key(node)] = {"Node": node, "Segment": "", "Coord": dict(coord)}
        self.table_index["coords"] = index
        self.notify()
        return index

    # ------------------------------------------------------------------------------- reads

    def node(self, name: str) -> NodeRecord | None:
        return self.nodes.get(_key(name))

    def instances(self, service: str) -> list[ServiceRecord]:
        """Every instance of ``service`` (case-insensitive), ordered by node then service ID."""
        found = [s for s in self.services.values() if _key(s.name) == _key(service)]
        found.sort(key=lambda s: (_key(s.node), _key(s.service_id)))
        return found

    def node_checks(self, node: str) -> list[CheckRecord]:
        found = [c for c in self.checks.values() if _key(c.node) == _key(node)]
        found.sort(key=lambda c: _key(c.check_id))
        return found

    def checks_of_instance(self, svc: ServiceRecord) -> list[CheckRecord]:
        """Node-level checks of the instance's node first, then the instance's own checks."""
        on_node = self.node_checks(svc.node)
        node_level = [c for c in on_node if not c.service_id]
        own = [c for c in on_node if _key(c.service_id) == _key(svc.service_id)]
        return node_level + own

    def sorted_checks(self) -> list[CheckRecord]:
        return sorted(self.checks.values(), key=lambda c: (_key(c.node), _key(c.check_id)))

    def sorted_nodes(self) -> list[NodeRecord]:
        return sorted(self.nodes.values(), key=lambda n: _key(n.name))

    # ---------------------------------------------------------------------------- rendering

    def render_node(self, node: NodeRecord) -> dict[str, Any]:
        return {
            "ID": node.node_id,
            "Node": node.name,
            "Address": node.address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": copy.deepcopy(node.tagged_addresses),
            "Meta": copy.deepcopy(node.meta),
            "CreateIndex": node.create_index,
            "ModifyIndex": node.modify_index,
        }

    def render_service(self, svc: ServiceRecord) -> dict[str, Any]:
        """``Service`` of a health entry (also ``/v1/catalog/node`` services)."""
        meta = dict(sorted(svc.meta.items())) if svc.meta is not None else None
        if not self.profile.modern:
            return {
                "ID": svc.service_id,
                "Service": svc.name,
                "Tags": list(svc.tags),
                "Address": svc.address,
                "Meta": meta,
                "Port": svc.port,
                "EnableTagOverride": svc.enable_tag_override,
                "CreateIndex": svc.create_index,
                "ModifyIndex": svc.modify_index,
            }
        out: dict[str, Any] = {
            "ID": svc.service_id,
            "Service": svc.name,
            "Tags": list(svc.tags),
            "Address": svc.address,
        }
        if svc.tagged_addresses:  # omitempty (structs.NodeService)
            out["TaggedAddresses"] = copy.deepcopy(svc.tagged_addresses)
        out |= {
            "Meta": meta,
            "Port": svc.port,
            "Weights": {"Passing": svc.weights[0], "Warning": svc.weights[1]},
            "EnableTagOverride": svc.enable_tag_override,
            "Proxy": empty_proxy(),
            "Connect": {},
            "PeerName": "",
            "CreateIndex": svc.create_index,
            "ModifyIndex": svc.modify_index,
        }
        return out

    def render_check(self, chk: CheckRecord) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Node": chk.node,
            "CheckID": chk.check_id,
            "Name": chk.name,
            "Status": chk.status,
            "Notes": chk.notes,
            "Output": chk.output,
            "ServiceID": chk.service_id,
            "ServiceName": chk.service_name,
            "ServiceTags": list(chk.service_tags),
        }
        if self.profile.modern:
            out |= {
                "Type": chk.check_type,
                "Interval": chk.interval,
                "Timeout": chk.timeout,
                "ExposedPort": 0,
            }
        out |= {
            "Definition": {},
            "CreateIndex": chk.create_index,
            "ModifyIndex": chk.modify_index,
        }
        return out

    def health_entry(self, svc: ServiceRecord) -> dict[str, Any]:
        node = self.nodes[_key(svc.node)]
        return {
            "Node": self.render_node(node),
            "Service": self.render_service(svc),
            "Checks": [self.render_check(c) for c in self.checks_of_instance(svc)],
        }

    def catalog_entry(self, svc: ServiceRecord) -> dict[str, Any]:
        """One element of ``/v1/catalog/service/<name>``."""
        node = self.nodes[_key(svc.node)]
        out: dict[str, Any] = {
            "ID": node.node_id,
            "Node": node.name,
            "Address": node.address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": copy.deepcopy(node.tagged_addresses),
            "NodeMeta": copy.deepcopy(node.meta),
        }
        meta = dict(sorted((svc.meta or {}).items()))
        if not self.profile.modern:
            return out | {
                "ServiceID": svc.service_id,
                "ServiceName": svc.name,
                "ServiceTags": list(svc.tags),
                "ServiceAddress": svc.address,
                "ServiceMeta": meta,
                "ServicePort": svc.port,
                "ServiceEnableTagOverride": svc.enable_tag_override,
                "CreateIndex": svc.create_index,
                "ModifyIndex": svc.modify_index,
            }
        out |= {
            "ServiceKind": "",
            "ServiceID": svc.service_id,
            "ServiceName": svc.name,
            "ServiceTags": list(svc.tags),
            "ServiceAddress": svc.address,
        }
        if svc.tagged_addresses:  # omitempty (structs.ServiceNode)
            out["ServiceTaggedAddresses"] = copy.deepcopy(svc.tagged_addresses)
        return out | {
            "ServiceWeights": {"Passing": svc.weights[0], "Warning": svc.weights[1]},
            "ServiceMeta": meta,
            "ServicePort": svc.port,
            "ServiceSocketPath": "",
            "ServiceEnableTagOverride": svc.enable_tag_override,
            "ServiceProxy": empty_proxy(),
            "ServiceConnect": {},
            "CreateIndex": svc.create_index,
            "ModifyIndex": svc.modify_index,
        }

    def services_summary(self) -> dict[str, list[str]]:
        """``/v1/catalog/services``: every service name with the union of its tags."""
        out: dict[str, list[str]] = {}
        for svc in sorted(self.services.values(), key=lambda s: (_key(s.node), s.service_id)):
            tags = out.setdefault(svc.name, [])
            for tag in svc.tags:
                if tag not in tags:
                    tags.append(tag)
        return dict(sorted(out.items()))
