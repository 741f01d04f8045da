"""Prepared queries end to end: ConsulEmulator with two datacenters, services registered and
queries created over its real HTTP API, failover driven by flipping checks and by taking the
remote agent down or cutting the WAN link; ``<query>.query.consul`` over real DNS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from mcresolve.testing.consul import ConsulEmulator

SERVICE = "storage-object-minio"


async def register(
    http: aiohttp.ClientSession, url: str, sid: str, port: int, tags: list[str]
) -> None:
    body = {
        "ID": sid,
        "Name": SERVICE,
        "Tags": tags,
        "Port": port,
        "Check": {"CheckID": f"{sid}-ttl", "TTL": "15m", "Status": "passing"},
    }
    async with http.put(f"{url}/v1/agent/service/register", json=body) as response:
        assert response.status == 200, await response.text()


@pytest.fixture
async def consul() -> AsyncIterator[ConsulEmulator]:
    emulator = ConsulEmulator(["dc1", "dc2"], rtt_ms={("dc1", "dc2"): 40.0})
    async with emulator, aiohttp.ClientSession() as http:
        dc1, dc2 = emulator.dc("dc1").http_url, emulator.dc("dc2").http_url
        await register(http, dc1, "minio-dc1-a", 9001, ["primary", "v1"])
        await register(http, dc1, "minio-dc1-b", 9002, ["secondary", "v1"])
        await register(http, dc1, "minio-dc1-c", 9003, ["v2"])
        await register(http, dc2, "minio-dc2-a", 9101, ["primary", "v1"])
        await register(http, dc2, "minio-dc2-b", 9102, ["secondary", "v1"])
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def create(http: aiohttp.ClientSession, url: str, definition: dict[str, Any]) -> str:
    async with http.post(f"{url}/v1/query", json=definition) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "application/json"
        body = await response.json()
    query_id: str = body["ID"]
    return query_id


async def execute(
    http: aiohttp.ClientSession, url: str, name: str, params: str = ""
) -> dict[str, Any]:
    async with http.get(f"{url}/v1/query/{name}/execute{params}") as response:
        assert response.status == 200, await response.text()
        assert response.headers["X-Consul-Index"] == "0"
        assert response.headers["X-Consul-Knownleader"] == "true"
        assert response.headers["X-Consul-Effective-Consistency"] == "leader"
        result: dict[str, Any] = await response.json()
    return result


def ids(result: dict[str, Any]) -> set[str]:
    return {node["Service"]["ID"] for node in result["Nodes"]}


def set_all(consul: ConsulEmulator, dc: str, status: str) -> None:
    for sid in {"dc1": ("a", "b", "c"), "dc2": ("a", "b")}[dc]:
        consul.dc(dc).set_check_status(f"minio-{dc}-{sid}-ttl", status, status)


DC1 = {"minio-dc1-a", "minio-dc1-b", "minio-dc1-c"}
DC2 = {"minio-dc2-a", "minio-dc2-b"}


async def test_create_list_get_and_execute(
    consul: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    url = consul.dc("dc1").http_url
    query_id = await create(
        http, url, {"Name": SERVICE, "Service": {"Service": SERVICE, "Failover": {"NearestN": 1}}}
    )
    async with http.get(f"{url}/v1/query") as response:
        listed = await response.json()
        index = int(response.headers["X-Consul-Index"])
    assert [q["ID"] for q in listed] == [query_id]
    assert listed[0]["CreateIndex"] == listed[0]["ModifyIndex"] == index > 0
    async with http.get(f"{url}/v1/query/{query_id}") as response:
        assert response.status == 200
        assert await response.json() == listed
    result = await execute(http, url, SERVICE)
    assert ids(result) == DC1
    assert (result["Datacenter"], result["Failovers"]) == ("dc1", 0)
    assert len((await execute(http, url, query_id, "?limit=2"))["Nodes"]) == 2
    near = await execute(http, url, SERVICE, "?near=_agent")
    assert near["Nodes"][0]["Node"]["Node"] == "n1"


async def test_errors_over_http(consul: ConsulEmulator, http: aiohttp.ClientSession) -> None:
    url = consul.dc("dc1").http_url
    await create(http, url, {"Name": SERVICE, "Service": {"Service": SERVICE}})
    async with http.get(f"{url}/v1/query/no-such-query/execute") as response:
        assert (response.status, await response.text()) == (404, "Query not found")
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert not [h for h in response.headers if h.lower().startswith("x-consul")]
    async with http.get(f"{url}/v1/query/{SERVICE}/execute?dc=dc2") as response:
        assert (response.status, await response.text()) == (
            500,
            "rpc error making call: Query not found",
        )
        assert response.headers["X-Consul-Knownleader"] == "false"
    async with http.post(f"{url}/v1/query", data=b'{"Name": "x", ') as response:
        assert (response.status, await response.text()) == (
            400,
            "Request decode failed: unexpected EOF",
        )
    async with http.put(f"{url}/v1/query", json={}) as response:
        assert (response.status, response.headers["Allow"]) == (405, "OPTIONS,GET,POST")
    async with http.delete(f"{url}/v1/query/00000000-0000-0000-0000-000000000000") as response:
        assert response.status == 500
        assert await response.text() == (
            "Cannot modify non-existent prepared query: '00000000-0000-0000-0000-000000000000'"
        )


async def test_failover_and_failback(consul: ConsulEmulator, http: aiohttp.ClientSession) -> None:
    url = consul.dc("dc1").http_url
    await create(
        http, url, {"Name": SERVICE, "Service": {"Service": SERVICE, "Failover": {"NearestN": 1}}}
    )
    await create(
        http,
        url,
        {
            "Name": "only-v1",
            "Service": {
                "Service": SERVICE,
                "Tags": ["v1"],
                "OnlyPassing": True,
                "Failover": {"Datacenters": ["dc2"]},
            },
            "DNS": {"TTL": "10s"},
        },
    )
    await create(http, url, {"Name": "nofailover", "Service": {"Service": SERVICE}})

    set_all(consul, "dc1", "critical")
    for name in (SERVICE, "only-v1"):
        result = await execute(http, url, name)
        assert (ids(result), result["Datacenter"], result["Failovers"]) == (DC2, "dc2", 1)
    result = await execute(http, url, "nofailover")
    assert (result["Nodes"], result["Datacenter"], result["Failovers"]) == ([], "dc1", 0)

    set_all(consul, "dc2", "critical")
    result = await execute(http, url, SERVICE)
    assert (result["Nodes"], result["Datacenter"], result["Failovers"]) == ([], "dc2", 1)
    set_all(consul, "dc2", "passing")

    consul.partition("dc1", "dc2")
    result = await execute(http, url, SERVICE)
    assert (result["Nodes"], result["Datacenter"], result["Failovers"]) == ([], "dc1", 1)
    consul.heal("dc1", "dc2")

    await consul.stop_agent("dc2")
    result = await execute(http, url, "only-v1")
    assert (result["Nodes"], result["Datacenter"], result["Failovers"]) == ([], "dc1", 1)
    await consul.start_agent("dc2")
    assert (await execute(http, url, "only-v1"))["Datacenter"] == "dc2"

    set_all(consul, "dc1", "warning")
    result = await execute(http, url, SERVICE)  # warning instances are kept: no failover
    assert (ids(result), result["Datacenter"]) == (DC1, "dc1")
    assert (await execute(http, url, "only-v1"))["Datacenter"] == "dc2"

    set_all(consul, "dc1", "passing")
    result = await execute(http, url, SERVICE)
    assert (ids(result), result["Datacenter"], result["Failovers"]) == (DC1, "dc1", 0)


async def test_templates_over_http(consul: ConsulEmulator, http: aiohttp.ClientSession) -> None:
    url = consul.dc("dc1").http_url
    await create(
        http,
        url,
        {
            "Name": "geo-",
            "Template": {"Type": "name_prefix_match", "Regexp": "^geo-([^-]+)-(.+)$"},
            "Service": {"Service": "${match(2)}", "Tags": ["${match(1)}"]},
        },
    )
    result = await execute(http, url, f"geo-primary-{SERVICE}")
    assert ids(result) == {"minio-dc1-a"}
    async with http.get(f"{url}/v1/query/geo-secondary-{SERVICE}/explain") as response:
        explained = await response.json()
    assert explained["Query"]["Service"]["Tags"] == ["secondary"]
    assert explained["Query"]["Name"] == "geo-"


async def test_query_dns_follows_failover(
    consul: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    dc1 = consul.dc("dc1")
    await create(
        http,
        dc1.http_url,
        {
            "Name": "q",
            "Service": {"Service": SERVICE, "Failover": {"NearestN": 1}},
            "DNS": {"TTL": "10s"},
        },
    )

    async def srv_ports() -> tuple[int, set[int], set[int]]:
        answer = await dns.asyncquery.tcp(
            dns.message.make_query("q.query.consul", "SRV"),
            "127.0.0.1",
            port=dc1.dns_port,
            timeout=5,
        )
        ports = {rdata.port for rrset in answer.answer for rdata in rrset}
        ttls = {rrset.ttl for rrset in answer.answer}
        return answer.rcode(), ports, ttls

    assert await srv_ports() == (dns.rcode.NOERROR, {9001, 9002, 9003}, {10})
    set_all(consul, "dc1", "critical")
    assert await srv_ports() == (dns.rcode.NOERROR, {9101, 9102}, {10})
    set_all(consul, "dc2", "critical")
    rcode, ports, _ = await srv_ports()
    assert (rcode, ports) == (dns.rcode.NXDOMAIN, set())


async def test_queries_are_per_datacenter_and_forwarded(
    consul: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    dc1, dc2 = consul.dc("dc1").http_url, consul.dc("dc2").http_url
    definition = {"Name": "remote-q", "Service": {"Service": SERVICE}}
    async with http.post(f"{dc1}/v1/query?dc=dc2", json=definition) as response:
        assert response.status == 200, await response.text()
        query_id = (await response.json())["ID"]
    async with http.get(f"{dc1}/v1/query") as response:
        assert await response.json() == []
    async with http.get(f"{dc2}/v1/query/{query_id}") as response:
        assert [q["Name"] for q in await response.json()] == ["remote-q"]
    result = await execute(http, dc1, "remote-q", "?dc=dc2&limit=1")
    assert (result["Datacenter"], len(result["Nodes"])) == ("dc2", 1)
    assert ids(result) <= DC2
    consul.partition("dc1", "dc2")
    async with http.get(f"{dc1}/v1/query/remote-q/execute?dc=dc2") as response:
        assert (response.status, await response.text()) == (500, "No path to datacenter")
    consul.heal("dc1", "dc2")
    async with http.delete(f"{dc1}/v1/query/{query_id}?dc=dc2") as response:
        assert response.status == 200
    async with http.get(f"{dc2}/v1/query") as response:
        assert await response.json() == []
