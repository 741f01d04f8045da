"""The emulator's DNS end to end: ConsulEmulator with two datacenters, services registered over
its HTTP API, questions sent with dnspython over real UDP and TCP sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import dns.asyncquery
import dns.asyncresolver
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from mcresolve.testing.consul import ConsulEmulator

SERVICE = "web"


async def register(
    http: aiohttp.ClientSession, url: str, sid: str, port: int, tags: list[str]
) -> None:
    body = {
        "ID": sid,
        "Name": SERVICE,
        "Tags": tags,
        "Address": "127.0.0.1",
        "Port": port,
        "Check": {"CheckID": f"{sid}-ttl", "TTL": "15m", "Status": "passing"},
    }
    async with http.put(f"{url}/v1/agent/service/register", json=body) as response:
        assert response.status == 200, await response.text()


async def check(http: aiohttp.ClientSession, url: str, sid: str, state: str) -> None:
    async with http.put(f"{url}/v1/agent/check/{state}/{sid}-ttl") as response:
        assert response.status == 200, await response.text()


@pytest.fixture
async def consul() -> AsyncIterator[ConsulEmulator]:
    emulator = ConsulEmulator(["dc1", "dc2"], rtt_ms={("dc1", "dc2"): 5.0})
    async with emulator, aiohttp.ClientSession() as http:
        dc1, dc2 = emulator.dc("dc1").http_url, emulator.dc("dc2").http_url
        for i in range(5):
            await register(http, dc1, f"web-{i}", 9000 + i, ["v1"] if i % 2 else ["v2"])
        for i in range(2):
            await register(http, dc2, f"web-dc2-{i}", 9100 + i, ["v1"])
        yield emulator


async def ask(
    port: int, qname: str, qtype: str = "SRV", transport: str = "udp"
) -> dns.message.Message:
    query = dns.message.make_query(qname, qtype)
    if transport == "udp":
        return await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=5)
    return await dns.asyncquery.tcp(query, "127.0.0.1", port=port, timeout=5)


def ports(message: dns.message.Message) -> list[int]:
    return sorted(rd.port for rrset in message.answer for rd in rrset)


async def test_srv_over_udp_is_limited_to_three_and_tcp_returns_all(
    consul: ConsulEmulator,
) -> None:
    port = consul.dc("dc1").dns_port
    udp = await ask(port, "web.service.consul")
    assert len(ports(udp)) == 3 and set(ports(udp)) <= set(range(9000, 9005))
    tcp = await ask(port, "web.service.consul", transport="tcp")
    assert ports(tcp) == list(range(9000, 9005))
    targets = {rd.target.to_text() for rrset in tcp.answer for rd in rrset}
    assert targets == {f"{consul.dc('dc1').agent_node}.node.dc1.consul."}


async def test_dnspython_resolver_resolves_service_and_node_names(
    consul: ConsulEmulator,
) -> None:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = consul.dc("dc1").dns_port
    answer = await resolver.resolve("web.service.consul", "A", tcp=True)
    assert [rd.address for rd in answer] == ["127.0.0.1"]
    srv = await resolver.resolve("v1.web.service.dc2.consul", "SRV")
    assert sorted(rd.port for rd in srv) == [9100, 9101]
    node = await resolver.resolve(f"{consul.dc('dc2').agent_node}.node.dc2.consul", "A")
    assert [rd.address for rd in node] == ["127.0.0.1"]


async def test_critical_instances_disappear_and_all_critical_is_nxdomain(
    consul: ConsulEmulator,
) -> None:
    port = consul.dc("dc1").dns_port
    url = consul.dc("dc1").http_url
    async with aiohttp.ClientSession() as http:
        await check(http, url, "web-0", "fail")
        await check(http, url, "web-1", "warn")
        assert ports(await ask(port, "web.service.consul", transport="tcp")) == [
            9001,
            9002,
            9003,
            9004,
        ]
        for i in range(1, 5):
            await check(http, url, f"web-{i}", "fail")
    message = await ask(port, "web.service.consul")
    assert message.rcode() == dns.rcode.NXDOMAIN
    serial = message.authority[0][0].serial
    assert abs(serial - time.time()) < 5


async def test_stopped_or_partitioned_datacenter_is_servfail_and_comes_back(
    consul: ConsulEmulator,
) -> None:
    dc1_port, dc2_port = consul.dc("dc1").dns_port, consul.dc("dc2").dns_port
    await consul.stop_agent("dc2")
    assert (await ask(dc1_port, "web.service.dc2.consul")).rcode() == dns.rcode.SERVFAIL
    with pytest.raises(OSError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", dc2_port), 5)
    await consul.start_agent("dc2")
    assert consul.dc("dc2").dns_port == dc2_port
    assert ports(await ask(dc2_port, "web.service.consul", transport="tcp")) == [9100, 9101]
    assert ports(await ask(dc1_port, "web.service.dc2.consul")) == [9100, 9101]
    consul.partition("dc1", "dc2")
    assert (await ask(dc1_port, "web.service.dc2.consul")).rcode() == dns.rcode.SERVFAIL
    consul.heal("dc1", "dc2")
    assert (await ask(dc1_port, "web.service.dc2.consul")).rcode() == dns.rcode.NOERROR


async def test_prepared_query_fails_over_with_its_dns_ttl(consul: ConsulEmulator) -> None:
    dc1 = consul.dc("dc1")
    definition: dict[str, Any] = {
        "Name": "web-q",
        "Service": {"Service": SERVICE, "Failover": {"Datacenters": ["dc2"]}},
        "DNS": {"TTL": "10s"},
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{dc1.http_url}/v1/query", json=definition) as response:
            assert response.status == 200, await response.text()
        local = await ask(dc1.dns_port, "web-q.query.consul", transport="tcp")
        assert ports(local) == list(range(9000, 9005))
        assert {rrset.ttl for rrset in [*local.answer, *local.additional]} == {10}
        for i in range(5):
            await check(http, dc1.http_url, f"web-{i}", "fail")
    remote = await ask(dc1.dns_port, "web-q.query.consul", transport="tcp")
    assert ports(remote) == [9100, 9101]
    assert {rd.target.to_text().split(".")[2] for rrset in remote.answer for rd in rrset} == {"dc2"}
    assert (await ask(dc1.dns_port, "web-q.query.dc2.consul")).rcode() == dns.rcode.SERVFAIL
    await consul.stop_agent("dc2")
    gone = await ask(dc1.dns_port, "web-q.query.consul")
    assert gone.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.rdtype for rrset in gone.authority] == [dns.rdatatype.SOA]
