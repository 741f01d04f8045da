"""DNS of a modern agent: ``.dc``/``.peer`` labels, ``<hex>.addr.<dc>`` SRV targets for a
service address other than the node's, and ``a_record_limit`` replacing the 3-answer UDP cap;
real UDP/TCP sockets, dnspython."""

from __future__ import annotations

from collections.abc import AsyncIterator

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from mcresolve.testing.consul import ConsulEmulator

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


async def test_a_record_limit_replaces_the_three_answer_udp_cap(consul: ConsulEmulator) -> None:
    port = consul.dc("dc1").dns_port
    answer = await ask(port, "web.service.consul", "A")
    assert sum(len(rrset) for rrset in answer.answer) == 6  # 1.0.8 answers 3 over UDP


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
