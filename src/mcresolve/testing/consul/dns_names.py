"""Parsing of Consul DNS names into lookups (pure).

Consul 1.0.8 lower-cases the question name, strips the domain and reads the labels from the
right: the last label is the lookup kind (``service``, ``node``, ``query``, ``addr``) or, once,
a datacenter name followed by the kind. Anything else is an invalid name (NXDOMAIN with SOA).

Recognised forms (``<domain>`` is ``consul`` by default)::

    [<tag>.]<service>.service[.<dc>].<domain>       tag may itself contain dots
    _<service>._<tag>.service[.<dc>].<domain>       RFC 2782; ``_tcp`` means any tag
    _<service>._<tag>[.<dc>].<domain>               SRV questions only ("service" implied)
    <node>.node[.<dc>].<domain>                     node name may contain dots
    <query>.query[.<dc>].<domain>                   prepared query name or ID
    <8 or 32 hex digits>.addr[.<dc>].<domain>       IPv4 / IPv6 address
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

_HEX_DIGITS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ServiceLookup:
    """``[tag.]service.service[.dc]``; ``tag`` is empty for "any tag"."""

    service: str
    tag: str
    datacenter: str | None
    #: cluster peer (modern ``<svc>.service.<peer>.peer.<domain>``), ``None`` = local
    peer: str | None = None


@dataclass(frozen=True)
class NodeLookup:
    """``node.node[.dc]``."""

    node: str
    datacenter: str | None


@dataclass(frozen=True)
class QueryLookup:
    """``query.query[.dc]`` (prepared query by name or ID)."""

    query: str
    datacenter: str | None


@dataclass(frozen=True)
class AddrLookup:
    """``<hex>.addr[.dc]``: the address encoded in the name, ``None`` if it does not decode."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None


@dataclass(frozen=True)
class InvalidName:
    """A name inside the domain that Consul does not understand (NXDOMAIN + SOA)."""


Lookup = ServiceLookup | NodeLookup | QueryLookup | AddrLookup | InvalidName


def normalize_domain(domain: str) -> str:
    """The domain as Consul keeps it: lower case, fully qualified (``"consul."``)."""
    domain = domain.lower()
    return domain if domain.endswith(".") else domain + "."


def in_domain(qname: str, domain: str) -> bool:
    """Whether ``qname`` (any case, with or without the final dot) is ``domain`` or below it."""
    name = qname.lower()
    if not name.endswith("."):
        name += "."
    zone = normalize_domain(domain)
    return name == zone or name.endswith("." + zone)


def parse_lookup(qname: str, domain: str, *, srv_question: bool, modern: bool = False) -> Lookup:
    """Classify a question name that lies inside ``domain``.

    ``srv_question`` tells whether the question type is SRV (Consul then accepts RFC 2782 names
    without the ``service`` label). ``modern`` (1.14+) also reads labelled locality pairs from
    the right, ``<value>.dc`` and ``<value>.peer`` (agent/dns.go ``parseLocality``):
    ``web.service.dc2.dc.consul``, ``web.service.east.peer.consul``; a peer is only valid for
    service lookups.
    """
    name = qname.lower()
    if not name.endswith("."):
        name += "."
    zone = normalize_domain(domain)
    rest = name[: -len(zone)] if name.endswith(zone) else name
    labels = [label for label in rest.split(".") if label]
    datacenter: str | None = None
    datacenter_parsed = False
    peer: str | None = None
    while modern and len(labels) >= 3 and labels[-1] in ("dc", "peer"):
        if labels[-1] == "dc":
            if datacenter_parsed:
                return InvalidName()
            datacenter, datacenter_parsed = labels[-2], True
        else:
            if peer is not None:
                return InvalidName()
            peer = labels[-2]
        labels = labels[:-2]
    if peer is not None and (not labels or labels[-1] != "service"):
        return InvalidName()
    while True:
        if not labels:
            return InvalidName()
        if srv_question and labels[-1].startswith("_"):
            labels = [*labels, "service"]
        kind = labels[-1]
        count = len(labels)
        if kind == "service":
            if count == 1:
                return InvalidName()
            if count == 3 and labels[0].startswith("_") and labels[1].startswith("_"):
                tag = labels[1][1:]
                return ServiceLookup(labels[0][1:], "" if tag == "tcp" else tag, datacenter, peer)
            tag = ".".join(labels[:-2]) if count >= 3 else ""
            return ServiceLookup(labels[-2], tag, datacenter, peer)
        if kind == "node":
            if count == 1:
                return InvalidName()
            return NodeLookup(".".join(labels[:-1]), datacenter)
        if kind == "query":
            if count == 1:
                return InvalidName()
            return QueryLookup(".".join(labels[:-1]), datacenter)
        if kind == "addr":
            if count != 2:
                return InvalidName()
            return _parse_addr(labels[0])
        if datacenter_parsed:
            return InvalidName()
        datacenter_parsed = True
        datacenter = kind
        labels = labels[:-1]


def _parse_addr(label: str) -> Lookup:
    size = len(label) // 2
    if size not in (4, 16):
        return AddrLookup(None)
    if len(label) % 2 or not all(char in _HEX_DIGITS for char in label):
        return InvalidName()
    raw = bytes.fromhex(label)
    if size == 4:
        return AddrLookup(ipaddress.IPv4Address(raw))
    return AddrLookup(ipaddress.IPv6Address(raw))
