"""Building and trimming the record sections of Consul DNS answers (pure).

Records are kept as a list of one-record RRsets so that a section can hold the same record
twice, exactly as Consul 1.0.8 writes it on the wire (an SRV answer whose six instances share
a node repeats that node's A and TXT records in the additional section).

Rules reproduced from the recordings (``07_dns.json``):

* health filter: an instance with any ``critical`` check is left out; ``warning`` is kept;
* SRV: ``1 1 <port> <node>.node.<dc>.<domain>``, one answer per (node, service address, port),
  plus the target's address record and one TXT ``key=value`` per node meta entry (RFC 1464) in
  the additional section;
* A/AAAA/ANY/TXT of a service: one address record per distinct address;
* UDP: without EDNS (or an EDNS payload of at most 512 bytes) at most ``udp_answer_limit`` (3)
  answers; then answers are dropped from the end until the uncompressed message fits
  ``max(512, edns payload)``; each cut rebuilds the additional section to the first record of
  each remaining SRV target (which drops the TXT records);
* TCP: every answer, unless the message would exceed 64 KiB.

Modern agents (:func:`trim_udp` with ``modern=True``) trim UDP answers as today's
``trimUDPResponse`` does (hashicorp/consul agent/dns/response_generator.go; the same code in
agent/dns.go of the 1.1x releases): the count cap (``udp_answer_limit``, still 3 by default beside
``a_record_limit = 0``: agent/config/default.go) applies to 512-byte answers only and then sizes
them uncompressed; otherwise the *compressed* size counts; at least one answer is kept, and 8
bytes are kept free for the UDP header. Fewer answers out than in means "trimmed": Consul sets
the TC bit for that only with ``dns_config.enable_truncate`` (default false).
"""

from __future__ import annotations

import io
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

from .contracts import HealthEntry

#: Consul's default ``dns_config.udp_answer_limit``.
DEFAULT_UDP_ANSWER_LIMIT = 3
#: Consul's hard ceiling for ``udp_answer_limit``.
MAX_UDP_ANSWER_LIMIT = 8
#: Plain DNS over UDP (RFC 1035).
DEFAULT_MAX_UDP_SIZE = 512
#: Largest DNS message Consul writes over TCP (64 KiB minus the length prefix).
MAX_TCP_SIZE = 65533

_IN = dns.rdataclass.IN
_HEADER_LENGTH = 12
_LEADING_SPACES = re.compile(r"^ +")
_TRAILING_SPACES = re.compile(r" +$")

Section = list[dns.rrset.RRset]


def rdata(rdtype: dns.rdatatype.RdataType, text: str) -> dns.rdata.Rdata:
    """An IN-class rdata from its presentation form."""
    return dns.rdata.from_text(_IN, rdtype, text)


def record(owner: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata) -> dns.rrset.RRset:
    """A one-record RRset."""
    rrset = dns.rrset.RRset(owner, rdata.rdclass, rdata.rdtype)
    rrset.add(rdata, ttl)
    return rrset


def is_healthy(entry: HealthEntry) -> bool:
    """Consul's DNS health filter (``only_passing`` off): no check may be ``critical``."""
    return all(check.get("Status") != "critical" for check in entry.get("Checks") or [])


def healthy_entries(entries: Iterable[HealthEntry]) -> list[HealthEntry]:
    """The entries that DNS may return, in their original order."""
    return [entry for entry in entries if is_healthy(entry)]


def has_tag(entry: HealthEntry, tag: str) -> bool:
    """Whether the instance carries ``tag`` (compared case-insensitively)."""
    wanted = tag.lower()
    return any(str(t).lower() == wanted for t in entry["Service"].get("Tags") or [])


def entry_address(entry: HealthEntry) -> str:
    """The service address if set, otherwise the node address."""
    service_address = entry["Service"].get("Address") or ""
    return str(service_address or entry["Node"].get("Address") or "")


def soa_record(domain: dns.name.Name, serial: int) -> dns.rrset.RRset:
    """``<domain> 0 IN SOA ns.<domain> hostmaster.<domain> <serial> 3600 600 86400 0``."""
    origin = domain.to_text()
    soa = rdata(
        dns.rdatatype.SOA,
        f"ns.{origin} hostmaster.{origin} {serial & 0xFFFFFFFF} 3600 600 86400 0",
    )
    return record(domain, 0, soa)


def meta_txt(key: str, value: str) -> str:
    """A node meta pair as Consul writes it in TXT: RFC 1464 ``key=value``, except that a key
    starting with ``rfc1035-`` gives the bare value."""
    if key.lower().startswith("rfc1035-"):
        return value
    key = key.replace("`", "``").replace("=", "`=")
    key = _LEADING_SPACES.sub(lambda match: "` " * len(match.group()), key)
    key = _TRAILING_SPACES.sub(lambda match: "` " * len(match.group()), key)
    return key + "=" + value.replace("`", "``")


def node_records(
    node: Mapping[str, Any] | None,
    address: str,
    owner: dns.name.Name,
    qtype: dns.rdatatype.RdataType,
    ttl: int,
) -> Section:
    """Consul's ``formatNodeRecord``: the address record(s) of ``address`` under ``owner`` for
    question type ``qtype`` (A, AAAA, or a CNAME for a host name), then one TXT per node meta
    entry when ``qtype`` is ANY or TXT."""
    records: Section = []
    any_type = qtype == dns.rdatatype.ANY
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    if isinstance(ip, ipaddress.IPv4Address):
        if any_type or qtype == dns.rdatatype.A:
            records.append(record(owner, ttl, rdata(dns.rdatatype.A, str(ip))))
    elif isinstance(ip, ipaddress.IPv6Address):
        if any_type or qtype == dns.rdatatype.AAAA:
            records.append(record(owner, ttl, rdata(dns.rdatatype.AAAA, str(ip))))
    elif address and qtype in (
        dns.rdatatype.ANY,
        dns.rdatatype.CNAME,
        dns.rdatatype.A,
        dns.rdatatype.AAAA,
        dns.rdatatype.TXT,
    ):
        target = dns.name.from_text(address)
        records.append(record(owner, ttl, rdata(dns.rdatatype.CNAME, target.to_text())))
    if node is not None and (any_type or qtype == dns.rdatatype.TXT):
        for key, value in (node.get("Meta") or {}).items():
            txt = dns.rdtypes.ANY.TXT.TXT(
                _IN, dns.rdatatype.TXT, [meta_txt(str(key), str(value)).encode()]
            )
            records.append(record(owner, ttl, txt))
    return records


def srv_target(node_name: str, datacenter: str, domain: dns.name.Name) -> dns.name.Name:
    """``<node>.node.<dc>.<domain>``."""
    return dns.name.from_text(f"{node_name}.node.{datacenter}", origin=domain)


def addr_target(address: str, datacenter: str, domain: dns.name.Name) -> dns.name.Name | None:
    """``<hex>.addr.<dc>.<domain>`` for an IP (``None`` for anything else): the SRV target
    modern agents give an instance whose service address differs from its node's
    (agent/dns.go ``encodeIPAsFqdn``; docs services/discovery/dns-static-lookups.mdx)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return dns.name.from_text(f"{ip.packed.hex()}.addr.{datacenter}", origin=domain)


def service_srv_records(
    owner: dns.name.Name,
    entries: Sequence[HealthEntry],
    datacenter: str,
    domain: dns.name.Name,
    ttl: int,
    *,
    addr_targets: bool = False,
) -> tuple[Section, Section]:
    """Answer and additional sections for an SRV question, in the order of ``entries``.

    Duplicate (node, service address, port) instances give one answer. Each answer adds the
    target's records (address, then node meta TXT) to the additional section, repeated per
    answer as Consul does. With ``addr_targets`` (modern agents) an instance whose service
    address is an IP other than its node's gets the ``<hex>.addr.<dc>`` target with just the
    address record (*inferred*: no node meta TXT for it)."""
    answer: Section = []
    extra: Section = []
    handled: set[tuple[str, str, int]] = set()
    for entry in entries:
        node = entry["Node"]
        service = entry["Service"]
        port = int(service.get("Port") or 0)
        key = (str(node["Node"]), str(service.get("Address") or ""), port)
        if key in handled:
            continue
        handled.add(key)
        service_address = str(service.get("Address") or "")
        by_addr = None
        if addr_targets and service_address and service_address != node.get("Address"):
            by_addr = addr_target(service_address, datacenter, domain)
        target = by_addr or srv_target(str(node["Node"]), datacenter, domain)
        srv = rdata(dns.rdatatype.SRV, f"1 1 {port & 0xFFFF} {target.to_text()}")
        answer.append(record(owner, ttl, srv))
        meta_node = None if by_addr is not None else node
        extra.extend(node_records(meta_node, entry_address(entry), target, dns.rdatatype.ANY, ttl))
    return answer, extra


def service_address_records(
    owner: dns.name.Name,
    entries: Sequence[HealthEntry],
    qtype: dns.rdatatype.RdataType,
    ttl: int,
) -> Section:
    """Answer section for an A/AAAA/ANY/TXT question about a service: one address record per
    distinct address, in the order of ``entries``.

    Node meta TXT records are not added to service answers: the recordings show a TXT (and an
    ANY) question for a service on agent nodes answered without them."""
    answer: Section = []
    handled: set[str] = set()
    for entry in entries:
        address = entry_address(entry)
        if owner.to_text().lower() == address.rstrip(".").lower() + ".":
            address = str(entry["Node"].get("Address") or "")
        if address in handled:
            continue
        handled.add(address)
        answer.extend(node_records(None, address, owner, qtype, ttl))
    return answer


def _rrset_length(rrset: dns.rrset.RRset) -> int:
    buffer = io.BytesIO()
    rrset.to_wire(buffer, None, None)
    return len(buffer.getvalue())


def uncompressed_length(question: Iterable[dns.rrset.RRset], *sections: Section) -> int:
    """Length of the message without name compression (Consul sizes answers this way),
    not counting an OPT record."""
    length = _HEADER_LENGTH
    for rrset in question:
        length += len(rrset.name.to_wire() or b"") + 4
    for section in sections:
        length += sum(_rrset_length(rrset) for rrset in section)
    return length


def sync_extra(answer: Section, index: Mapping[str, dns.rrset.RRset]) -> Section:
    """Consul's ``syncExtra``: the first additional record of each SRV target, following
    CNAMEs, in answer order; everything else (TXT, duplicates) is dropped."""
    extra: Section = []
    resolved: set[str] = set()
    for rrset in answer:
        if rrset.rdtype != dns.rdatatype.SRV:
            continue
        target = rrset[0].target.to_text().lower()
        while target not in resolved:
            resolved.add(target)
            found = index.get(target)
            if found is None:
                break
            extra.append(found)
            if found.rdtype != dns.rdatatype.CNAME:
                break
            target = found[0].target.to_text().lower()
    return extra


def _index(extra: Section) -> dict[str, dns.rrset.RRset]:
    index: dict[str, dns.rrset.RRset] = {}
    for rrset in extra:
        index.setdefault(rrset.name.to_text().lower(), rrset)
    return index


def _fit(
    question: Sequence[dns.rrset.RRset],
    answer: Section,
    extra: Section,
    authority: Section,
    max_size: int,
    index: Mapping[str, dns.rrset.RRset],
) -> tuple[Section, Section]:
    """Drop answers from the end until the uncompressed message fits ``max_size``."""
    has_extra = bool(index)
    while answer and uncompressed_length(question, answer, authority, extra) > max_size:
        answer = answer[:-1]
        if has_extra:
            extra = sync_extra(answer, index)
    return answer, extra


def trim_udp(
    question: Sequence[dns.rrset.RRset],
    answer: Section,
    extra: Section,
    authority: Section,
    edns_payload: int | None,
    udp_answer_limit: int = DEFAULT_UDP_ANSWER_LIMIT,
    *,
    modern: bool = False,
) -> tuple[Section, Section]:
    """Consul's ``trimUDPResponse`` (1.0.8's, or today's with ``modern``); returns the new
    answer and additional sections (fewer answers than given: trimmed)."""
    max_size = max(DEFAULT_MAX_UDP_SIZE, edns_payload or 0)
    index = _index(extra)
    max_answers = min(MAX_UDP_ANSWER_LIMIT, udp_answer_limit)
    capped = max_size == DEFAULT_MAX_UDP_SIZE and len(answer) > max_answers
    if capped:
        answer = answer[:max_answers]
        if index:
            extra = sync_extra(answer, index)
    if modern:
        return _fit_modern(question, answer, extra, min(max_size, MAX_UDP_DATAGRAM), index, capped)
    return _fit(question, answer, extra, authority, max_size, index)


#: Today's ceiling on an EDNS payload size (``maxUDPDatagramSize``: 65535 - 68).
MAX_UDP_DATAGRAM = 65535 - 68


def compressed_length(question: Iterable[dns.rrset.RRset], *sections: Section) -> int:
    """Length of the message with name compression (how Consul sizes a modern UDP answer that
    the count cap did not cut), not counting an OPT record."""
    buffer = io.BytesIO(bytes(_HEADER_LENGTH))
    buffer.seek(_HEADER_LENGTH)
    compress: dict[dns.name.Name, int] = {}
    for rrset in question:
        rrset.name.to_wire(buffer, compress, None)
        buffer.write(bytes(4))
    for section in sections:
        for rrset in section:
            rrset.to_wire(buffer, compress, None)
    return len(buffer.getvalue())


def _fit_modern(
    question: Sequence[dns.rrset.RRset],
    answer: Section,
    extra: Section,
    max_size: int,
    index: Mapping[str, dns.rrset.RRset],
    uncompressed: bool,
) -> tuple[Section, Section]:
    """Today's size loop: while more than one answer and the message exceeds ``max_size`` - 8
    (the UDP header), cut (a binary search when more than 100 bytes over, like
    ``dnsBinaryTruncate``, else the last answer), rebuilding the additional section."""
    measure = uncompressed_length if uncompressed else compressed_length

    def length(part: Section) -> int:  # a candidate cut, its additional section rebuilt
        return measure(question, part, sync_extra(part, index) if index else extra)

    while len(answer) > 1 and measure(question, answer, extra) > max_size - 8:
        if measure(question, answer, extra) - max_size > 100:
            start, end = 0, len(answer) + 1
            while end - start > 1:
                median = start + (end - start) // 2
                size = length(answer[:median])
                if size <= max_size:
                    if max_size - size < 10:
                        start = median
                        break
                    start = median
                else:
                    end = median
            answer = answer[:start]
        else:
            answer = answer[:-1]
        if index:
            extra = sync_extra(answer, index)
    return answer, extra


def trim_tcp(
    question: Sequence[dns.rrset.RRset],
    qtype: dns.rdatatype.RdataType,
    answer: Section,
    extra: Section,
    authority: Section,
) -> tuple[Section, Section]:
    """Consul's ``trimTCPResponse``: at most 640 SRV / 2048 other answers and 64 KiB."""
    index = _index(extra)
    truncate_at = 640 if qtype == dns.rdatatype.SRV else 2048
    if len(answer) > truncate_at:
        answer = answer[:truncate_at]
        if index:
            extra = sync_extra(answer, index)
    return _fit(question, answer, extra, authority, MAX_TCP_SIZE, index)
