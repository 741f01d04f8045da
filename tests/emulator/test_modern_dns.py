"""DNS of a modern agent: ``.dc``/``.peer`` labels, ``<hex>.addr.<dc>`` SRV targets for a
service address other than the node's, today's UDP trimming (the 3-answer cap beside
``a_record_limit``, compressed sizing, the TC bit only with ``enable_truncate``); real UDP/TCP
sockets, dnspython."""

from __future__ import annotations

from collections.abc import AsyncIterator

import dns.asyncquery
import dns.asyncresolver
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from mcresolve.testing.consul import ConsulEmulator
from mcresolve.testing.consul.catalog import NodeRecord, ServiceRecord

TIMEOUT = 10.0


@pytest.fixture
async def consul() -> AsyncIterator[ConsulEmulator]:
    async with ConsulEmulator(["dc1", "dc2"], version="1.21") as emulator:
        for i in range(6):  # six instances on distinct loopback addresses
            emulator.dc("dc1").agent.register_service(
                {
                    "ID": f"web-{i}",
                    "Name": "web",
                    "Address": f"127.0.0.{10 + i}",
                    "Port": 8000 + i,
                    "Check": {"CheckID": f"web-{i}-ttl", "TTL": "10m", "Status": "passing"},
                }
            )
        emulator.dc("dc1").agent.register_service({"ID": "same", "Name": "same", "Port": 7000})
        emulator.dc("dc2").agent.register_service(
            {"ID": "api-1", "Name": "api", "Address": "127.0.0.2", "Port": 8001}
        )
        emulator.peer("dc1", "dc2", name="east")
        yield emulator


async def ask(port: int, qname: str, qtype: str, transport: str = "udp") -> dns.message.Message:
    query = dns.message.make_query(qname, qtype)
    if transport == "udp":
        return await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=TIMEOUT)
    return await dns.asyncquery.tcp(query, "127.0.0.1", port=port, timeout=TIMEOUT)


async def test_srv_targets_are_addr_names_when_the_service_address_differs(
    consul: ConsulEmulator,
) -> None:
    port = consul.dc("dc1").dns_port
    answer = await ask(port, "web.service.consul", "SRV", "tcp")
    targets = {rr.target.to_text() for rrset in answer.answer for rr in rrset}
    assert targets == {f"7f00000{a:x}.addr.dc1.consul." for a in range(10, 16)}
    extra = {rrset.name.to_text(): [rr.to_text() for rr in rrset] for rrset in answer.additional}
    assert extra["7f00000a.addr.dc1.consul."] == ["127.0.0.10"]
    # no service address: the node's name, as on 1.0.8
    same = await ask(port, "same.service.consul", "SRV")
    assert [rr.target.to_text() for rr in same.answer[0]] == ["n1.node.dc1.consul."]


def count(message: dns.message.Message) -> int:
    return sum(len(rrset) for rrset in message.answer)


async def test_the_udp_answer_cap_stays_beside_a_record_limit(consul: ConsulEmulator) -> None:
    """Today's ``trimUDPResponse`` still cuts a 512-byte UDP answer to ``udp_answer_limit``
    (3; agent/config/default.go sets it beside ``a_record_limit = 0``), silently (no TC bit
    without ``enable_truncate``); TCP and a large EDNS payload get every instance."""
    port = consul.dc("dc1").dns_port
    udp = await ask(port, "web.service.consul", "A")
    assert count(udp) == 3 and not udp.flags & dns.flags.TC
    assert count(await ask(port, "web.service.consul", "A", "tcp")) == 6
    query = dns.message.make_query("web.service.consul", "A", use_edns=0, payload=4096)
    large = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=TIMEOUT)
    assert count(large) == 6


async def test_enable_truncate_sets_tc_and_a_resolver_retries_over_tcp(
    consul: ConsulEmulator,
) -> None:
    dc1 = consul.dc("dc1")
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = dc1.dns_port
    silent = await resolver.resolve("web.service.consul", "A", lifetime=TIMEOUT)
    assert len(silent) == 3  # Consul's default: cut without TC, the resolver cannot know
    dc1.dns_enable_truncate = True
    udp = await ask(dc1.dns_port, "web.service.consul", "A")
    assert count(udp) == 3 and udp.flags & dns.flags.TC
    whole = await resolver.resolve("web.service.consul", "A", lifetime=TIMEOUT)
    assert len(whole) == 6  # TC: the resolver asked again over TCP
    fits = await ask(dc1.dns_port, "same.service.consul", "A")
    assert not fits.flags & dns.flags.TC  # nothing cut, no TC


@pytest.mark.parametrize(("version", "answers"), [("1.0.8", 1), ("1.21", 2)])
async def test_udp_answers_under_the_cap_are_sized_compressed_on_modern_agents(
    version: str, answers: int
) -> None:
    """Two SRV answers on one node with long metadata: 1.0.8 sizes the message uncompressed
    (recorded: cut to one answer); today's agent measures it compressed when the count cap did
    not cut, and its binary search keeps both answers with the TXT records dropped."""
    async with ConsulEmulator(["dc1"], version=version) as emulator:
        dc1 = emulator.dc("dc1")
        meta = {f"meta-key-number-{k}": "a-fairly-long-value-" * 2 for k in range(4)}
        for i in range(2):
            dc1.catalog.register(
                NodeRecord(name="storage-node-in-the-aws-cloud-01", address="127.0.0.1", meta=meta),
                ServiceRecord(
                    node="storage-node-in-the-aws-cloud-01",
                    service_id=f"pair-{i}",
                    name="pair",
                    port=7000 + i,
                ),
                [],
            )
        udp = await ask(dc1.dns_port, "pair.service.consul", "SRV")
        assert count(udp) == answers
        assert len(udp.to_wire()) <= 512 - 8
        assert not any(rrset.rdtype == dns.rdatatype.TXT for rrset in udp.additional)


async def test_labelled_datacenter_and_peer_names(consul: ConsulEmulator) -> None:
    port = consul.dc("dc1").dns_port
    peer = await ask(port, "api.service.east.peer.consul", "A")
    assert [rr.to_text() for rr in peer.answer[0]] == ["127.0.0.2"]
    labelled = await ask(port, "api.service.dc2.dc.consul", "A")
    assert [rr.to_text() for rr in labelled.answer[0]] == ["127.0.0.2"]
    for name in ("api.service.west.peer.consul", "x.node.east.peer.consul"):
        missing = await ask(port, name, "A")
        assert missing.rcode() == dns.rcode.NXDOMAIN, name


async def test_the_1_0_8_profile_keeps_node_targets_and_the_udp_cap() -> None:
    async with ConsulEmulator(["dc1"]) as legacy:
        for i in range(6):
            legacy.dc("dc1").agent.register_service(
                {"ID": f"web-{i}", "Name": "web", "Address": f"127.0.0.{10 + i}", "Port": 80}
            )
        port = legacy.dc("dc1").dns_port
        srv = await ask(port, "web.service.consul", "SRV", "tcp")
        assert {rr.target.to_text() for rrset in srv.answer for rr in rrset} == {
            "n1.node.dc1.consul."
        }
        a = await ask(port, "web.service.consul", "A")
        assert sum(len(rrset) for rrset in a.answer) == 3
        peer = await ask(port, "web.service.east.peer.consul", "A")
        assert peer.rcode() == dns.rcode.NXDOMAIN
