"""Answering one Consul DNS question from a :class:`ClusterView` (no I/O).

:class:`DnsResponder` turns a parsed query message into the response message a Consul 1.0.8
agent of ``datacenter`` would send, reading the emulated catalog through the
:class:`~mcresolve.testing.consul.contracts.ClusterView` seam. Randomness (answer order) and the
clock (SOA serial) are injected so that the logic is deterministic under test.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import re
import time
from collections.abc import Callable
from typing import Any, Literal

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset

from . import dns_records as records
from .contracts import ClusterView, DatacenterUnreachable, EmulatorError, QueryNotFound
from .dns_names import (
    AddrLookup,
    InvalidName,
    Lookup,
    NodeLookup,
    QueryLookup,
    ServiceLookup,
    in_domain,
    normalize_domain,
    parse_lookup,
)
from .durations import GoDurationError, parse_go_duration

_log = logging.getLogger(__name__)

Transport = Literal["udp", "tcp"]

_NODE_QTYPES = frozenset(
    {dns.rdatatype.ANY, dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.TXT}
)


def query_dns_ttl(ttl: str) -> int:
    """The TTL (seconds) of a prepared query's answers from its ``DNS.TTL``: Consul truncates
    the Go duration to whole seconds as a uint32; empty or unparsable gives 0."""
    if not ttl:
        return 0
    try:
        seconds = parse_go_duration(ttl)
    except GoDurationError:
        return 0
    return int(seconds) & 0xFFFFFFFF


class DnsResponder:
    """Computes the answer of ``datacenter``'s agent to one DNS query.

    ``rng`` orders service instances (Consul shuffles every answer); ``clock`` gives the unix
    time used as SOA serial; ``udp_answer_limit`` is Consul's ``dns_config.udp_answer_limit``.
    ``a_record_limit`` (modern agents, ``None`` on 1.0.8): 0 = no limit, n > 0 = at most n
    A/AAAA answers on any transport (agent/config/default.go, runtime.go ``DNSARecordLimit``);
    ``udp_answer_limit`` still caps 512-byte UDP answers beside it (default.go sets both).
    ``modern`` also enables ``.dc``/``.peer`` labels, ``<hex>.addr.<dc>`` SRV targets and
    today's UDP trimming (:func:`~.dns_records.trim_udp`). :attr:`enable_truncate` is
    ``dns_config.enable_truncate`` (default false): set the TC bit on answers cut for UDP.
    """

    def __init__(
        self,
        datacenter: str,
        cluster: ClusterView,
        domain: str = "consul",
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        udp_answer_limit: int = records.DEFAULT_UDP_ANSWER_LIMIT,
        a_record_limit: int | None = None,
        modern: bool = False,
    ) -> None:
        self.datacenter = datacenter
        self._a_record_limit = a_record_limit
        self._modern = modern
        self.cluster = cluster
        self.domain = dns.name.from_text(normalize_domain(domain))
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._udp_answer_limit = udp_answer_limit
        #: ``dns_config.enable_truncate``: a cut answer carries the TC bit (Consul's default:
        #: false, the answer is cut silently; agent/dns/response_generator.go).
        self.enable_truncate = False

    # -- wire level ---------------------------------------------------------------------------

    def respond_wire(self, wire: bytes, transport: Transport) -> bytes | None:
        """The response to a query in wire format, or ``None`` for a message that cannot be
        parsed or is itself a response (Consul drops those)."""
        try:
            query = dns.message.from_wire(wire)
        except (dns.exception.DNSException, ValueError) as error:
            _log.debug("dropping undecodable DNS message: %s", error)
            return None
        if query.flags & dns.flags.QR:
            return None
        response = self.respond(query, transport)
        max_size = 65535
        return bytes(response.to_wire(max_size=max_size))

    # -- message level ------------------------------------------------------------------------

    def respond(self, query: dns.message.Message, transport: Transport) -> dns.message.Message:
        """The response message to ``query`` received over ``transport``."""
        response = self._reply(query, authoritative=True)
        if not query.question:
            response.flags &= ~dns.flags.AA
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        question = query.question[0]
        qname: dns.name.Name = question.name
        qtype = dns.rdatatype.RdataType(question.rdtype)
        if not in_domain(qname.to_text(), self.domain.to_text()):
            response.flags &= ~dns.flags.AA
            response.set_rcode(dns.rcode.SERVFAIL)
            if qname.is_subdomain(dns.name.from_text("arpa.")):
                response.flags |= dns.flags.RA
                return self._with_edns(query, response)
            return response
        try:
            self._dispatch(query, response, qname, qtype, transport)
        except DatacenterUnreachable:
            self._servfail(response)
        except EmulatorError as error:
            _log.debug("DNS lookup of %s failed: %s", qname, error)
            self._servfail(response)
        return self._with_edns(query, response)

    def _reply(self, query: dns.message.Message, *, authoritative: bool) -> dns.message.Message:
        response = dns.message.Message(id=query.id)
        flags = dns.flags.QR
        if authoritative:
            flags |= dns.flags.AA
        if query.opcode() == dns.opcode.QUERY:
            flags |= query.flags & (dns.flags.RD | dns.flags.CD)
        response.flags = int(flags)
        response.set_opcode(query.opcode())
        response.question = [
            dns.rrset.RRset(q.name, q.rdclass, q.rdtype) for q in query.question[:1]
        ]
        return response

    @staticmethod
    def _with_edns(
        query: dns.message.Message, response: dns.message.Message
    ) -> dns.message.Message:
        if query.edns >= 0:
            response.use_edns(0, 0, query.payload)
        return response

    @staticmethod
    def _servfail(response: dns.message.Message) -> None:
        response.answer = []
        response.authority = []
        response.additional = []
        response.set_rcode(dns.rcode.SERVFAIL)

    def _soa(self) -> dns.rrset.RRset:
        return records.soa_record(self.domain, int(self._clock()))

    def _name_error(self, response: dns.message.Message) -> None:
        response.authority = [self._soa()]
        response.set_rcode(dns.rcode.NXDOMAIN)

    def _dispatch(
        self,
        query: dns.message.Message,
        response: dns.message.Message,
        qname: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
        transport: Transport,
    ) -> None:
        if qtype == dns.rdatatype.SOA:
            ns, glue = self._nameservers()
            response.answer = [self._soa()]
            response.authority = ns
            response.additional = glue
            return
        if qtype == dns.rdatatype.NS:
            ns, glue = self._nameservers()
            response.answer = ns
            response.additional = glue
            return
        if qtype == dns.rdatatype.AXFR:
            response.set_rcode(dns.rcode.NOTIMP)
            return
        lookup: Lookup = parse_lookup(
            qname.to_text(),
            self.domain.to_text(),
            srv_question=qtype == dns.rdatatype.SRV,
            modern=self._modern,
        )
        if isinstance(lookup, InvalidName):
            self._name_error(response)
        elif isinstance(lookup, ServiceLookup):
            self._service(query, response, lookup, qname, qtype, transport)
        elif isinstance(lookup, NodeLookup):
            self._node(response, lookup, qname, qtype)
        elif isinstance(lookup, QueryLookup):
            self._prepared_query(query, response, lookup, qname, qtype, transport)
        else:
            self._addr(response, lookup, qname)

    # -- lookups ------------------------------------------------------------------------------

    def _service(
        self,
        query: dns.message.Message,
        response: dns.message.Message,
        lookup: ServiceLookup,
        qname: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
        transport: Transport,
    ) -> None:
        datacenter = lookup.datacenter or self.datacenter
        view = self.cluster.reach(self.datacenter, datacenter)
        if lookup.peer is not None:
            imported = getattr(view, "peer_health_service", lambda *_: None)(
                lookup.peer, lookup.service
            )
            entries = list(imported or [])
        else:
            entries = view.health_service(lookup.service)
        if lookup.tag:
            entries = [entry for entry in entries if records.has_tag(entry, lookup.tag)]
        entries = records.healthy_entries(entries)
        if not entries:
            self._name_error(response)
            return
        self._rng.shuffle(entries)
        self._instances(query, response, entries, datacenter, qname, qtype, transport, ttl=0)

    def _prepared_query(
        self,
        query: dns.message.Message,
        response: dns.message.Message,
        lookup: QueryLookup,
        qname: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
        transport: Transport,
    ) -> None:
        datacenter = lookup.datacenter or self.datacenter
        view = self.cluster.reach(self.datacenter, datacenter)
        try:
            result: dict[str, Any] = view.execute_prepared_query(lookup.query)
        except QueryNotFound:
            if datacenter != self.datacenter:
                # Forwarded to another datacenter, the error comes back as an RPC error.
                raise DatacenterUnreachable("rpc error making call: Query not found") from None
            self._name_error(response)
            return
        ttl = query_dns_ttl(str((result.get("DNS") or {}).get("TTL") or ""))
        entries = list(result.get("Nodes") or [])
        if not entries:
            self._name_error(response)
            return
        answered_dc = str(result.get("Datacenter") or datacenter)
        self._instances(query, response, entries, answered_dc, qname, qtype, transport, ttl=ttl)

    def _instances(
        self,
        query: dns.message.Message,
        response: dns.message.Message,
        entries: list[dict[str, Any]],
        datacenter: str,
        qname: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
        transport: Transport,
        *,
        ttl: int,
    ) -> None:
        extra: records.Section = []
        if qtype == dns.rdatatype.SRV:
            answer, extra = records.service_srv_records(
                qname, entries, datacenter, self.domain, ttl, addr_targets=self._modern
            )
        else:
            answer = records.service_address_records(qname, entries, qtype, ttl)
            if self._a_record_limit:
                answer = answer[: self._a_record_limit]
        before = len(answer)
        if transport == "udp":
            payload = query.payload if query.edns >= 0 else None
            answer, extra = records.trim_udp(
                response.question,
                answer,
                extra,
                [],
                payload,
                self._udp_answer_limit,
                modern=self._modern,
            )
        else:
            answer, extra = records.trim_tcp(response.question, qtype, answer, extra, [])
        if len(answer) < before and self.enable_truncate:
            response.flags |= dns.flags.TC  # only with dns_config.enable_truncate
        response.answer = answer
        response.additional = extra
        if not answer:
            response.authority = [self._soa()]

    def _node(
        self,
        response: dns.message.Message,
        lookup: NodeLookup,
        qname: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
    ) -> None:
        if qtype not in _NODE_QTYPES:
            return
        datacenter = lookup.datacenter or self.datacenter
        view = self.cluster.reach(self.datacenter, datacenter)
        node = view.node(lookup.node)
        if node is None:
            self._name_error(response)
            return
        address = str(node.get("Address") or "")
        response.answer = records.node_records(node, address, qname, qtype, 0)

    def _addr(
        self, response: dns.message.Message, lookup: AddrLookup, qname: dns.name.Name
    ) -> None:
        owner = dns.name.from_text(qname.to_text().lower())
        if isinstance(lookup.address, ipaddress.IPv4Address):
            a = records.rdata(dns.rdatatype.A, str(lookup.address))
            response.answer = [records.record(owner, 0, a)]
        elif isinstance(lookup.address, ipaddress.IPv6Address):
            aaaa = records.rdata(dns.rdatatype.AAAA, str(lookup.address))
            response.answer = [records.record(owner, 0, aaaa)]

    def _nameservers(self) -> tuple[records.Section, records.Section]:
        """NS records for up to three servers of the local datacenter (``consul`` service)."""
        try:
            view = self.cluster.reach(self.datacenter, self.datacenter)
            servers = view.health_service("consul")
        except EmulatorError:
            return [], []
        servers = records.healthy_entries(servers)
        self._rng.shuffle(servers)
        ns: records.Section = []
        glue: records.Section = []
        for entry in servers:
            node = entry["Node"]
            name = str(node["Node"])
            if re.search(r"[^A-Za-z0-9\-]", name):
                continue
            dc = str(node.get("Datacenter") or self.datacenter)
            target = dns.name.from_text(f"{name}.node.{dc}".lower(), origin=self.domain)
            ns_rdata = records.rdata(dns.rdatatype.NS, target.to_text())
            ns.append(records.record(self.domain, 0, ns_rdata))
            glue.extend(
                records.node_records(
                    None, str(node.get("Address") or ""), target, dns.rdatatype.ANY, 0
                )
            )
            if len(ns) >= 3:
                break
        return ns, glue
