"""ConsulDnsServer over real loopback sockets (UDP and TCP on one port), against an in-test
cluster view built like the recorded data set (07_dns.json, all instances passing)."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from emulator_fakes import FakeCluster, FakeDatacenter

from mcresolve.testing.consul.contracts import HealthEntry
from mcresolve.testing.consul.dns_server import ConsulDnsServer

SERVICE = "storage-object-minio"
AGENT_META = {"consul-network-segment": ""}


def node(name: str, dc: str, meta: Mapping[str, str] | None) -> dict[str, Any]:
    return {
        "ID": "",
        "Node": name,
        "Address": "127.0.0.1",
        "Datacenter": dc,
        "TaggedAddresses": None,
        "Meta": dict(meta) if meta is not None else None,
    }


def entry(
    node_name: str, dc: str, sid: str, port: int, tags: list[str], status: str = "passing"
) -> HealthEntry:
    meta = AGENT_META if node_name in ("n1", "n2") else None
    return {
        "Node": node(node_name, dc, meta),
        "Service": {"ID": sid, "Service": SERVICE, "Tags": tags, "Address": "", "Port": port},
        "Checks": [{"CheckID": f"{sid}-check", "Status": status}],
    }


def recorded_cluster() -> FakeCluster:
    dc1 = FakeDatacenter(
        "dc1",
        [
            entry("minio-node-x1", "dc1", "minio-dc1-x1", 9005, ["external", "v1"]),
            entry("minio-node-x2", "dc1", "minio-dc1-x2", 9006, ["external", "v2"]),
            entry("n1", "dc1", "minio-dc1-a", 9001, ["primary", "v1"]),
            entry("n1", "dc1", "minio-dc1-b", 9002, ["secondary", "v1"]),
            entry("n1", "dc1", "minio-dc1-c", 9003, ["v2"]),
            entry("n1", "dc1", "minio-dc1-http", 9004, ["http", "v1"]),
        ],
        agent_node="n1",
    )
    dc2 = FakeDatacenter(
        "dc2",
        [
            entry("minio-node-y1", "dc2", "minio-dc2-y1", 9105, ["external", "v1"]),
            entry("n2", "dc2", "minio-dc2-a", 9101, ["primary", "v1"]),
            entry("n2", "dc2", "minio-dc2-b", 9102, ["secondary", "v1"]),
        ],
        agent_node="n2",
    )
    dc1.queries[SERVICE] = {
        "Service": SERVICE,
        "Nodes": dc1.health_service(SERVICE),
        "DNS": {"TTL": "10s"},
        "Datacenter": "dc1",
        "Failovers": 0,
    }
    return FakeCluster([dc1, dc2])


@pytest.fixture
async def server() -> AsyncIterator[ConsulDnsServer]:
    dns_server = ConsulDnsServer("dc1", recorded_cluster(), rng=random.Random(7))
    await dns_server.start("127.0.0.1", 0)
    try:
        yield dns_server
    finally:
        await dns_server.stop()


async def ask(
    port: int, qname: str, qtype: str, transport: str = "udp", payload: int | None = None
) -> dns.message.Message:
    query = dns.message.make_query(qname, qtype, use_edns=payload is not None, payload=payload)
    if transport == "udp":
        return await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=5)
    return await dns.asyncquery.tcp(query, "127.0.0.1", port=port, timeout=5)


async def test_udp_srv_answers_three_of_six_with_the_recorded_flags(
    server: ConsulDnsServer,
) -> None:
    assert server.port is not None
    response = await ask(server.port, f"{SERVICE}.service.consul", "SRV")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.QR
    assert response.flags & dns.flags.AA
    assert response.flags & dns.flags.RD
    assert not response.flags & dns.flags.RA
    srv = [rd for rrset in response.answer for rd in rrset]
    assert len(srv) == 3
    assert all(rd.priority == 1 and rd.weight == 1 for rd in srv)
    assert {rd.target.to_text() for rd in srv} <= {
        "n1.node.dc1.consul.",
        "minio-node-x1.node.dc1.consul.",
        "minio-node-x2.node.dc1.consul.",
    }
    # trimmed answers keep only one address record per target: no TXT
    assert {rrset.rdtype for rrset in response.additional} == {dns.rdatatype.A}


async def test_tcp_srv_answers_every_instance_and_the_agent_node_txt(
    server: ConsulDnsServer,
) -> None:
    assert server.port is not None
    response = await ask(server.port, f"{SERVICE}.service.consul", "SRV", "tcp")
    ports = sorted(rd.port for rrset in response.answer for rd in rrset)
    assert ports == [9001, 9002, 9003, 9004, 9005, 9006]
    txt = [rrset for rrset in response.additional if rrset.rdtype == dns.rdatatype.TXT]
    assert txt
    assert all(rrset.name.to_text() == "n1.node.dc1.consul." for rrset in txt)
    assert txt[0][0].strings == (b"consul-network-segment=",)


async def test_a_records_are_deduplicated_on_udp_and_tcp(server: ConsulDnsServer) -> None:
    assert server.port is not None
    for transport in ("udp", "tcp"):
        response = await ask(server.port, f"{SERVICE}.service.consul", "A", transport)
        assert [rd.address for rrset in response.answer for rd in rrset] == ["127.0.0.1"]


async def test_unknown_datacenter_is_servfail_with_empty_sections(
    server: ConsulDnsServer,
) -> None:
    assert server.port is not None
    response = await ask(server.port, f"{SERVICE}.service.nodc.consul", "SRV")
    assert response.rcode() == dns.rcode.SERVFAIL
    assert response.answer == response.authority == response.additional == []


async def test_udp_and_tcp_share_one_port_and_stop_closes_both(
    server: ConsulDnsServer,
) -> None:
    port = server.port
    assert port is not None
    await server.stop()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    # the UDP port is free again: we can bind it ourselves
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind(("127.0.0.1", port))
    finally:
        probe.close()
    assert await server.start("127.0.0.1", port) == port
    response = await ask(port, f"{SERVICE}.service.consul", "A", "tcp")
    assert response.rcode() == dns.rcode.NOERROR
