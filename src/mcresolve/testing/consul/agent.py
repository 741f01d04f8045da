"""The local agent of one datacenter: its own service and check definitions, the checks that
really run (TTL timers, HTTP and TCP probes), syncing to the catalog, the critical-service
reaper and anti-entropy.

Sync rules observed on Consul 1.0.8: a status change is written to the catalog at once; an
output-only change is deferred by ``check_update_interval`` (5 minutes); registering a service
writes it and its checks in one transaction (re-registering rewrites the checks, keeping a TTL
check's status and output).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .catalog import (
    CHECK_STATES,
    CRITICAL,
    CatalogState,
    CheckRecord,
    NodeRecord,
    ServiceRecord,
)
from .contracts import EmulatorError
from .decoding import (
    ci_duration,
    ci_get,
    ci_int,
    ci_str,
    ci_str_list,
    ci_str_map,
)
from .probes import http_probe, tcp_probe
from .profile import LEGACY, ConsulProfile, go_duration
from .timebase import EmulatorClock

OUTPUT_LIMIT = 4096

#: the coordinate of a freshly started dev agent (``/v1/agent/self`` ``Coord``)
ZERO_COORD: dict[str, Any] = {
    "Vec": [0.0] * 8,
    "Error": 1.5,
    "Adjustment": 0.0,
    "Height": 1e-05,
}
TTL_EXPIRED_PREFIX = "TTL expired (last output before timeout follows): "


def truncate_output(output: str) -> str:
    """Consul keeps at most 4 KB of a check's output."""
    raw = output.encode("utf-8")
    if len(raw) <= OUTPUT_LIMIT:
        return output
    kept = raw[:OUTPUT_LIMIT].decode("utf-8", errors="ignore")
    return f"{kept} ... (captured {OUTPUT_LIMIT} of {len(raw)} bytes)"


@dataclass
class AgentConfig:
    """Agent timing knobs, in Consul time (the clock's scale applies)."""

    check_update_interval: float = 300.0
    reap_interval: float = 30.0
    min_deregister_critical_after: float = 60.0
    anti_entropy_interval: float | None = None
    #: when the agent writes its first network coordinate (Consul time after start)
    first_coordinate_after: float = 2.0


@dataclass
class AgentService:
    service_id: str
    name: str
    tags: list[str] = field(default_factory=list)
    address: str = ""
    meta: dict[str, str] = field(default_factory=dict)
    port: int = 0
    enable_tag_override: bool = False
    tagged_addresses: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: tuple[int, int] = (1, 1)

    def render(self, profile: ConsulProfile = LEGACY, datacenter: str = "") -> dict[str, Any]:
        """One value of ``/v1/agent/services`` (1.0.8, or ``api.AgentService`` of 1.21 with
        its empty fields omitted)."""
        if not profile.modern:
            return {
                "ID": self.service_id,
                "Service": self.name,
                "Tags": list(self.tags),
                "Address": self.address,
                "Meta": dict(sorted(self.meta.items())),
                "Port": self.port,
                "EnableTagOverride": self.enable_tag_override,
                "CreateIndex": 0,
                "ModifyIndex": 0,
            }
        out: dict[str, Any] = {
            "ID": self.service_id,
            "Service": self.name,
            "Tags": list(self.tags),
            "Meta": dict(sorted(self.meta.items())),
            "Port": self.port,
            "Address": self.address,
        }
        if self.tagged_addresses:
            out["TaggedAddresses"] = {k: dict(v) for k, v in self.tagged_addresses.items()}
        return out | {
            "Weights": {"Passing": self.weights[0], "Warning": self.weights[1]},
            "EnableTagOverride": self.enable_tag_override,
            "Datacenter": datacenter,
        }


def default_tagged_addresses(
    address: str, port: int, given: Mapping[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The agent adds ``lan_ipv4``/``wan_ipv4`` (or ``lan_ipv6``/``wan_ipv6``) for a service
    whose ``Address`` is an IP, unless given (agent/agent.go ``addServiceInternal``)."""
    out = {k: dict(v) for k, v in given.items()}
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return out
    family = "ipv4" if ip.version == 4 else "ipv6"
    for prefix in ("lan", "wan"):
        out.setdefault(f"{prefix}_{family}", {"Address": address, "Port": port})
    return out


def _service_tagged_addresses(body: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    raw = ci_get(body, "TaggedAddresses")
    out: dict[str, dict[str, Any]] = {}
    if isinstance(raw, dict):
        for key, value in raw.items():
            if isinstance(value, dict):
                out[str(key)] = {"Address": ci_str(value, "Address"), "Port": ci_int(value, "Port")}
    return out


def _weights(body: Mapping[str, Any]) -> tuple[int, int]:
    raw = ci_get(body, "Weights")
    if isinstance(raw, dict):
        return (ci_int(raw, "Passing") or 1, ci_int(raw, "Warning") or 1)
    return (1, 1)


@dataclass
class AgentCheck:
    check_id: str
    name: str
    service_id: str = ""
    notes: str = ""
    status: str = CRITICAL
    output: str = ""
    ttl: float | None = None
    http: str | None = None
    tcp: str | None = None
    method: str = "GET"
    header: dict[str, str] = field(default_factory=dict)
    interval: float | None = None
    timeout: float | None = None
    deregister_critical_after: float | None = None
    critical_since: float | None = None
    task: asyncio.Task[None] | None = None
    deferred: asyncio.Task[None] | None = None

    @property
    def is_ttl(self) -> bool:
        return self.ttl is not None

    @property
    def check_type(self) -> str:
        """``structs.CheckType.Type()``: ``ttl``, ``http`` or ``tcp``."""
        if self.http is not None:
            return "http"
        if self.tcp is not None:
            return "tcp"
        return "ttl"


def _parse_check(
    definition: Mapping[str, Any], *, default_id: str, default_name: str, service_id: str
) -> AgentCheck:
    """Validate one check definition the way the agent endpoint does."""
    ttl = ci_duration(definition, "TTL")
    interval = ci_duration(definition, "Interval")
    timeout = ci_duration(definition, "Timeout")
    dereg = ci_duration(definition, "DeregisterCriticalServiceAfter")
    http = ci_str(definition, "HTTP") or None
    tcp = ci_str(definition, "TCP") or None
    if ci_get(definition, "Script") or ci_get(definition, "Args"):
        raise EmulatorError(
            400,
            "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' "
            "to true",
        )
    interval_check = http is not None or tcp is not None
    if interval and ttl:
        raise EmulatorError(400, "Invalid check: Interval and TTL cannot both be specified")
    if interval_check and (interval is None or interval <= 0):
        raise EmulatorError(
            400, "Invalid check: Interval must be > 0 for Script, HTTP, or TCP checks"
        )
    if not interval_check and (ttl is None or ttl <= 0):
        raise EmulatorError(400, "Invalid check: TTL must be > 0 for TTL checks")
    status = ci_str(definition, "Status") or CRITICAL
    if status not in CHECK_STATES:
        raise EmulatorError(400, f"Invalid check status: '{status}'")
    headers_raw = ci_get(definition, "Header") or {}
    headers = {
        str(k): str(v[0] if isinstance(v, list) and v else v) for k, v in headers_raw.items()
    }
    return AgentCheck(
        check_id=ci_str(definition, "CheckID") or ci_str(definition, "ID") or default_id,
        name=ci_str(definition, "Name") or default_name,
        service_id=ci_str(definition, "ServiceID") or service_id,
        notes=ci_str(definition, "Notes"),
        status=status,
        output="",
        ttl=ttl if not interval_check else None,
        http=http,
        tcp=tcp,
        method=ci_str(definition, "Method") or "GET",
        header=headers,
        interval=interval,
        timeout=timeout,
        deregister_critical_after=dereg,
    )


class LocalAgent:
    """The agent process of one datacenter (one node, its services and running checks)."""

    def __init__(
        self,
        catalog: CatalogState,
        node_name: str,
        clock: EmulatorClock,
        config: AgentConfig | None = None,
        *,
        seed: str | None = None,
    ) -> None:
        self.catalog = catalog
        self.node_name = node_name
        self.clock = clock
        self.config = config or AgentConfig()
        self.services: dict[str, AgentService] = {}
        self.checks: dict[str, AgentCheck] = {}
        #: the agent's own view of its node (what anti-entropy writes back)
        self.node_info: NodeRecord | None = None
        self._session: aiohttp.ClientSession | None = None
        self._background: list[asyncio.Task[None]] = []
        self._random = random.Random(seed)

    # -------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the background loops (reaper, optional anti-entropy)."""
        self._session = aiohttp.ClientSession()
        self._background.append(asyncio.create_task(self._reaper_loop()))
        if self.node_name.lower() not in self.catalog.coordinates:
            self._background.append(asyncio.create_task(self._first_coordinate()))
        if self.config.anti_entropy_interval:
            self._background.append(asyncio.create_task(self._anti_entropy_loop()))
        for check in self.checks.values():
            self._start_runner(check)

    async def close(self) -> None:
        """Stop every check runner and loop and release the HTTP client."""
        tasks = list(self._background)
        for check in self.checks.values():
            self._stop_runner(check)
            if check.task is not None:
                tasks.append(check.task)
                check.task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------------ registration

    def register_service(self, body: Mapping[str, Any]) -> None:
        """``PUT /v1/agent/service/register``."""
        name = ci_str(body, "Name")
        port = ci_int(body, "Port")
        raw_checks: list[Mapping[str, Any]] = []
        single = ci_get(body, "Check")
        if isinstance(single, dict) and single:
            raw_checks.append(single)
        many = ci_get(body, "Checks")
        if isinstance(many, list):
            raw_checks.extend(c for c in many if isinstance(c, dict))
        if not name:
            raise EmulatorError(400, "Missing service name")
        service_id = ci_str(body, "ID") or name
        address = ci_str(body, "Address")
        service = AgentService(
            service_id=service_id,
            name=name,
            tags=ci_str_list(body, "Tags"),
            address=address,
            meta=ci_str_map(body, "Meta") or {},
            port=port,
            enable_tag_override=bool(ci_get(body, "EnableTagOverride", False)),
            tagged_addresses=default_tagged_addresses(
                address, port, _service_tagged_addresses(body)
            ),
            weights=_weights(body),
        )
        checks: list[AgentCheck] = []
        for number, definition in enumerate(raw_checks, start=1):
            default_id = f"service:{service_id}"
            if len(raw_checks) > 1:
                default_id += f":{number}"
            checks.append(
                _parse_check(
                    definition,
                    default_id=default_id,
                    default_name=f"Service '{name}' check",
                    service_id=service_id,
                )
            )
        self.services[service_id] = service
        for check in checks:
            existing = self.checks.get(check.check_id)
            if existing is not None:
                self._stop_runner(existing)
                if existing.is_ttl and check.is_ttl:
                    check.status, check.output = existing.status, existing.output
                    check.critical_since = existing.critical_since
            if check.status == CRITICAL and check.critical_since is None:
                check.critical_since = self.clock.consul_now()
            self.checks[check.check_id] = check
        self.catalog.register(
            self._agent_node_record(),
            self._service_record(service),
            [self._check_record(c) for c in checks],
            force_check_ids=[c.check_id for c in checks],
            keep_node=True,
        )
        for check in checks:
            self._start_runner(check)

    def register_check(self, body: Mapping[str, Any]) -> None:
        """``PUT /v1/agent/check/register``."""
        name = ci_str(body, "Name")
        if not name:
            raise EmulatorError(400, "Missing check name")
        service_id = ci_str(body, "ServiceID")
        if service_id and service_id not in self.services:
            raise EmulatorError(500, f'ServiceID "{service_id}" does not exist')
        check = _parse_check(body, default_id=name, default_name=name, service_id=service_id)
        existing = self.checks.get(check.check_id)
        if existing is not None:
            self._stop_runner(existing)
        if check.status == CRITICAL:
            check.critical_since = self.clock.consul_now()
        self.checks[check.check_id] = check
        self.catalog.register(
            self._agent_node_record(),
            None,
            [self._check_record(check)],
            force_check_ids=[check.check_id],
            keep_node=True,
        )
        self._start_runner(check)

    def deregister_service(self, service_id: str) -> None:
        """``PUT /v1/agent/service/deregister/<id>`` (unknown IDs are fine)."""
        if self.services.pop(service_id, None) is None:
            return
        for check in [c for c in self.checks.values() if c.service_id == service_id]:
            self._drop_check(check)
        self.catalog.deregister(self.node_name, service_id=service_id)

    def deregister_check(self, check_id: str) -> None:
        """``PUT /v1/agent/check/deregister/<id>``."""
        check = self.checks.get(check_id)
        if check is None:
            return
        self._drop_check(check)
        self.catalog.deregister(self.node_name, check_id=check_id)

    def _drop_check(self, check: AgentCheck) -> None:
        self._stop_runner(check)
        if check.task is not None:
            check.task.cancel()
            check.task = None
        self.checks.pop(check.check_id, None)

    # -------------------------------------------------------------------------- TTL updates

    def ttl_update(self, check_id: str, status: str, output: str) -> None:
        """``/v1/agent/check/pass|warn|fail|update``: only TTL checks accept it."""
        check = self.checks.get(check_id)
        if check is None or not check.is_ttl:
            raise EmulatorError(500, f'CheckID "{check_id}" does not have associated TTL')
        self.set_status(check, status, output)
        self._start_runner(check)  # resets the TTL timer

    def set_status(self, check: AgentCheck, status: str, output: str) -> None:
        """Record a check result and sync it (status changes now, output-only changes later)."""
        output = truncate_output(output)
        status_changed = status != check.status
        check.status, check.output = status, output
        if status == CRITICAL:
            if check.critical_since is None:
                check.critical_since = self.clock.consul_now()
        else:
            check.critical_since = None
        if status_changed or self.config.check_update_interval <= 0:
            self._sync_check(check)
        else:
            self._defer_sync(check)

    def _sync_check(self, check: AgentCheck) -> None:
        if check.deferred is not None and check.deferred is not asyncio.current_task():
            check.deferred.cancel()
        check.deferred = None
        record = self._check_record(check)
        if check.service_id and (
            self.catalog.services.get((self.node_name.lower(), check.service_id.lower())) is None
        ):
            return  # removed from the catalog behind the agent's back; anti-entropy repairs
        if self.catalog.update_check(self.node_name, check.check_id, check.status, check.output):
            return
        if (self.node_name.lower(), check.check_id.lower()) not in self.catalog.checks:
            self.catalog.register(None, None, [record])

    def _defer_sync(self, check: AgentCheck) -> None:
        if check.deferred is not None:
            return
        check.deferred = asyncio.create_task(self._deferred_sync(check))

    async def _deferred_sync(self, check: AgentCheck) -> None:
        await self.clock.sleep(self.config.check_update_interval)
        check.deferred = None
        if self.checks.get(check.check_id) is check:
            self._sync_check(check)

    # ---------------------------------------------------------------------------- runners

    def _stop_runner(self, check: AgentCheck) -> None:
        if check.task is not None:
            check.task.cancel()
            check.task = None
        if check.deferred is not None:
            check.deferred.cancel()
            check.deferred = None

    def _start_runner(self, check: AgentCheck) -> None:
        if check.task is not None:
            check.task.cancel()
            check.task = None
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - registrations happen inside the loop
            return
        if check.is_ttl:
            check.task = asyncio.create_task(self._ttl_timer(check))
        elif check.http or check.tcp:
            check.task = asyncio.create_task(self._probe_loop(check))

    async def _ttl_timer(self, check: AgentCheck) -> None:
        assert check.ttl is not None
        await self.clock.sleep(check.ttl)
        check.task = None
        expired = TTL_EXPIRED_PREFIX + check.output if check.output else "TTL expired"
        self.set_status(check, CRITICAL, expired)

    async def _probe_loop(self, check: AgentCheck) -> None:
        interval = check.interval or 10.0
        await self.clock.sleep(self._random.uniform(0.0, interval))
        while True:
            status, output = await self.run_probe(check)
            if self.checks.get(check.check_id) is not check:
                return
            self.set_status(check, status, output)
            await self.clock.sleep(interval)

    async def run_check_now(self, check_id: str) -> str:
        """Run an HTTP/TCP check once right now (as if its interval elapsed) and record the
        result; returns the new status."""
        check = self.checks[check_id]
        status, output = await self.run_probe(check)
        self.set_status(check, status, output)
        return status

    async def run_probe(self, check: AgentCheck) -> tuple[str, str]:
        """Run the check's HTTP or TCP probe once (timeouts are not scaled)."""
        timeout = check.timeout or 10.0
        if check.http:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            return await http_probe(
                self._session,
                check.http,
                method=check.method,
                headers=check.header,
                time_limit=timeout,
            )
        assert check.tcp is not None
        return await tcp_probe(check.tcp, time_limit=timeout)

    # ---------------------------------------------------------------------- reaper and AE

    async def _first_coordinate(self) -> None:
        await self.clock.sleep(self.config.first_coordinate_after)
        self.catalog.set_coordinate(self.node_name, ZERO_COORD)

    async def _reaper_loop(self) -> None:
        while True:
            await self.clock.sleep(self.config.reap_interval)
            self.reap_critical_services()

    def reap_critical_services(self) -> list[str]:
        """Deregister services whose check has been critical for longer than its
        ``DeregisterCriticalServiceAfter`` (at least ``min_deregister_critical_after``)."""
        reaped: list[str] = []
        for check in list(self.checks.values()):
            limit = check.deregister_critical_after
            if limit is None or not check.service_id or check.critical_since is None:
                continue
            limit = max(limit, self.config.min_deregister_critical_after)
            expired = self.clock.consul_elapsed(check.critical_since) >= limit
            if check.status == CRITICAL and expired and check.service_id in self.services:
                self.deregister_service(check.service_id)
                reaped.append(check.service_id)
        return reaped

    async def _anti_entropy_loop(self) -> None:
        interval = self.config.anti_entropy_interval or 60.0
        while True:
            await self.clock.sleep(interval)
            self.anti_entropy()

    def _in_sync(self, service: AgentService, checks: list[AgentCheck]) -> bool:
        record = self.catalog.services.get((self.node_name.lower(), service.service_id.lower()))
        if record is None or not record.same_content(self._service_record(service)):
            return False
        for check in checks:
            found = self.catalog.checks.get((self.node_name.lower(), check.check_id.lower()))
            if found is None or not found.same_content(self._check_record(check)):
                return False
        return True

    def anti_entropy(self) -> None:
        """One full sync: put the agent's node info, services and checks back into the catalog
        and remove what the catalog has on the agent's node that the agent does not know. Each
        out-of-sync service is one write carrying the node info (as Consul's sync does)."""
        node = self.node_name.lower()
        known_services = {s.lower() for s in self.services} | {"consul"}
        for (svc_node, svc_id), svc in list(self.catalog.services.items()):
            if svc_node == node and svc_id not in known_services:
                self.catalog.deregister(self.node_name, service_id=svc.service_id)
        known_checks = {c.lower() for c in self.checks} | {"serfhealth"}
        for (chk_node, chk_id), chk in list(self.catalog.checks.items()):
            if chk_node == node and chk_id not in known_checks:
                self.catalog.deregister(self.node_name, check_id=chk.check_id)
        node_info = self.node_info or self._agent_node_record()
        for service in sorted(self.services.values(), key=lambda s: s.service_id):
            checks = [c for c in self.checks.values() if c.service_id == service.service_id]
            if self._in_sync(service, checks):
                continue
            self.catalog.register(
                node_info,
                self._service_record(service),
                [self._check_record(c) for c in checks],
            )
        if node_info is not None:
            self.catalog.register(node_info)
        for check in self.checks.values():
            if check.deferred is not None:
                check.deferred.cancel()
                check.deferred = None
            if not check.service_id:
                self.catalog.register(None, None, [self._check_record(check)])

    # -------------------------------------------------------------------------- rendering

    def render_services(self) -> dict[str, Any]:
        profile = self.catalog.profile
        return {
            sid: svc.render(profile, self.catalog.datacenter)
            for sid, svc in sorted(self.services.items())
        }

    def render_checks(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for cid, check in sorted(self.checks.items()):
            rendered = self.catalog.render_check(self._check_record(check))
            rendered["CreateIndex"] = rendered["ModifyIndex"] = 0
            out[cid] = rendered
        return out

    def _agent_node_record(self) -> NodeRecord | None:
        return self.catalog.node(self.node_name)

    def _service_record(self, service: AgentService) -> ServiceRecord:
        return ServiceRecord(
            node=self.node_name,
            service_id=service.service_id,
            name=service.name,
            tags=list(service.tags),
            address=service.address,
            meta=dict(service.meta) or None,
            port=service.port,
            enable_tag_override=service.enable_tag_override,
            tagged_addresses=dict(service.tagged_addresses) or None,
            weights=service.weights,
        )

    def _check_record(self, check: AgentCheck) -> CheckRecord:
        service = self.services.get(check.service_id)
        return CheckRecord(
            node=self.node_name,
            check_id=check.check_id,
            name=check.name,
            status=check.status,
            notes=check.notes,
            output=check.output,
            service_id=check.service_id,
            service_name=service.name if service else "",
            service_tags=list(service.tags) if service else [],
            check_type=check.check_type,
            interval=go_duration(check.interval or 0.0),
            timeout=go_duration(check.timeout or 0.0),
        )
