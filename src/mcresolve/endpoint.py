"""The value every part of mcresolve passes around: one network endpoint of a service.

Also the one rule deciding what an endpoint may be (:func:`endpoint_problem`), and the shape in
which every source reports converting an answer into endpoints (:class:`Converted`, listing the
instances it had to leave out as :class:`Rejected`).
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, cast

from mcresolve.errors import McResolveError

__all__ = [
    "MAX_ADDRESS_LENGTH",
    "Converted",
    "Endpoint",
    "InvalidEndpoint",
    "Rejected",
    "endpoint_problem",
    "shorten",
]

#: The longest address accepted: a DNS name is at most 253 characters (RFC 1035 §2.3.4, as text
#: without the trailing dot); an IPv6 literal with a zone is far shorter.
MAX_ADDRESS_LENGTH: Final = 253

#: A DNS host name (RFC 1123 labels, ``_`` allowed as Consul node names use it), ASCII only:
#: internationalised names must be given in their IDNA (``xn--``) form.
_HOSTNAME_RE: Final = re.compile(
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?"
)
#: Printable ASCII without space: anything else (CR/LF, tabs, NUL, non-ASCII) never belongs in
#: an address and could split a header or a log line.
_PRINTABLE_RE: Final = re.compile(r"[!-~]+")


def shorten(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: safe to put in a log line or an error
    message whatever the value (control characters escaped, huge values cut)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _address_problem(address: object) -> str | None:
    if not isinstance(address, str):
        return f"address must be a string, got {type(address).__name__}"
    if not address:
        return "address is empty"
    if len(address) > MAX_ADDRESS_LENGTH:
        return f"address is {len(address)} characters long (at most {MAX_ADDRESS_LENGTH})"
    if not _PRINTABLE_RE.fullmatch(address):
        return f"address {shorten(address)} holds a space, a control or a non-ASCII character"
    if ":" in address or "%" in address:
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return f"address {shorten(address)} is neither a host name nor an IP address"
        return None
    if _HOSTNAME_RE.fullmatch(address):
        if not address.rstrip(".").rpartition(".")[2].isdigit():
            return None
        try:  # an all-numeric last label is an IPv4 literal or nothing (RFC 1123 §2.1)
            ipaddress.IPv4Address(address)
        except ValueError:
            return f"address {shorten(address)} is not a valid IPv4 address"
        return None
    return f"address {shorten(address)} is neither a host name nor an IP address"


def _port_problem(port: object) -> str | None:
    if isinstance(port, bool) or not isinstance(port, int):
        return f"port must be an integer, got {type(port).__name__}"
    if not 0 < port < 65536:
        if -(10**9) < port < 10**9:
            return f"port {port} outside 1..65535"
        return f"port of {port.bit_length()} bits outside 1..65535"  # no str(): huge ints raise
    return None


def endpoint_problem(address: object, port: object) -> str | None:
    """Why ``(address, port)`` cannot be an :class:`Endpoint`, ``None`` when it can.

    The rule: ``port`` an integer in 1..65535; ``address`` an IP literal (IPv6 without brackets,
    a zone allowed) or a DNS host name (ASCII letters, digits, ``-``, ``_``, dots; labels of at
    most 63 characters; at most :data:`MAX_ADDRESS_LENGTH` characters). Pure and total: any
    value gives an answer, never an exception.
    """
    return _address_problem(address) or _port_problem(port)


class InvalidEndpoint(McResolveError, ValueError):
    """An endpoint was built from an address or port that :func:`endpoint_problem` refuses."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One instance of a service, as a source resolved it.

    Two endpoints are the same connection target when their :attr:`key` (address, port) is equal;
    the other fields describe where it lives (node, datacenter) and what it is (service ID, tags,
    meta). Instances are immutable and hashable (``meta`` is excluded from the hash). Building one
    from an address or port that :func:`endpoint_problem` refuses raises :class:`InvalidEndpoint`.
    """

    address: str
    port: int
    node: str = ""
    datacenter: str = ""
    service_id: str = ""
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    key: Key = field(init=False, repr=False, compare=False, hash=False)
    """The connection identity: ``(address, port)`` (stored: every per-endpoint table of the
    pool is keyed by it, so it is read several times per endpoint per update)."""

    def __post_init__(self) -> None:
        problem = endpoint_problem(self.address, self.port)
        if problem is not None:
            raise InvalidEndpoint(f"invalid endpoint: {problem}")
        if not isinstance(self.meta, MappingProxyType):
            object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))
        object.__setattr__(self, "key", (self.address, self.port))

    @property
    def host_port(self) -> str:
        """``address:port``, with IPv6 addresses in brackets (``[::1]:9000``)."""
        if ":" in self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"

    def to_json(self) -> dict[str, Any]:
        """Every field as a JSON object (``tags`` a list, ``meta`` a plain dict): the form of the
        CLI's ``--json`` output and of last-known-good snapshot files."""
        return {
            "address": self.address,
            "port": self.port,
            "node": self.node,
            "datacenter": self.datacenter,
            "service_id": self.service_id,
            "tags": list(self.tags),
            "meta": dict(self.meta),
        }

    def __str__(self) -> str:
        where = f" {self.datacenter}" if self.datacenter else ""
        return f"{self.host_port}{where}"


@dataclass(frozen=True, slots=True)
class Rejected:
    """One instance of an answer that could not become an endpoint.

    Attributes:
        what: which instance (e.g. ``entry node 'n3' service 'web-3'``, ``SRV 0 n1.``),
            already shortened and escaped for logs.
        reason: why (e.g. ``port 70000 outside 1..65535``).
    """

    what: str
    reason: str

    def __str__(self) -> str:
        return f"{self.what}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Converted:
    """An answer converted into endpoints: the usable ones, in the answer's order (duplicates
    removed), and the instances left out.

    Rejection is per instance: one malformed instance never hides the healthy others. When
    *every* instance was rejected (:attr:`rejected_whole`), the answer as a whole is unusable and
    a source keeps its last good set instead (an answer of nothing but garbage must not empty a
    pool).
    """

    endpoints: tuple[Endpoint, ...] = ()
    rejected: tuple[Rejected, ...] = ()

    @property
    def rejected_whole(self) -> bool:
        """Every instance of a non-empty answer was rejected."""
        return bool(self.rejected) and not self.endpoints

    @classmethod
    def of(cls, items: Iterable[Endpoint | Rejected]) -> Converted:
        """Split ``items`` into endpoints (first occurrence of each kept) and rejections.

        Passes in C over the items when none is rejected and no two share a
        :attr:`Endpoint.key` (equal endpoints share it), as in every answer of a healthy
        registry; Python work per item otherwise."""
        listed = tuple(items)
        kinds = set(map(type, listed))
        if kinds <= {Endpoint}:
            found = cast("tuple[Endpoint, ...]", listed)
            if len(set(map(_KEY, found))) == len(found):
                return cls(found)
        endpoints: dict[Endpoint, None] = {}
        rejected: list[Rejected] = []
        for item in listed:
            if isinstance(item, Endpoint):
                endpoints.setdefault(item, None)
            else:
                rejected.append(item)
        return cls(tuple(endpoints), tuple(rejected))

    def describe(self, limit: int = 3) -> str:
        """The rejections in one line (the first ``limit`` of them)."""
        shown = "; ".join(str(r) for r in self.rejected[:limit])
        more = f"; and {len(self.rejected) - limit} more" if len(self.rejected) > limit else ""
        return shown + more


_KEY = operator.attrgetter("key")

#: An endpoint's connection identity, ``(address, port)`` (:attr:`Endpoint.key`): the one
#: definition every module keys its per-endpoint state by.
Key = tuple[str, int]
