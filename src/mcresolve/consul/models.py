"""Typed views of Consul's answers, parsed strictly (a wrong shape raises
:class:`~mcresolve.consul.errors.ConsulProtocolError` naming the offending field).

Consul 1.0.8's recorded answers are the reference (the emulator's golden tests): ``Meta``,
``Tags`` and ``TaggedAddresses`` may be ``null``; catalog-registered nodes have ``"ID": ""``; a
service without its own ``Address`` means "use the node's address".

Two kinds of bad answer, two rules:

* **A wrong shape** (a field of the wrong JSON type, a missing required key, an object where an
  array belongs) anywhere in an answer: the answer is not Consul's API (a proxy's error page, a
  broken or hostile agent). Consul's Go structs cannot produce it, so none of it is trusted: the
  whole answer is refused with :class:`~mcresolve.consul.errors.ConsulProtocolError`.
* **Well-typed values no client can connect to** (a port outside 1..65535, an empty address, an
  address with spaces or control characters): Consul's catalog stores what it is given
  (registering ``"Port": 70000`` succeeds), so one misregistered instance is an ordinary event.
  :func:`convert_entries` rejects such instances one by one and reports them
  (:class:`~mcresolve.endpoint.Converted`), so they never hide the healthy others.
"""

from __future__ import annotations

import enum
import operator
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, Literal, TypeVar, cast, overload

from mcresolve.consul.errors import ConsulProtocolError
from mcresolve.endpoint import Converted, Endpoint, Rejected, endpoint_problem, shorten

T_co = TypeVar("T_co", covariant=True)

_EMPTY: Mapping[str, str] = MappingProxyType({})


def _empty() -> Mapping[str, str]:
    return _EMPTY


class Consistency(enum.Enum):
    """Consul's read consistency modes (query parameter sent, if any)."""

    #: The leader answers, without an extra round to confirm leadership (Consul's default).
    DEFAULT = ""
    #: Any server answers, possibly stale (``X-Consul-Lastcontact`` tells how stale); keeps
    #: working without a leader; spreads load over the servers.
    STALE = "stale"
    #: The leader confirms its leadership first (slowest, strongly consistent).
    CONSISTENT = "consistent"
    #: The agent's cache answers (Consul >= 1.2; ``X-Cache``/``Age`` headers); blocking still works.
    CACHED = "cached"


class CheckStatus(enum.StrEnum):
    """A health check's status."""

    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"
    MAINTENANCE = "maintenance"


# --- strict field access -------------------------------------------------------------------


def expect_mapping(value: object, what: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else a :class:`ConsulProtocolError` naming ``what``."""
    if not isinstance(value, Mapping):
        raise ConsulProtocolError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def expect_list(value: object, what: str) -> Sequence[Any]:
    """``value`` if it is a JSON array, else a :class:`ConsulProtocolError` naming ``what``."""
    if not isinstance(value, list):
        raise ConsulProtocolError(f"{what}: expected a JSON array, got {type(value).__name__}")
    return value


def _shared(value: str) -> str:
    """``value``, interned: equal strings of many entries (datacenters, tags, meta keys, check
    names, statuses) are one object (an answer decoded entry by entry shares nothing by itself;
    interned strings are freed with their last user)."""
    return sys.intern(value) if type(value) is str else value


def _str(obj: Mapping[str, Any], key: str, what: str, *, default: str | None = None) -> str:
    value = obj.get(key, default)
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise ConsulProtocolError(f"{what}.{key}: expected a string, got {type(value).__name__}")
    return _shared(value)


def _int(obj: Mapping[str, Any], key: str, what: str, *, default: int | None = None) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConsulProtocolError(f"{what}.{key}: expected an integer, got {type(value).__name__}")
    return value


def _str_tuple(obj: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    items = expect_list(value, f"{what}.{key}")
    if not all(isinstance(v, str) for v in items):
        raise ConsulProtocolError(f"{what}.{key}: expected an array of strings")
    return tuple(map(_shared, items))


def _str_map(obj: Mapping[str, Any], key: str, what: str) -> Mapping[str, str]:
    value = obj.get(key)
    if value is None:
        return _EMPTY
    mapping = expect_mapping(value, f"{what}.{key}")
    if not all(isinstance(v, str) for v in mapping.values()):
        raise ConsulProtocolError(f"{what}.{key}: expected an object of strings")
    return MappingProxyType({_shared(k): _shared(v) for k, v in mapping.items()})


@dataclass(frozen=True, slots=True)
class ServiceAddress:
    """One entry of a service's ``TaggedAddresses`` (Consul 1.x: ``{"Address", "Port"}``)."""

    address: str = ""
    port: int = 0


def _service_addresses(obj: Mapping[str, Any], key: str, what: str) -> Mapping[str, ServiceAddress]:
    """A service's ``TaggedAddresses``: ``{"lan_ipv4": {"Address": ..., "Port": ...}, ...}``.
    The JSON *types* are checked here (anything else is not Consul's answer); whether an address
    or port is usable is decided per instance when it is chosen."""
    value = obj.get(key)
    if value is None:
        return _EMPTY_ADDRESSES
    mapping = expect_mapping(value, f"{what}.{key}")
    parsed: dict[str, ServiceAddress] = {}
    for name, item in mapping.items():
        where = f"{what}.{key}.{name}"
        entry = expect_mapping(item, where)
        parsed[name] = ServiceAddress(
            _str(entry, "Address", where, default=""), _int(entry, "Port", where, default=0)
        )
    return MappingProxyType(parsed)


_EMPTY_ADDRESSES: Mapping[str, ServiceAddress] = MappingProxyType({})


# --- response metadata ---------------------------------------------------------------------


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConsulProtocolError(f"header {name}: expected an integer, got {raw!r}") from None
    if value < 0:
        raise ConsulProtocolError(f"header {name}: expected a non-negative integer, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class QueryMeta:
    """What Consul's response headers say about an answer.

    Attributes:
        index: ``X-Consul-Index`` (the raft index blocking queries wait on); ``None`` when absent.
        known_leader: ``X-Consul-Knownleader``; ``None`` when absent.
        last_contact_ms: ``X-Consul-Lastcontact``, milliseconds since the answering server heard
            from the leader (0 on the leader); ``None`` when absent.
        effective_consistency: ``X-Consul-Effective-Consistency`` (``leader``, ``stale``,
            ``consistent``); ``None`` when absent (Consul < 1.0.? and agent endpoints).
        cache_hit: ``X-Cache: HIT``/``MISS`` with ``?cached``; ``None`` otherwise.
        cache_age: ``Age`` seconds of a cached answer; ``None`` otherwise.
        address: the base URL of the agent that answered.
        elapsed: seconds from sending the request to the complete answer.
    """

    index: int | None = None
    known_leader: bool | None = None
    last_contact_ms: int | None = None
    effective_consistency: str | None = None
    cache_hit: bool | None = None
    cache_age: int | None = None
    address: str = ""
    elapsed: float = 0.0

    @classmethod
    def from_headers(
        cls, headers: Mapping[str, str], *, address: str = "", elapsed: float = 0.0
    ) -> QueryMeta:
        """Parse the ``X-Consul-*`` (and cache) headers; ``headers`` must be case-insensitive."""
        leader = headers.get("X-Consul-KnownLeader")
        cache = headers.get("X-Cache")
        return cls(
            index=_header_int(headers, "X-Consul-Index"),
            known_leader=None if leader is None else leader.lower() == "true",
            last_contact_ms=_header_int(headers, "X-Consul-LastContact"),
            effective_consistency=headers.get("X-Consul-Effective-Consistency"),
            cache_hit=None if cache is None else cache.upper() == "HIT",
            cache_age=_header_int(headers, "Age"),
            address=address,
            elapsed=elapsed,
        )


@dataclass(frozen=True, slots=True)
class Indexed(Generic[T_co]):
    """A parsed answer with its :class:`QueryMeta`."""

    value: T_co
    meta: QueryMeta


# --- records -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A catalog node (the ``Node`` object of a health entry, or an element of
    ``/v1/catalog/nodes``)."""

    node: str
    address: str
    datacenter: str = ""
    id: str = ""
    tagged_addresses: Mapping[str, str] = field(default_factory=_empty, compare=False)
    meta: Mapping[str, str] = field(default_factory=_empty)

    @classmethod
    def from_json(cls, value: object, what: str = "Node") -> NodeInfo:
        """Parse Consul's node JSON object."""
        obj = expect_mapping(value, what)
        return cls(
            node=_str(obj, "Node", what),
            address=_str(obj, "Address", what),
            datacenter=_str(obj, "Datacenter", what, default=""),
            id=_str(obj, "ID", what, default=""),
            tagged_addresses=_str_map(obj, "TaggedAddresses", what),
            meta=_str_map(obj, "Meta", what),
        )


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """A service instance (the ``Service`` object of a health entry)."""

    id: str
    service: str
    port: int
    address: str = ""
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=_empty)
    tagged_addresses: Mapping[str, ServiceAddress] = field(
        default_factory=lambda: _EMPTY_ADDRESSES, compare=False
    )

    @classmethod
    def from_json(cls, value: object, what: str = "Service") -> ServiceInfo:
        """Parse Consul's service JSON object (``TaggedAddresses`` objects: Consul 1.x)."""
        obj = expect_mapping(value, what)
        return cls(
            id=_str(obj, "ID", what),
            service=_str(obj, "Service", what),
            port=_int(obj, "Port", what, default=0),
            address=_str(obj, "Address", what, default=""),
            tags=_str_tuple(obj, "Tags", what),
            meta=_str_map(obj, "Meta", what),
            tagged_addresses=_service_addresses(obj, "TaggedAddresses", what),
        )


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One check of a health entry (node-level checks have an empty ``service_id``)."""

    check_id: str
    status: str
    node: str = ""
    name: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""

    @classmethod
    def from_json(cls, value: object, what: str = "Check") -> HealthCheck:
        """Parse Consul's check JSON object."""
        obj = expect_mapping(value, what)
        return cls(
            check_id=_str(obj, "CheckID", what),
            status=_str(obj, "Status", what),
            node=_str(obj, "Node", what, default=""),
            name=_str(obj, "Name", what, default=""),
            output=_str(obj, "Output", what, default=""),
            service_id=_str(obj, "ServiceID", what, default=""),
            service_name=_str(obj, "ServiceName", what, default=""),
        )


_STATUS_RANK = {
    CheckStatus.PASSING.value: 0,
    CheckStatus.WARNING.value: 1,
    CheckStatus.CRITICAL.value: 2,
    CheckStatus.MAINTENANCE.value: 3,
}


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """One element of ``/v1/health/service/<name>`` (or of a prepared query's ``Nodes``)."""

    node: NodeInfo
    service: ServiceInfo
    checks: tuple[HealthCheck, ...] = ()

    @classmethod
    def from_json(cls, value: object, what: str = "entry") -> ServiceEntry:
        """Parse ``{"Node": ..., "Service": ..., "Checks": [...]}``."""
        obj = expect_mapping(value, what)
        checks = obj.get("Checks")
        check_list = () if checks is None else expect_list(checks, f"{what}.Checks")
        return cls(
            node=NodeInfo.from_json(obj.get("Node"), f"{what}.Node"),
            service=ServiceInfo.from_json(obj.get("Service"), f"{what}.Service"),
            checks=tuple(
                HealthCheck.from_json(c, f"{what}.Checks[{i}]") for i, c in enumerate(check_list)
            ),
        )

    @property
    def status(self) -> str:
        """The aggregated status: the worst of every check (``passing`` when there are none);
        an unknown status counts as ``critical``."""
        worst = "passing"
        for check in self.checks:
            rank = _STATUS_RANK.get(check.status, 2)
            if rank > _STATUS_RANK[worst]:
                worst = check.status if check.status in _STATUS_RANK else "critical"
        return worst

    @property
    def address(self) -> str:
        """Where to connect: the service's own ``Address``, else the node's (Consul's rule)."""
        return self.service.address or self.node.address

    def to_endpoint(
        self, datacenter: str = "", port: int | None = None, address: str | None = None
    ) -> Endpoint:
        """The :class:`~mcresolve.endpoint.Endpoint` for this instance. ``datacenter`` is used when
        the node object carries none, ``port`` instead of the service's, ``address`` instead of
        :attr:`address` (a WAN address, :func:`choose_address`). Raises
        :class:`~mcresolve.endpoint.InvalidEndpoint` (a ``ValueError``) for an address or port
        that cannot be connected to (:func:`convert_entries` never raises)."""
        return Endpoint(
            address=self.address if address is None else address,
            port=self.service.port if port is None else port,
            node=self.node.node,
            datacenter=self.node.datacenter or datacenter,
            service_id=self.service.id,
            tags=self.service.tags,
            meta=self.service.meta,
        )


def parse_entries(value: object, what: str = "health entries") -> tuple[ServiceEntry, ...]:
    """Parse a JSON array of health entries."""
    items = expect_list(value, what)
    return tuple(ServiceEntry.from_json(v, f"{what}[{i}]") for i, v in enumerate(items))


#: How an answer's array begins, how its elements are joined, how each element begins and how
#: the array ends, for the three encodings of a health answer met in practice: Consul's
#: (Go's ``encoding/json``: compact, fields in struct order, so every entry begins with
#: ``{"Node":{``), Consul's ``?pretty`` one (``json.MarshalIndent`` with four spaces, also the
#: emulator's) and Python's ``json`` module with its default separators. Cutting an answer at
#: these joins gives one piece per entry; ``head + piece + b"}"`` is the entry again.
_ENTRY_LAYOUTS: tuple[tuple[bytes, bytes, bytes, bytes], ...] = (
    (b'[{"Node":{', b'},{"Node":{', b'{"Node":{', b"}]"),
    (
        b'[\n    {\n        "Node": {',
        b'\n    },\n    {\n        "Node": {',
        b'{\n        "Node": {',
        b"\n    }\n]",
    ),
    (b'[{"Node": {', b'}, {"Node": {', b'{"Node": {', b"}]"),
)


def split_entries(body: bytes) -> tuple[list[bytes], bytes] | None:
    """``body`` (a JSON array of health entries as Consul encodes them) cut into one piece per
    entry without decoding anything, and the bytes that make a piece an entry again
    (``head + piece + b"}"``); ``None`` when ``body`` is not laid out that way (another
    encoding, an empty array: decode it whole).

    Pure and total. The cut is a guess that a hostile or unusual answer can defeat (the join
    may occur inside an entry); :func:`decode_entries` never trusts it: a piece is used only once
    ``head + piece + b"}"`` decoded as a JSON value on its own, and an array whose every
    element is a valid JSON value *is* the array of those values, wherever the cuts were."""
    body = body.strip()
    for opening, join, head, closing in _ENTRY_LAYOUTS:
        if body.startswith(opening) and body.endswith(closing):
            pieces = body.split(join)
            pieces[0] = pieces[0][len(opening) :]
            pieces[-1] = pieces[-1][: len(pieces[-1]) - len(closing)]
            return pieces, head
    return None


_Conversions = dict[int, tuple["ServiceEntry", Endpoint | Rejected]]


class EntryMemo:
    """What the last health answer decoded with it holds: each entry by its exact bytes, and
    each entry's conversion into an endpoint (or rejection).

    :func:`decode_entries` and :meth:`HealthAnswer.decode` reuse what an equal piece of the
    previous answer gave, so an answer in which one instance changed costs one entry's
    decoding, parsing and conversion, not all of them, and every unchanged instance keeps the
    very same :class:`ServiceEntry` and :class:`~mcresolve.endpoint.Endpoint` objects (which
    makes comparing two answers a matter of identities). Keyed by content (the bytes, and the
    entry object with the conversion's parameters), never by Consul's ``ModifyIndex``: a
    change that leaves the indexes alone (an agent restored from a snapshot, a proxy, a bug)
    is still seen. Only the last answer's pieces are kept. Sharing one memo between watches is
    correct (it is content-addressed), only less effective.
    """

    __slots__ = ("_converted", "_entries")

    def __init__(self) -> None:
        self._entries: dict[bytes, ServiceEntry] = {}
        #: The conversion's parameters and, by entry id, each entry with what it gave (one
        #: attribute, replaced whole: a memo shared across threads never mixes parameters).
        self._converted: tuple[tuple[object, ...], _Conversions] = ((), {})

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<EntryMemo of {len(self._entries)} entries>"

    def clear(self) -> None:
        """Forget everything (the next answer is decoded in full)."""
        self._entries = {}
        self._converted = ((), {})


def decode_entries(
    body: bytes,
    decode: Callable[[bytes], Any],
    what: str = "health entries",
    memo: EntryMemo | None = None,
) -> tuple[ServiceEntry, ...]:
    """The health entries of an answer's ``body``, as ``parse_entries(decode(body), what)``
    gives them, with the same errors for a body that is not an array of entries.

    With a ``memo``, the body is cut into one piece per entry (:func:`split_entries`) and only
    the pieces the memo has not seen are decoded and parsed; the others are the memo's
    :class:`ServiceEntry` objects. ``decode`` turns bytes into a JSON value (strict, raising
    for anything else); when a piece does not decode on its own, the cut was wrong and the
    whole body is decoded instead. The memo then holds this answer's pieces."""
    split = None if memo is None else split_entries(body)
    if memo is None or split is None:
        entries = parse_entries(decode(body), what)
        if memo is not None:
            memo._entries = {}
        return entries
    pieces, head = split
    found: list[ServiceEntry | None] = list(map(memo._entries.get, pieces))
    fresh: dict[bytes, ServiceEntry] = {}
    for position in [i for i, entry in enumerate(found) if entry is None]:
        piece = pieces[position]
        entry = fresh.get(piece)
        if entry is None:
            try:
                value = decode(head + piece + b"}")
            except Exception:
                memo._entries = {}
                return parse_entries(decode(body), what)
            entry = fresh[piece] = ServiceEntry.from_json(value, f"{what}[{position}]")
        found[position] = entry
    entries = cast("tuple[ServiceEntry, ...]", tuple(found))
    memo._entries = dict(zip(pieces, entries, strict=True))
    return entries


_SECOND = operator.itemgetter(1)

#: Which address of an instance to connect to: ``lan`` (``Service.Address``, else
#: ``Node.Address``: what Consul 1.0 gives and the default), ``wan`` (the WAN tagged address when
#: there is one), ``auto`` (WAN for instances of another datacenter than the agent's, as Consul's
#: ``translate_wan_addrs`` does for its DNS and prepared-query answers).
AddressMode = Literal["lan", "wan", "auto"]
ADDRESS_MODES: tuple[AddressMode, ...] = ("lan", "wan", "auto")

#: Tagged-address names of a WAN address, in the order tried (agent/structs ``TaggedAddressWAN``,
#: ``TaggedAddressWANIPv4``, ``TaggedAddressWANIPv6``).
_WAN_KEYS = ("wan", "wan_ipv4", "wan_ipv6")


def choose_address(
    entry: ServiceEntry,
    mode: AddressMode = "lan",
    local_datacenter: str | None = None,
    datacenter: str = "",
) -> tuple[str, int]:
    """The ``(address, port)`` to connect to for ``entry`` (pure).

    ``lan``: :attr:`ServiceEntry.address` and the service port. ``wan`` (and ``auto`` for an
    instance whose datacenter, the node's else ``datacenter``, is known and differs from
    ``local_datacenter``): the service's WAN tagged address (its port when non-zero), else, for a
    service without an address of its own, the node's WAN tagged address; else the LAN one, as
    Consul's address translation (agent ``TranslateServiceAddress``) does. Usability is checked
    by the caller, once, on the address chosen.
    """
    lan = (entry.address, entry.service.port)
    if mode == "lan":
        return lan
    if mode == "auto":
        where = entry.node.datacenter or datacenter
        if not local_datacenter or not where or where == local_datacenter:
            return lan
    for key in _WAN_KEYS:
        tagged = entry.service.tagged_addresses.get(key)
        if tagged is not None and tagged.address:
            return tagged.address, tagged.port or entry.service.port
    if not entry.service.address:
        for key in _WAN_KEYS:
            node_wan = entry.node.tagged_addresses.get(key)
            if node_wan:
                return node_wan, entry.service.port
    return lan


def _entry_endpoint(
    entry: ServiceEntry,
    datacenter: str,
    default_port: int | None,
    what: str,
    mode: AddressMode = "lan",
    local_datacenter: str | None = None,
) -> Endpoint | Rejected:
    address, port = choose_address(entry, mode, local_datacenter, datacenter)
    if port == 0 and default_port is not None:
        port = default_port  # registered without a port: the target's port= option
    problem = (
        "registered without a port (and no port= option)"
        if port == 0
        else endpoint_problem(address, port)
    )
    if problem is not None:
        # named by node and service ID, not by position: Consul reorders its answers
        who = f"{what} node {shorten(entry.node.node, 40)}"
        return Rejected(f"{who} service {shorten(entry.service.id, 40)}", problem)
    return entry.to_endpoint(datacenter, port, address)


def convert_entries(
    entries: Iterable[ServiceEntry],
    datacenter: str = "",
    default_port: int | None = None,
    what: str = "entry",
    *,
    address: AddressMode = "lan",
    local_datacenter: str | None = None,
) -> Converted:
    """The endpoints of ``entries``, in order, and the instances that cannot be one (see the
    module doc). An instance registered without a port (``Port`` 0) takes ``default_port``;
    without one it is rejected, as is any address or port :func:`~mcresolve.endpoint.
    endpoint_problem` refuses (checked on the address :func:`choose_address` picks for
    ``address``/``local_datacenter``). Pure and total: never raises. ``what`` names the entries
    in the rejections (``Nodes`` entry, ``entry``)."""
    return Converted.of(
        _entry_endpoint(entry, datacenter, default_port, what, address, local_datacenter)
        for entry in entries
    )


def to_endpoints(entries: Iterable[ServiceEntry], datacenter: str = "") -> tuple[Endpoint, ...]:
    """The endpoints of ``entries`` (:func:`convert_entries` without the rejections)."""
    return convert_entries(entries, datacenter).endpoints


@dataclass(frozen=True, slots=True)
class HealthAnswer(Sequence[ServiceEntry]):
    """One ``/v1/health/service`` answer: its entries (it is a sequence of them, like the tuple
    it extends) and their conversion into endpoints, made when the answer was decoded.

    Attributes:
        entries: the instances as Consul listed them.
        converted: their endpoints and the instances rejected (see :func:`convert_entries`).
    """

    entries: tuple[ServiceEntry, ...]
    converted: Converted = field(default_factory=Converted)

    @classmethod
    def decode(
        cls,
        entries: Iterable[ServiceEntry],
        datacenter: str = "",
        default_port: int | None = None,
        *,
        address: AddressMode = "lan",
        local_datacenter: str | None = None,
        memo: EntryMemo | None = None,
    ) -> HealthAnswer:
        """Convert ``entries`` (see :func:`convert_entries`). With a ``memo``, an entry object
        converted with the same parameters last time (see :func:`decode_entries`) keeps its
        endpoint (or rejection) object; the memo then holds this answer's conversions."""
        items = tuple(entries)
        if memo is None:
            converted = convert_entries(
                items,
                datacenter,
                default_port,
                address=address,
                local_datacenter=local_datacenter,
            )
            return cls(items, converted)
        conversion = (datacenter, default_port, address, local_datacenter)
        done_with, known = memo._converted
        if done_with != conversion:
            known = {}
        idents = tuple(map(id, items))
        pairs: list[tuple[ServiceEntry, Endpoint | Rejected] | None]
        pairs = list(map(known.get, idents))
        for position in [i for i, pair in enumerate(pairs) if pair is None]:
            entry = items[position]
            item = _entry_endpoint(
                entry, datacenter, default_port, "entry", address, local_datacenter
            )
            pairs[position] = (entry, item)
        done = cast("list[tuple[ServiceEntry, Endpoint | Rejected]]", pairs)
        # The memo holds each entry it names, so an id it knows is that very entry's.
        memo._converted = (conversion, dict(zip(idents, done, strict=True)))
        return cls(items, Converted.of(map(_SECOND, done)))

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The usable endpoints."""
        return self.converted.endpoints

    @property
    def rejected(self) -> tuple[Rejected, ...]:
        """The instances that could not become endpoints."""
        return self.converted.rejected

    def __len__(self) -> int:
        return len(self.entries)

    @overload
    def __getitem__(self, index: int) -> ServiceEntry: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[ServiceEntry]: ...

    def __getitem__(self, index: int | slice) -> ServiceEntry | Sequence[ServiceEntry]:
        return self.entries[index]

    def __iter__(self) -> Iterator[ServiceEntry]:
        return iter(self.entries)


def has_tags(tags: Iterable[str], wanted: Iterable[str]) -> bool:
    """Whether ``tags`` holds every tag of ``wanted``, case-insensitively (Consul's matching)."""
    have = {t.lower() for t in tags}
    return all(w.lower() in have for w in wanted)


@dataclass(frozen=True, slots=True)
class CatalogService:
    """One element of ``/v1/catalog/service/<name>`` (flat: node fields plus ``Service*``)."""

    node: str
    address: str
    service_id: str
    service_name: str
    service_port: int
    datacenter: str = ""
    service_address: str = ""
    service_tags: tuple[str, ...] = ()
    service_meta: Mapping[str, str] = field(default_factory=_empty)
    node_meta: Mapping[str, str] = field(default_factory=_empty)

    @classmethod
    def from_json(cls, value: object, what: str = "catalog service") -> CatalogService:
        """Parse one catalog service record."""
        obj = expect_mapping(value, what)
        return cls(
            node=_str(obj, "Node", what),
            address=_str(obj, "Address", what),
            service_id=_str(obj, "ServiceID", what),
            service_name=_str(obj, "ServiceName", what),
            service_port=_int(obj, "ServicePort", what, default=0),
            datacenter=_str(obj, "Datacenter", what, default=""),
            service_address=_str(obj, "ServiceAddress", what, default=""),
            service_tags=_str_tuple(obj, "ServiceTags", what),
            service_meta=_str_map(obj, "ServiceMeta", what),
            node_meta=_str_map(obj, "NodeMeta", what),
        )

    def to_endpoint(self, datacenter: str = "") -> Endpoint:
        """The endpoint (service address, else node address). Raises ``ValueError`` without a
        port."""
        return Endpoint(
            address=self.service_address or self.address,
            port=self.service_port,
            node=self.node,
            datacenter=self.datacenter or datacenter,
            service_id=self.service_id,
            tags=self.service_tags,
            meta=self.service_meta,
        )


@dataclass(frozen=True, slots=True)
class PreparedQueryResult:
    """The answer of ``/v1/query/<name or id>/execute``.

    Attributes:
        service: the service the query looked up.
        entries: the instances, in Consul's (shuffled or ``near``-sorted) order.
        datacenter: the datacenter that answered (differs from the local one after failover).
        failovers: how many remote datacenters were tried.
        dns_ttl: the query's DNS TTL setting (``""`` when unset).
        meta: header metadata (``index`` is always 0: prepared queries cannot block).
    """

    service: str
    entries: tuple[ServiceEntry, ...]
    datacenter: str
    failovers: int
    dns_ttl: str
    meta: QueryMeta

    @classmethod
    def from_json(cls, value: object, meta: QueryMeta) -> PreparedQueryResult:
        """Parse the execute response."""
        what = "prepared query result"
        obj = expect_mapping(value, what)
        dns = obj.get("DNS")
        ttl = (
            "" if dns is None else _str(expect_mapping(dns, f"{what}.DNS"), "TTL", what, default="")
        )
        nodes = obj.get("Nodes")
        return cls(
            service=_str(obj, "Service", what),
            entries=() if nodes is None else parse_entries(nodes, f"{what}.Nodes"),
            datacenter=_str(obj, "Datacenter", what),
            failovers=_int(obj, "Failovers", what, default=0),
            dns_ttl=ttl,
            meta=meta,
        )

    def endpoints(self) -> tuple[Endpoint, ...]:
        """The endpoints, each carrying the datacenter that answered."""
        return self.convert().endpoints

    def convert(
        self,
        default_port: int | None = None,
        *,
        address: AddressMode = "lan",
        local_datacenter: str | None = None,
    ) -> Converted:
        """The endpoints (each carrying the datacenter that answered) and the rejected
        instances (see :func:`convert_entries`); ``address``/``local_datacenter`` choose each
        instance's LAN or WAN address as for a health answer (:func:`choose_address`: an
        instance's datacenter is its node's, else the one that answered)."""
        return convert_entries(
            self.entries,
            self.datacenter,
            default_port,
            "Nodes entry",
            address=address,
            local_datacenter=local_datacenter,
        )
