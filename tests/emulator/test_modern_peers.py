"""Cluster peering on the modern profile: ``?peer=`` reads, ``PeerName`` on imported
instances, prepared-query ``Failover.Targets`` (and its validation), 1.0.8 refusing peering."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from mcresolve.testing.consul import ConsulEmulator

TIMEOUT = aiohttp.ClientTimeout(total=30)


@pytest.fixture
async def consul() -> AsyncIterator[ConsulEmulator]:
    async with ConsulEmulator(["dc1", "dc2"], version="1.21") as emulator:
        for service_id, name, port in (("api-1", "api", 8001), ("db-1", "db", 5432)):
            emulator.dc("dc2").agent.register_service(
                {
                    "ID": service_id,
                    "Name": name,
                    "Address": "127.0.0.1",
                    "Port": port,
                    "Check": {"CheckID": f"{service_id}-ttl", "TTL": "10m", "Status": "passing"},
                }
            )
        emulator.peer("dc1", "dc2", name="east", services=["api"])
        yield emulator


async def call(method: str, url: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, json=body, timeout=TIMEOUT) as resp,
    ):
        text = await resp.text()
        parsed = json.loads(text) if resp.content_type == "application/json" else text
        return resp.status, dict(resp.headers), parsed


async def test_health_and_catalog_read_a_peer(consul: ConsulEmulator) -> None:
    base = consul.dc("dc1").http_url
    status, _, body = await call("GET", f"{base}/v1/health/service/api?peer=east&passing")
    assert status == 200 and len(body) == 1
    entry = body[0]
    assert entry["Service"]["PeerName"] == "east" and entry["Node"]["PeerName"] == "east"
    assert list(entry["Node"])[-3:] == ["PeerName", "CreateIndex", "ModifyIndex"]
    assert all(check["PeerName"] == "east" for check in entry["Checks"])
    _, _, catalog = await call("GET", f"{base}/v1/catalog/service/api?peer=east")
    assert [(e["ServiceID"], e["PeerName"]) for e in catalog] == [("api-1", "east")]
    # not exported, unknown peer, no peer: nothing (dc1 has no api itself)
    for query in ("db?peer=east", "api?peer=west", "api"):
        status, _, body = await call("GET", f"{base}/v1/health/service/{query}")
        assert (status, body) == (200, [])


async def test_prepared_query_fails_over_to_a_peer_target(consul: ConsulEmulator) -> None:
    base = consul.dc("dc1").http_url
    definition = {
        "Name": "api",
        "Service": {
            "Service": "api",
            "Failover": {"Targets": [{"Peer": "west"}, {"Peer": "east"}]},
        },
    }
    status, _, created = await call("POST", f"{base}/v1/query", definition)
    assert status == 200
    _, _, stored = await call("GET", f"{base}/v1/query/{created['ID']}")
    assert stored[0]["Service"]["Failover"]["Targets"] == [
        {"Peer": "west", "Datacenter": ""},
        {"Peer": "east", "Datacenter": ""},
    ]
    status, _, result = await call("GET", f"{base}/v1/query/api/execute")
    assert status == 200
    assert result["Failovers"] == 2 and result["Datacenter"] == "dc2"
    assert [n["Service"]["PeerName"] for n in result["Nodes"]] == ["east"]


async def test_targets_exclude_nearest_n_and_datacenters(consul: ConsulEmulator) -> None:
    # agent/consul/prepared_query_endpoint.go parseService
    base = consul.dc("dc1").http_url
    for failover in (
        {"NearestN": 1, "Targets": [{"Peer": "east"}]},
        {"Datacenters": ["dc2"], "Targets": [{"Peer": "east"}]},
    ):
        status, _, text = await call(
            "POST",
            f"{base}/v1/query",
            {"Name": "bad", "Service": {"Service": "api", "Failover": failover}},
        )
        assert (status, text) == (
            500,
            "Invalid prepared query: Targets cannot be populated with NearestN or Datacenters",
        )


async def test_a_datacenter_target_and_legacy_definitions(consul: ConsulEmulator) -> None:
    base = consul.dc("dc1").http_url
    definition = {
        "Name": "db",
        "Service": {
            "Service": "db",
            "Failover": {"Targets": [{"Datacenter": "nowhere"}, {"Datacenter": "dc2"}]},
        },
    }
    await call("POST", f"{base}/v1/query", definition)
    _, _, result = await call("GET", f"{base}/v1/query/db/execute")
    # an unknown datacenter is skipped without counting
    assert (result["Failovers"], result["Datacenter"], len(result["Nodes"])) == (1, "dc2", 1)
    assert "PeerName" not in result["Nodes"][0]["Node"]
    await call("POST", f"{base}/v1/query", {"Name": "plain", "Service": {"Service": "db"}})
    _, _, stored = await call("GET", f"{base}/v1/query")
    plain = next(q for q in stored if q["Name"] == "plain")
    assert "Targets" not in plain["Service"]["Failover"]  # omitempty


async def test_peering_needs_modern_profiles() -> None:
    async with ConsulEmulator(["dc1", "dc2"]) as legacy:
        with pytest.raises(ValueError, match="modern"):
            legacy.peer("dc1", "dc2")
