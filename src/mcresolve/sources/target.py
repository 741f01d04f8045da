"""Target strings: how an application says where its endpoints come from.

A target string selects one of three resolution stages (DNS, the health catalog, prepared
queries) or a static list, so an application switches stages by configuration only.
:func:`parse_target` turns a string into a frozen, typed spec and fails at once with a
:class:`TargetError` that says what was expected.

Forms (full reference with examples: ``docs/stages.md``)::

    dns://<name>[?server=<ip[:port]>,...&type=srv|a&transport=auto|udp|tcp]      stage 1
    consul://<service>[?tag=&dc=&near=&node-meta=k:v&consistency=&filter=&peer=&ns=&partition=
                       &failover=dc2,dc3]                                         stage 2
    consul+query://<query>[?dc=&limit=&near=&refresh=&address=&standby=]         stage 3
    static://<host:port>[,<host:port>...]                                         static list
    [<tag>.]<service>.service[.<dc>].consul, _<svc>._<tag>.service[.<dc>].consul  -> consul://
    <query>.query[.<dc>].consul                                                   -> consul+query://
    <ip>:<port>[,<ip>:<port>...]                                                  -> static://
    <host>:<port> (any other host name)                                           -> dns:// (A)

Options common to every scheme (see :class:`CommonOptions`): ``port``, ``snapshot``,
``fallback-after``, ``empty-hold``, ``empty-confirm`` and ``fallback``. ``fallback=`` takes
**the rest of the string** verbatim (so the fallback may have options of its own, including its own
``fallback=``): it must be the last option.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Final, Literal, TypeVar
from urllib.parse import quote, unquote

from mcresolve.errors import McResolveError
from mcresolve.timing import format_duration

__all__ = [
    "CONSUL_DNS_PORT",
    "CommonOptions",
    "Consistency",
    "DnsServer",
    "DnsTarget",
    "HealthTarget",
    "HostPort",
    "PreparedQueryTarget",
    "Stage",
    "StaticTarget",
    "Target",
    "TargetError",
    "format_duration",
    "parse_duration",
    "parse_target",
]

#: Warm standby datacenters of a stage-3 target by default: one, the next in the query's
#: failover order. Consul's own failover stops at the first datacenter that has instances, so
#: the next one is where traffic goes when the local datacenter is lost; each costs one idle
#: blocking request per wait period.
DEFAULT_STANDBY: Final = 1
#: At most this many standby datacenters (each is a blocking watch held open).
MAX_STANDBY: Final = 16

#: Consul's default DNS port: the port used for ``server=`` entries that give none.
CONSUL_DNS_PORT: Final = 8600

Consistency = Literal["default", "stale", "consistent", "cached"]
#: Which address of each instance a health target connects to (see ``HealthTarget``).
AddressChoice = Literal["lan", "wan", "auto"]
_ADDRESS: tuple[AddressChoice, ...] = ("lan", "wan", "auto")
RecordType = Literal["srv", "a"]
Transport = Literal["auto", "udp", "tcp"]

_S = TypeVar("_S", bound=str)
_CONSISTENCY: Final[tuple[Consistency, ...]] = ("default", "stale", "consistent", "cached")
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_DC_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_HOSTNAME_RE: Final = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$"
)
_DURATION_PART_RE: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_DURATION_UNITS: Final[Mapping[str, float]] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class TargetError(McResolveError, ValueError):
    """A target string that cannot be used; the message says what was expected."""


#: Why ``consul+query://...?filter=`` is refused: ``GET /v1/query/<id>/execute`` parses the
#: common query options (``filter`` among them) but the server's ``PreparedQuery.Execute``
#: never applies them (hashicorp/consul agent/prepared_query_endpoint.go, agent/consul/
#: prepared_query_endpoint.go; api-docs/query.mdx lists only ``dc``, ``near``, ``limit``,
#: ``connect``): sending it would silently return every instance.
PREPARED_QUERY_FILTER_REFUSAL: Final = (
    "consul+query://: option filter is ignored by Consul's prepared-query execution (it "
    "would answer unfiltered); select instances in the query definition's own Service.Tags, "
    "Service.NodeMeta or Service.ServiceMeta, or use consul://<service>?filter=..."
)


class Stage(Enum):
    """Where endpoints come from: a static list (0), then the three Consul stages in the order an
    application adopts them (DNS, health catalog, prepared queries)."""

    STATIC = 0
    DNS = 1
    HEALTH = 2
    PREPARED_QUERY = 3


# --------------------------------------------------------------------------------------------
# Durations (Go style, like Consul's own settings: "500ms", "5s", "1m30s", "1.5h")


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Parse a Go-style duration (``250ms``, ``5s``, ``1m30s``, ``2.5s``, ``0``) into seconds."""
    if text == "0":
        return 0.0
    pos = 0
    total = 0.0
    while pos < len(text):
        match = _DURATION_PART_RE.match(text, pos)
        if match is None:
            raise TargetError(
                f"{what}: expected a duration such as 500ms, 5s, 1m30s or 0, got {text!r}"
            )
        number, unit = float(match.group(1)), match.group(2)
        total += number / 1000 if unit == "ms" else number * _DURATION_UNITS[unit]
        pos = match.end()
    if not text or not math.isfinite(total):
        raise TargetError(
            f"{what}: expected a duration such as 500ms, 5s, 1m30s or 0, got {text!r}"
        )
    return total


# --------------------------------------------------------------------------------------------
# Value types


@dataclass(frozen=True, slots=True)
class HostPort:
    """A host (IPv4, IPv6 without brackets, or a host name) and an optional port."""

    host: str
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DnsServer:
    """One DNS server to ask: an IP address and a port (default :data:`CONSUL_DNS_PORT`)."""

    address: str
    port: int = CONSUL_DNS_PORT

    def __str__(self) -> str:
        return str(HostPort(self.address, self.port))


@dataclass(frozen=True, slots=True)
class CommonOptions:
    """Options every target accepts.

    * ``port``: the port used when an answer carries none (DNS A/AAAA answers, static entries
      without a port, a Consul service registered with port 0). Consul's registered port wins.
    * ``snapshot``: path of a JSON file holding the last known good set; written atomically on
      each good resolution, read at start (warm start while Consul is unreachable).
    * ``fallback``: the target to resolve through while this one fails and there is no last
      known good set, or once it has failed for ``fallback_after`` seconds.
    * ``fallback_after``: ``None`` (default) = use the fallback only when there is nothing else
      (no last known good set); a duration = also after failing that long with one.
    * ``empty_hold`` / ``empty_confirm``: an empty answer right after a non-empty one is held
      as suspect (the previous set stays) until it has been seen ``empty_confirm`` times in a
      row or has lasted ``empty_hold`` seconds, whichever comes first. ``empty_hold=0``
      disables the hold.
    """

    port: int | None = None
    snapshot: str | None = None
    fallback: Target | None = None
    fallback_after: float | None = None
    empty_hold: float = 10.0
    empty_confirm: int = 3

    def __post_init__(self) -> None:
        if self.port is not None:
            _check_port(self.port, "port")
        if self.fallback_after is not None and not (
            math.isfinite(self.fallback_after) and self.fallback_after >= 0
        ):
            raise TargetError(
                f"fallback-after: expected a duration >= 0, got {self.fallback_after}"
            )
        if not (math.isfinite(self.empty_hold) and self.empty_hold >= 0):
            raise TargetError(f"empty-hold: expected a duration >= 0, got {self.empty_hold}")
        if self.empty_confirm < 1:
            raise TargetError(f"empty-confirm: expected an integer >= 1, got {self.empty_confirm}")
        if self.snapshot is not None and not self.snapshot:
            raise TargetError("snapshot: expected a file path, got an empty value")

    def query_items(self) -> list[tuple[str, str]]:
        """The options that differ from their defaults, in canonical order (``fallback`` last)."""
        items: list[tuple[str, str]] = []
        if self.port is not None:
            items.append(("port", str(self.port)))
        if self.snapshot is not None:
            items.append(("snapshot", self.snapshot))
        if self.fallback_after is not None:
            items.append(("fallback-after", format_duration(self.fallback_after)))
        if self.empty_hold != 10.0:
            items.append(("empty-hold", format_duration(self.empty_hold)))
        if self.empty_confirm != 3:
            items.append(("empty-confirm", str(self.empty_confirm)))
        if self.fallback is not None:
            items.append(("fallback", str(self.fallback)))
        return items


@dataclass(frozen=True, slots=True)
class StaticTarget:
    """A fixed list of endpoints (``static://10.0.0.1:9000,[::1]:9000``)."""

    endpoints: tuple[HostPort, ...]
    options: CommonOptions = field(default_factory=CommonOptions)
    stage: Stage = field(default=Stage.STATIC, init=False)

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise TargetError("static://: expected at least one host:port")
        for endpoint in self.endpoints:
            if endpoint.port is None and self.options.port is None:
                raise TargetError(
                    f"static://: {endpoint.host!r} has no port; expected host:port "
                    "or a port=<n> option"
                )

    def __str__(self) -> str:
        return _render("static", ",".join(str(e) for e in self.endpoints), [], self.options)


@dataclass(frozen=True, slots=True)
class DnsTarget:
    """Stage 1: resolve through DNS (Consul's DNS interface or any DNS server).

    ``servers`` empty = the system resolver (``/etc/resolv.conf``). ``record="srv"`` asks SRV
    (ports from the answer) and falls back to A/AAAA with ``options.port`` when there is no SRV
    record; ``record="a"`` asks A/AAAA only. ``transport="auto"`` asks SRV over TCP (Consul silently
    trims UDP answers to 3 records, fewer when they exceed 512 bytes, without setting TC) and
    A/AAAA over UDP, again over TCP when truncated or holding ``udp_answer_limit`` records.
    ``ttl_floor`` is the minimum time an answer is
    cached (Consul answers TTL 0); ``refresh`` the period of re-resolution; ``timeout`` the
    lifetime of one lookup.
    """

    name: str
    servers: tuple[DnsServer, ...] = ()
    record: RecordType = "srv"
    transport: Transport = "auto"
    udp_answer_limit: int = 3
    ttl_floor: float = 1.0
    refresh: float = 2.0
    timeout: float = 2.0
    options: CommonOptions = field(default_factory=CommonOptions)
    stage: Stage = field(default=Stage.DNS, init=False)

    def __post_init__(self) -> None:
        _check_hostname(self.name, "dns://")
        if self.record not in ("srv", "a"):
            raise TargetError(f"type: expected srv or a, got {self.record!r}")
        if self.transport not in ("auto", "udp", "tcp"):
            raise TargetError(f"transport: expected auto, udp or tcp, got {self.transport!r}")
        if self.record == "a" and self.options.port is None:
            raise TargetError(
                "dns:// with type=a: expected a port=<n> option (A records carry none)"
            )
        if self.udp_answer_limit < 1:
            raise TargetError(f"udp-limit: expected an integer >= 1, got {self.udp_answer_limit}")
        for name, value, minimum in (
            ("ttl-floor", self.ttl_floor, 0.0),
            ("refresh", self.refresh, 0.0),
            ("timeout", self.timeout, 0.0),
        ):
            if not (math.isfinite(value) and value >= minimum) or (
                name != "ttl-floor" and not value
            ):
                raise TargetError(f"{name}: expected a positive duration, got {value}")

    @property
    def consul_name(self) -> ConsulName | None:
        """The Consul meaning of :attr:`name` when it is a Consul DNS name, else ``None``."""
        return _parse_consul_name(self.name)

    def __str__(self) -> str:
        items: list[tuple[str, str]] = []
        if self.servers:
            items.append(("server", ",".join(str(s) for s in self.servers)))
        if self.record != "srv":
            items.append(("type", self.record))
        if self.transport != "auto":
            items.append(("transport", self.transport))
        if self.udp_answer_limit != 3:
            items.append(("udp-limit", str(self.udp_answer_limit)))
        if self.ttl_floor != 1.0:
            items.append(("ttl-floor", format_duration(self.ttl_floor)))
        if self.refresh != 2.0:
            items.append(("refresh", format_duration(self.refresh)))
        if self.timeout != 2.0:
            items.append(("timeout", format_duration(self.timeout)))
        return _render("dns", self.name, items, self.options)


@dataclass(frozen=True, slots=True)
class HealthTarget:
    """Stage 2: a blocking watch on ``/v1/health/service/<service>?passing``.

    ``tag`` (one tag: Consul 1.0 uses only the first), ``node_meta`` (``key:value`` pairs, all
    must match), ``dc`` (``None`` = the agent's datacenter), ``near`` (``_agent`` or a node
    name: sort by round-trip time from it), ``consistency`` (``default``, ``stale``,
    ``consistent`` or ``cached``), ``agent`` (``host:port`` of the agent to ask, from
    ``consul://host:port/service``; ``None`` = the client's configured addresses).

    Consul 1.5+ / 1.13+ / Enterprise: ``filter`` (a go-bexpr expression such as
    ``Service.Meta.version == "2"``, percent-encoded in the target string; refused by agents
    older than 1.5, which would ignore it), ``peer`` (a cluster peer's exported service),
    ``ns`` and ``partition`` (Enterprise only; Community Edition refuses any). None of them is
    sent unless set. ``address``: ``lan`` (default: ``Service.Address``, else the node's),
    ``wan`` (the WAN tagged address when there is one) or ``auto`` (WAN for instances of another
    datacenter than the agent's).

    ``failover`` (opt-in): other datacenters, in order, whose passing instances (with the same
    filters) are kept known ahead of need as warm standby endpoints: when every endpoint of the
    local datacenter has failed or been ejected, the pool moves to the first of them at once
    (:mod:`mcresolve.sources.standby`).
    """

    service: str
    tag: str | None = None
    dc: str | None = None
    near: str | None = None
    node_meta: tuple[tuple[str, str], ...] = ()
    consistency: Consistency = "default"
    agent: HostPort | None = None
    options: CommonOptions = field(default_factory=CommonOptions)
    filter: str | None = None
    peer: str | None = None
    ns: str | None = None
    partition: str | None = None
    address: AddressChoice = "lan"
    failover: tuple[str, ...] = ()
    stage: Stage = field(default=Stage.HEALTH, init=False)

    def __post_init__(self) -> None:
        _check_name(self.service, "consul://", "a service name")
        if self.tag is not None:
            _check_name(self.tag, "tag", "a tag")
        if self.dc is not None:
            _check_dc(self.dc)
        if self.near is not None:
            _check_name(self.near, "near", "_agent or a node name")
        for key, value in self.node_meta:
            if not key or ":" in key or not value:
                raise TargetError(f"node-meta: expected key:value, got {key!r}:{value!r}")
        if self.consistency not in _CONSISTENCY:
            raise TargetError(
                f"consistency: expected one of {', '.join(_CONSISTENCY)}, got {self.consistency!r}"
            )
        _check_agent(self.agent, "consul")
        if self.filter is not None:
            _check_filter(self.filter)
        _check_address(self.address)
        for what, name in (("peer", self.peer), ("ns", self.ns), ("partition", self.partition)):
            if name is not None:
                _check_name(name, what, f"a {what} name")
        _check_failover(self.failover, self.dc, self.peer)

    def __str__(self) -> str:
        items: list[tuple[str, str]] = []
        if self.tag is not None:
            items.append(("tag", self.tag))
        if self.dc is not None:
            items.append(("dc", self.dc))
        if self.near is not None:
            items.append(("near", self.near))
        items.extend(("node-meta", f"{k}:{v}") for k, v in self.node_meta)
        if self.consistency != "default":
            items.append(("consistency", self.consistency))
        for key, value in (
            ("filter", self.filter),
            ("peer", self.peer),
            ("ns", self.ns),
            ("partition", self.partition),
        ):
            if value is not None:
                items.append((key, value))
        if self.address != "lan":
            items.append(("address", self.address))
        if self.failover:
            items.append(("failover", ",".join(self.failover)))
        where = self.service if self.agent is None else f"{self.agent}/{self.service}"
        return _render("consul", where, items, self.options)


@dataclass(frozen=True, slots=True)
class PreparedQueryTarget:
    """Stage 3: execute the prepared query ``query`` (name or ID), with its failover.

    ``dc`` (``None`` = the agent's datacenter; queries are defined per datacenter), ``limit``
    (``None`` = all), ``near`` (``_agent`` or a node name), ``refresh`` (period of
    re-execution, jittered; a change in the local health of the query's service re-executes at
    once), ``agent`` and ``address`` as for :class:`HealthTarget` (``auto``: the WAN address of
    instances answered by another datacenter than the agent's, after a failover or with
    ``dc=``). There is no ``filter``: Consul's execution ignores it (see
    :data:`PREPARED_QUERY_FILTER_REFUSAL`); selection belongs in the query definition.
    ``standby``: how many of the query's failover datacenters (next in its order) are kept
    known ahead of need as warm standby endpoints (default 1, ``0`` turns it off;
    :mod:`mcresolve.sources.standby`).
    """

    query: str
    dc: str | None = None
    limit: int | None = None
    near: str | None = None
    refresh: float = 10.0
    agent: HostPort | None = None
    options: CommonOptions = field(default_factory=CommonOptions)
    address: AddressChoice = "lan"
    standby: int = DEFAULT_STANDBY
    stage: Stage = field(default=Stage.PREPARED_QUERY, init=False)

    def __post_init__(self) -> None:
        _check_name(self.query, "consul+query://", "a prepared query name or ID")
        if self.dc is not None:
            _check_dc(self.dc)
        if self.limit is not None and self.limit < 1:
            raise TargetError(f"limit: expected an integer >= 1, got {self.limit}")
        if self.near is not None:
            _check_name(self.near, "near", "_agent or a node name")
        if not (math.isfinite(self.refresh) and self.refresh > 0):
            raise TargetError(f"refresh: expected a positive duration, got {self.refresh}")
        _check_agent(self.agent, "consul+query")
        _check_address(self.address)
        if isinstance(self.standby, bool) or not 0 <= self.standby <= MAX_STANDBY:
            raise TargetError(
                f"standby: expected an integer from 0 to {MAX_STANDBY}, got {self.standby!r}"
            )

    def __str__(self) -> str:
        items: list[tuple[str, str]] = []
        if self.dc is not None:
            items.append(("dc", self.dc))
        if self.limit is not None:
            items.append(("limit", str(self.limit)))
        if self.near is not None:
            items.append(("near", self.near))
        if self.refresh != 10.0:
            items.append(("refresh", format_duration(self.refresh)))
        if self.address != "lan":
            items.append(("address", self.address))
        if self.standby != DEFAULT_STANDBY:
            items.append(("standby", str(self.standby)))
        where = self.query if self.agent is None else f"{self.agent}/{self.query}"
        return _render("consul+query", where, items, self.options)


Target = StaticTarget | DnsTarget | HealthTarget | PreparedQueryTarget


@dataclass(frozen=True, slots=True)
class ConsulName:
    """What a Consul DNS name means: ``kind`` ``service`` or ``query``, its name, tag, dc, and
    the cluster peer for ``<svc>.service.<peer>.peer.consul``."""

    kind: Literal["service", "query"]
    name: str
    tag: str | None = None
    dc: str | None = None
    peer: str | None = None


# --------------------------------------------------------------------------------------------
# Parsing


def parse_target(text: str) -> Target:
    """Parse a target string into its typed spec (see the module docstring for the forms).

    Raises :class:`TargetError` with a message that names what was expected.
    """
    if not isinstance(text, str):
        raise TargetError(f"expected a target string, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise TargetError(
            "expected a target such as consul://<service>, consul+query://<query>, "
            "dns://<name>, static://<host:port>,... or <service>.service.consul; got ''"
        )
    scheme, sep, rest = text.partition("://")
    if not sep:
        return _parse_plain(text)
    scheme = scheme.lower()
    where, query = _split_query(rest)
    if scheme == "static":
        return _parse_static(where, query)
    if scheme == "dns":
        return _parse_dns(where, query)
    if scheme == "consul":
        return _parse_health(where, query)
    if scheme == "consul+query":
        return _parse_prepared_query(where, query)
    raise TargetError(
        f"unknown scheme {scheme!r}: expected consul://, consul+query://, dns:// or static://"
    )


def _split_query(rest: str) -> tuple[str, str]:
    where, _, query = rest.partition("?")
    return where, query


class _Options:
    """The ``?a=b&c=d`` part, with ``fallback=`` taking the rest of the string."""

    def __init__(self, query: str, scheme: str) -> None:
        self.scheme = scheme
        self.fallback_text: str | None = None
        self.items: list[tuple[str, str]] = []
        remaining = query
        while remaining:
            part, _, remaining = remaining.partition("&")
            if not part:
                continue
            key, eq, value = part.partition("=")
            key = unquote(key).lower()
            if key == "fallback":
                raw = value + ("&" + remaining if remaining else "")
                self.fallback_text = raw if "://" in raw else unquote(raw)
                break
            self.items.append((key, unquote(value) if eq else ""))
        self.used: set[str] = set()

    def all(self, key: str) -> list[str]:
        self.used.add(key)
        return [v for k, v in self.items if k == key]

    def one(self, key: str) -> str | None:
        values = self.all(key)
        if len(values) > 1:
            raise TargetError(
                f"{self.scheme}: option {key} given {len(values)} times; expected once"
            )
        return values[0] if values else None

    def get(self, key: str, convert: Callable[[str], object], default: object) -> object:
        value = self.one(key)
        return default if value is None else convert(value)

    def finish(self, allowed: Iterable[str]) -> CommonOptions:
        port = self.one("port")
        snapshot = self.one("snapshot")
        fallback_after = self.one("fallback-after")
        empty_hold = self.one("empty-hold")
        empty_confirm = self.one("empty-confirm")
        known = set(allowed) | {"port", "snapshot", "fallback-after", "empty-hold", "empty-confirm"}
        unknown = [k for k, _ in self.items if k not in known]
        if unknown:
            raise TargetError(
                f"{self.scheme}: unknown option {unknown[0]!r}; expected one of "
                f"{', '.join(sorted(known | {'fallback'}))}"
            )
        fallback: Target | None = None
        if self.fallback_text is not None:
            try:
                fallback = parse_target(self.fallback_text)
            except TargetError as exc:
                raise TargetError(f"fallback: {exc}") from None
        return CommonOptions(
            port=None if port is None else _parse_int(port, "port"),
            snapshot=snapshot,
            fallback=fallback,
            fallback_after=None
            if fallback_after is None
            else parse_duration(fallback_after, what="fallback-after"),
            empty_hold=10.0
            if empty_hold is None
            else parse_duration(empty_hold, what="empty-hold"),
            empty_confirm=3
            if empty_confirm is None
            else _parse_int(empty_confirm, "empty-confirm"),
        )


def _parse_static(where: str, query: str) -> StaticTarget:
    options = _Options(query, "static://")
    common = options.finish(())
    if not where:
        raise TargetError("static://: expected at least one host:port, got nothing")
    entries = tuple(_parse_host_port(part, "static://") for part in where.split(","))
    return StaticTarget(entries, common)


def _parse_dns(where: str, query: str) -> DnsTarget:
    options = _Options(query, "dns://")
    servers: list[DnsServer] = []
    for value in options.all("server"):
        for part in value.split(","):
            hp = _parse_host_port(part, "server")
            try:
                ipaddress.ip_address(hp.host)
            except ValueError:
                raise TargetError(
                    f"server: expected an IP address with an optional port, got {part!r}"
                ) from None
            servers.append(DnsServer(hp.host, CONSUL_DNS_PORT if hp.port is None else hp.port))
    record = options.one("type")
    transport = options.one("transport")
    limit = options.one("udp-limit")
    ttl_floor = options.one("ttl-floor")
    refresh = options.one("refresh")
    timeout = options.one("timeout")
    common = options.finish(
        ("server", "type", "transport", "udp-limit", "ttl-floor", "refresh", "timeout")
    )
    if not where:
        raise TargetError("dns://: expected a DNS name such as storage-object-minio.service.consul")
    return DnsTarget(
        name=where,
        servers=tuple(servers),
        record="srv" if record is None else _literal(record.lower(), ("srv", "a"), "type"),
        transport="auto"
        if transport is None
        else _literal(transport.lower(), ("auto", "udp", "tcp"), "transport"),
        udp_answer_limit=3 if limit is None else _parse_int(limit, "udp-limit"),
        ttl_floor=1.0 if ttl_floor is None else parse_duration(ttl_floor, what="ttl-floor"),
        refresh=2.0 if refresh is None else parse_duration(refresh, what="refresh"),
        timeout=2.0 if timeout is None else parse_duration(timeout, what="timeout"),
        options=common,
    )


def _split_agent(where: str, scheme: str, what: str) -> tuple[HostPort | None, str]:
    if "/" not in where:
        return None, where
    agent_text, _, name = where.partition("/")
    if not name or "/" in name:
        raise TargetError(
            f"{scheme}: expected {scheme}<{what}> or {scheme}<agent host:port>/<{what}>"
        )
    return _parse_host_port(agent_text, f"{scheme} agent"), name


def _parse_health(where: str, query: str) -> HealthTarget:
    options = _Options(query, "consul://")
    agent, service = _split_agent(where, "consul://", "service")
    tag = options.one("tag")
    dc = options.one("dc")
    near = options.one("near")
    node_meta = tuple(_parse_node_meta(v) for v in options.all("node-meta"))
    consistency = options.one("consistency")
    modern = {key: options.one(key) for key in ("filter", "peer", "ns", "partition")}
    address = options.one("address")
    failover = options.one("failover")
    common = options.finish(
        (
            "failover",
            "tag",
            "dc",
            "near",
            "node-meta",
            "consistency",
            "filter",
            "peer",
            "ns",
            "partition",
            "address",
        )
    )
    if not service:
        raise TargetError("consul://: expected a service name, e.g. consul://storage-object-minio")
    return HealthTarget(
        service=service,
        tag=tag,
        dc=dc,
        near=near,
        node_meta=node_meta,
        consistency="default"
        if consistency is None
        else _literal(consistency.lower(), _CONSISTENCY, "consistency"),
        agent=agent,
        options=common,
        filter=modern["filter"],
        peer=modern["peer"],
        ns=modern["ns"],
        partition=modern["partition"],
        address="lan" if address is None else _literal(address.lower(), _ADDRESS, "address"),
        failover=() if failover is None else _parse_failover(failover),
    )


def _parse_prepared_query(where: str, query: str) -> PreparedQueryTarget:
    options = _Options(query, "consul+query://")
    agent, name = _split_agent(where, "consul+query://", "query")
    dc = options.one("dc")
    limit = options.one("limit")
    near = options.one("near")
    refresh = options.one("refresh")
    address = options.one("address")
    if options.all("filter"):
        raise TargetError(PREPARED_QUERY_FILTER_REFUSAL)
    standby = options.one("standby")
    common = options.finish(("dc", "limit", "near", "refresh", "address", "standby"))
    if not name:
        raise TargetError(
            "consul+query://: expected a prepared query name or ID, "
            "e.g. consul+query://storage-object-minio"
        )
    return PreparedQueryTarget(
        query=name,
        dc=dc,
        limit=None if limit is None else _parse_int(limit, "limit"),
        near=near,
        refresh=10.0 if refresh is None else parse_duration(refresh, what="refresh"),
        agent=agent,
        options=common,
        address="lan" if address is None else _literal(address.lower(), _ADDRESS, "address"),
        standby=DEFAULT_STANDBY if standby is None else _parse_int(standby, "standby"),
    )


def _parse_plain(text: str) -> Target:
    """A target without a scheme: a Consul DNS name, an ``ip:port`` list, or ``host:port``.

    Rule: ``*.service[.<dc>].consul`` -> ``consul://`` (tag and dc taken from the name),
    ``*.query[.<dc>].consul`` -> ``consul+query://``; a port (``name:9000``) becomes the
    ``port=`` option. IP addresses (``ip:port[,ip:port...]``) -> ``static://``. Any other host
    with a port -> ``dns://<host>?type=a&port=<port>`` through the system resolver. Options
    (``?...``) are those of the scheme the name maps to.
    """
    where, query = _split_query(text)
    if "," in where:
        return _parse_static(where, query)
    hp = _parse_host_port(where, "target")
    port_query = query if hp.port is None else _prepend_option(f"port={hp.port}", query)
    if hp.host.rstrip(".").lower().endswith(".consul"):
        consul = _parse_consul_name(hp.host)
        if consul is None:
            raise TargetError(
                f"{hp.host!r}: expected a Consul name <service>.service[.<dc>].consul, "
                "<tag>.<service>.service[.<dc>].consul, <service>.service.<dc>.dc.consul, "
                "<service>.service.<peer>.peer.consul or <query>.query[.<dc>].consul"
            )
        if consul.kind == "query":
            pq = _parse_prepared_query(consul.name, port_query)
            return pq if pq.dc is not None else replace(pq, dc=consul.dc)
        health = _parse_health(consul.name, port_query)
        return replace(
            health,
            tag=consul.tag if health.tag is None else health.tag,
            dc=consul.dc if health.dc is None else health.dc,
            peer=consul.peer if health.peer is None else health.peer,
        )
    if _is_ip(hp.host):
        if hp.port is None:
            raise TargetError(f"{text!r}: expected ip:port (an address alone gives no port)")
        return _parse_static(where, query)
    if hp.port is None:
        raise TargetError(
            f"{text!r} is not a Consul name: expected <service>.service[.<dc>].consul, "
            "<query>.query[.<dc>].consul, host:port, or a scheme "
            "(consul://, consul+query://, dns://, static://)"
        )
    return _parse_dns(hp.host, _prepend_option("type=a", port_query))


def _prepend_option(option: str, query: str) -> str:
    return f"{option}&{query}" if query else option


def _parse_consul_name(name: str) -> ConsulName | None:
    """Map a Consul DNS name to its meaning, or ``None`` if it is not one.

    Rule: the name must end in ``.consul`` (trailing dot allowed) and the label before the
    optional datacenter must be ``service`` or ``query``: ``[<tag>.]<svc>.service[.<dc>].consul``,
    ``_<svc>._<tag>.service[.<dc>].consul`` (RFC 2782; ``_tcp`` means any tag) and
    ``<query>.query[.<dc>].consul``; the labelled locality of Consul 1.x's DNS
    (dns-static-lookups.mdx) is accepted in place of ``.<dc>``: ``.<dc>.dc`` and, for
    services, ``.<peer>.peer`` (a cluster peer's exported service).
    """
    labels = name.rstrip(".").split(".")
    if len(labels) < 3 or labels[-1].lower() != "consul":
        return None
    body = labels[:-1]
    dc: str | None = None
    peer: str | None = None
    if (
        len(body) >= 4
        and body[-1].lower() in ("dc", "peer")
        and body[-3].lower() in ("service", "query")
    ):
        if body[-1].lower() == "peer":
            if body[-3].lower() != "service":
                return None
            peer = body[-2]
        else:
            dc = body[-2]
        body = body[:-2]
    elif body[-1].lower() not in ("service", "query"):
        if len(body) < 3 or body[-2].lower() not in ("service", "query"):
            return None
        dc = body[-1]
        body = body[:-1]
    kind = body[-1].lower()
    names = body[:-1]
    if kind == "query":
        return ConsulName("query", names[0], dc=dc) if len(names) == 1 else None
    if len(names) == 1:
        return ConsulName("service", names[0], dc=dc, peer=peer)
    if len(names) == 2:
        first, second = names
        if first.startswith("_") and second.startswith("_"):
            tag = second[1:]
            return ConsulName(
                "service", first[1:], tag=None if tag == "tcp" else tag, dc=dc, peer=peer
            )
        return ConsulName("service", second, tag=first, dc=dc, peer=peer)
    return None


# --------------------------------------------------------------------------------------------
# Small helpers


def _render(scheme: str, where: str, items: list[tuple[str, str]], common: CommonOptions) -> str:
    all_items = items + common.query_items()
    if not all_items:
        return f"{scheme}://{where}"
    parts = []
    for key, value in all_items:
        # fallback is the last option and taken verbatim; everything else is percent-encoded.
        parts.append(
            f"{key}={value}" if key == "fallback" else f"{key}={quote(value, safe=':,/_.-[]')}"
        )
    return f"{scheme}://{where}?{'&'.join(parts)}"


def _parse_host_port(text: str, what: str) -> HostPort:
    text = text.strip()
    if not text:
        raise TargetError(f"{what}: expected host:port, got an empty entry")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise TargetError(f"{what}: expected [ipv6]:port, got {text!r} (missing ']')")
        host, rest = text[1:end], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise TargetError(
                f"{what}: expected an IPv6 address in brackets, got {text!r}"
            ) from None
        if not rest:
            return HostPort(host)
        if not rest.startswith(":"):
            raise TargetError(f"{what}: expected [ipv6]:port, got {text!r}")
        return HostPort(host, _parse_port(rest[1:], what, text))
    if text.count(":") > 1:
        raise TargetError(
            f"{what}: expected host:port with IPv6 addresses in brackets ([::1]:9000), got {text!r}"
        )
    host, sep, port = text.partition(":")
    if not _is_ip(host):
        _check_hostname(host, what)
    return HostPort(host, _parse_port(port, what, text) if sep else None)


def _parse_port(text: str, what: str, whole: str) -> int:
    if not text.isdigit():
        raise TargetError(f"{what}: expected a port number 1..65535 in {whole!r}, got {text!r}")
    return _check_port(int(text), what)


def _check_port(port: int, what: str) -> int:
    if not 0 < port < 65536:
        raise TargetError(f"{what}: expected a port number 1..65535, got {port}")
    return port


def _parse_int(text: str, what: str) -> int:
    if not re.fullmatch(r"-?\d+", text):
        raise TargetError(f"{what}: expected an integer, got {text!r}")
    return int(text)


def _parse_node_meta(text: str) -> tuple[str, str]:
    key, sep, value = text.partition(":")
    if not sep or not key or not value:
        raise TargetError(f"node-meta: expected key:value, got {text!r}")
    return key, value


def _literal(value: str, allowed: tuple[_S, ...], what: str) -> _S:
    for candidate in allowed:
        if value == candidate:
            return candidate
    raise TargetError(f"{what}: expected one of {', '.join(allowed)}, got {value!r}")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_name(name: str, what: str, expected: str) -> None:
    if not _NAME_RE.match(name):
        raise TargetError(
            f"{what}: expected {expected} (letters, digits, '-', '_', '.'), got {name!r}"
        )


#: Longest ``filter`` expression accepted: a sanity bound far above any selector expression,
#: keeping the request line well under common 8 KiB proxy limits once percent-encoded.
MAX_FILTER_LENGTH: Final = 2048


def _check_filter(expression: str) -> None:
    if not expression.strip():
        raise TargetError("filter: expected a filter expression, got an empty value")
    if len(expression) > MAX_FILTER_LENGTH:
        raise TargetError(
            f"filter: expected at most {MAX_FILTER_LENGTH} characters, got {len(expression)}"
        )
    bad = next((c for c in expression if not (c.isprintable() or c in " \t\n\r")), None)
    if bad is not None:
        raise TargetError(f"filter: expected printable text, got the character {bad!r}")


def _check_address(address: str) -> None:
    if address not in _ADDRESS:
        raise TargetError(f"address: expected one of {', '.join(_ADDRESS)}, got {address!r}")


def _parse_failover(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not text.strip() or any(not name for name in names):
        raise TargetError(
            f"failover: expected datacenter names separated by commas, e.g. dc2,dc3, got {text!r}"
        )
    return names


def _check_failover(failover: tuple[str, ...], dc: str | None, peer: str | None) -> None:
    if not isinstance(failover, tuple):
        raise TargetError(
            f"failover: expected a tuple of datacenter names, got {type(failover).__name__}"
        )
    if not failover:
        return
    if len(failover) > MAX_STANDBY:
        raise TargetError(
            f"failover: expected at most {MAX_STANDBY} datacenters, got {len(failover)}"
        )
    for name in failover:
        _check_dc(name, "failover")
    seen = {name.lower() for name in failover}
    if len(seen) != len(failover):
        raise TargetError(f"failover: expected each datacenter once, got {','.join(failover)}")
    if dc is not None and dc.lower() in seen:
        raise TargetError(f"failover: {dc!r} is the target's own datacenter (dc=)")
    if peer is not None:
        raise TargetError("failover: cannot be combined with peer= (a peer has no datacenters)")


def _check_dc(dc: str, what: str = "dc") -> None:
    if not isinstance(dc, str) or not _DC_RE.match(dc):
        raise TargetError(
            f"{what}: expected a datacenter name (letters, digits, '-', '_'), got {dc!r}"
        )


def _check_agent(agent: HostPort | None, scheme: str) -> None:
    if agent is not None and agent.port is None:
        raise TargetError(f"{scheme}://{agent.host}/...: expected the agent as host:port")


def _check_hostname(name: str, what: str) -> None:
    if not _HOSTNAME_RE.match(name):
        raise TargetError(f"{what}: expected a DNS host name, got {name!r}")
