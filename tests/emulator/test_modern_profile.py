"""The modern (1.21 / 2.x CE) profile of the emulator: answer shapes and headers, checked
against a published real 1.21.3 answer (tests/emulator/data, source named in the file), the
Community Edition's answer to namespaces and partitions, streaming and cache headers.

Each test names the Consul source it follows; docs/emulator.md lists them in one table.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mcresolve.testing.consul import ConsulEmulator
from mcresolve.testing.consul.profile import (
    LEGACY,
    MODERN,
    ConsulProfile,
    go_duration,
    profile_for,
)

PUBLISHED = json.loads(
    (Path(__file__).parent / "data" / "consul_1_21_3_health_service.json").read_text()
)
TIMEOUT = aiohttp.ClientTimeout(total=30)


def shape(value: Any) -> Any:
    """Keys (in order) and JSON types, values dropped: what must match a real answer."""
    if isinstance(value, dict):
        return [(key, shape(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


@pytest.fixture
async def modern() -> AsyncIterator[ConsulEmulator]:
    async with ConsulEmulator(["dc1", "dc2"], version="1.21") as emulator:
        emulator.dc("dc1").agent.register_service(
            {
                "ID": "example_http_service_3000",
                "Name": "example_http_service",
                "Tags": ["node-example_http_service", "example"],
                "Address": "127.0.0.1",
                "Port": 3000,
                # a closed loopback port: the check exists, its status does not matter here
                "Check": {
                    "CheckID": "example_http_service_3000_status",
                    "Name": "example_http_service health status",
                    "HTTP": "http://127.0.0.1:1/service/status",
                    "Interval": "1s",
                },
            }
        )
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    async with http.get(url, timeout=TIMEOUT, headers=headers) as resp:
        text = await resp.text()
        body = json.loads(text) if resp.content_type == "application/json" else text
        return resp.status, dict(resp.headers), body


def keys(value: Any) -> Any:
    """Only the keys, in order, of every object (``null`` counts as an empty list)."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [(key, keys(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [keys(item) for item in value]
    return None


def consul_headers(headers: dict[str, str]) -> set[str]:
    return {name for name in headers if name.lower().startswith("x-consul-")}


async def test_health_service_matches_the_published_1_21_3_answer(
    modern: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    url = f"{modern.dc('dc1').http_url}/v1/health/service/example_http_service"
    status, headers, body = await get(http, url)
    assert status == PUBLISHED["status"]
    assert shape(body) == shape(PUBLISHED["body"])
    assert consul_headers(headers) == consul_headers(PUBLISHED["headers"])
    for name in (
        "X-Consul-Default-Acl-Policy",
        "X-Consul-Effective-Consistency",
        "X-Consul-Knownleader",
        "X-Consul-Lastcontact",
        "X-Consul-Query-Backend",
    ):
        assert headers[name] == PUBLISHED["headers"][name], name
    entry = body[0]
    assert entry["Node"]["Meta"]["consul-version"] == "1.21.3"
    assert entry["Service"]["TaggedAddresses"] == {
        "lan_ipv4": {"Address": "127.0.0.1", "Port": 3000},
        "wan_ipv4": {"Address": "127.0.0.1", "Port": 3000},
    }
    serf, http_check = entry["Checks"]
    assert (serf["Type"], serf["Interval"], serf["Timeout"]) == ("", "", "")
    assert (http_check["Type"], http_check["Interval"], http_check["Timeout"]) == (
        "http",
        "1s",
        "0s",
    )


async def test_the_legacy_profile_keeps_the_1_0_8_shape(http: aiohttp.ClientSession) -> None:
    async with ConsulEmulator(["dc1"], version={"dc1": "1.0.8"}) as legacy:
        legacy.dc("dc1").agent.register_service({"Name": "web", "Address": "127.0.0.1"})
        _, headers, body = await get(http, f"{legacy.dc('dc1').http_url}/v1/health/service/web")
    service = body[0]["Service"]
    assert "Weights" not in service and "TaggedAddresses" not in service
    assert "Type" not in body[0]["Checks"][0]
    assert "X-Consul-Query-Backend" not in headers
    assert "X-Consul-Default-Acl-Policy" not in headers


async def test_versions_are_chosen_per_datacenter(http: aiohttp.ClientSession) -> None:
    async with ConsulEmulator(["dc1", "dc2"], version={"dc2": "2.x"}) as mixed:
        _, _, self1 = await get(http, f"{mixed.dc('dc1').http_url}/v1/agent/self")
        _, _, self2 = await get(http, f"{mixed.dc('dc2').http_url}/v1/agent/self")
    assert self1["Config"]["Version"] == "1.0.8"
    assert self2["Config"]["Version"] == "2.1.0"


async def test_streaming_answers_lack_last_contact_and_known_leader(
    modern: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    # agent/rpcclient/health/health.go: streaming when index > 0 or cached, not with near;
    # api-docs/features/streaming.mdx: LastContact/KnownLeader are not set
    base = f"{modern.dc('dc1').http_url}/v1/health/service/example_http_service"
    _, first, _ = await get(http, base)
    index = int(first["X-Consul-Index"])
    _, headers, _ = await get(http, f"{base}?index={index - 1}")
    assert headers["X-Consul-Query-Backend"] == "streaming"
    assert "X-Consul-Lastcontact" not in headers and "X-Consul-Knownleader" not in headers
    _, near, _ = await get(http, f"{base}?index={index - 1}&near=_agent")
    assert near["X-Consul-Query-Backend"] == "blocking-query"
    _, catalog, _ = await get(
        http,
        f"{modern.dc('dc1').http_url}/v1/catalog/service/example_http_service?index=1",
    )
    assert catalog["X-Consul-Query-Backend"] == "blocking-query"
    assert catalog["X-Consul-Knownleader"] == "true"


async def test_cached_reads_answer_miss_then_hit_with_age(
    modern: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    # agent/http.go setCacheMeta: X-Cache MISS|HIT, Age on a hit
    for path in ("health/service", "catalog/service"):
        url = f"{modern.dc('dc1').http_url}/v1/{path}/example_http_service?cached"
        _, miss, _ = await get(http, url)
        _, hit, _ = await get(http, url)
        assert miss["X-Cache"] == "MISS" and "Age" not in miss
        assert hit["X-Cache"] == "HIT" and int(hit["Age"]) >= 0
    status, _, text = await get(http, f"{url}&consistent")
    assert (status, text) == (
        400,
        "Cannot specify ?cached with ?consistent, conflicting semantics.",
    )


async def test_catalog_service_and_agent_shapes(
    modern: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    # structs.ServiceNode (as real 1.1x/1.2x answers print it) and api.AgentService
    dc1 = modern.dc("dc1").http_url
    _, _, catalog = await get(http, f"{dc1}/v1/catalog/service/example_http_service")
    assert list(catalog[0]) == [
        "ID",
        "Node",
        "Address",
        "Datacenter",
        "TaggedAddresses",
        "NodeMeta",
        "ServiceKind",
        "ServiceID",
        "ServiceName",
        "ServiceTags",
        "ServiceAddress",
        "ServiceTaggedAddresses",
        "ServiceWeights",
        "ServiceMeta",
        "ServicePort",
        "ServiceSocketPath",
        "ServiceEnableTagOverride",
        "ServiceProxy",
        "ServiceConnect",
        "CreateIndex",
        "ModifyIndex",
    ]
    _, _, services = await get(http, f"{dc1}/v1/agent/services")
    assert list(services["example_http_service_3000"]) == [
        "ID",
        "Service",
        "Tags",
        "Meta",
        "Port",
        "Address",
        "TaggedAddresses",
        "Weights",
        "EnableTagOverride",
        "Datacenter",
    ]
    _, _, checks = await get(http, f"{dc1}/v1/agent/checks")
    check = checks["example_http_service_3000_status"]
    assert (check["Type"], check["Interval"], check["ExposedPort"]) == ("http", "1s", 0)


async def test_weights_and_explicit_tagged_addresses_are_kept(
    modern: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    dc1 = modern.dc("dc1")
    dc1.agent.register_service(
        {
            "Name": "db",
            "Address": "127.0.0.2",
            "Port": 5432,
            "Weights": {"Passing": 10, "Warning": 1},
            "TaggedAddresses": {"wan_ipv4": {"Address": "127.0.0.9", "Port": 15432}},
        }
    )
    _, _, body = await get(http, f"{dc1.http_url}/v1/health/service/db")
    service = body[0]["Service"]
    assert service["Weights"] == {"Passing": 10, "Warning": 1}
    assert service["TaggedAddresses"] == {
        "wan_ipv4": {"Address": "127.0.0.9", "Port": 15432},
        "lan_ipv4": {"Address": "127.0.0.2", "Port": 5432},
    }


@pytest.mark.parametrize(
    ("query", "headers", "message"),
    [
        (
            "ns=default",
            {},
            'Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature',
        ),
        (
            "",
            {"X-Consul-Namespace": "team-a"},
            'Invalid header: "X-Consul-Namespace" - Namespaces are a Consul Enterprise feature',
        ),
        (
            "partition=default",
            {},
            'Invalid query parameter: "partition" - Partitions are a Consul Enterprise feature',
        ),
        (
            "",
            {"X-Consul-Partition": "p1"},
            'Invalid header: "X-Consul-Partition" - Partitions are a Consul Enterprise feature',
        ),
    ],
)
async def test_community_edition_refuses_namespaces_and_partitions(
    modern: ConsulEmulator,
    http: aiohttp.ClientSession,
    query: str,
    headers: dict[str, str],
    message: str,
) -> None:
    # agent/http_ce.go parseEntMeta / parseEntMetaPartition
    dc1 = modern.dc("dc1").http_url
    for path in ("health/service/example_http_service", "catalog/service/x", "agent/services"):
        status, _, text = await get(http, f"{dc1}/v1/{path}?{query}", headers)
        assert (status, text) == (400, message)


async def test_an_empty_namespace_is_no_namespace_and_1_0_8_ignores_them(
    modern: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    status, _, _ = await get(http, f"{modern.dc('dc1').http_url}/v1/agent/services?ns=")
    assert status == 200
    async with ConsulEmulator(["dc1"]) as legacy:
        status, _, _ = await get(http, f"{legacy.dc('dc1').http_url}/v1/agent/services?ns=x")
    assert status == 200


async def test_unknown_paths_answer_the_modern_404_text(
    modern: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    # agent/http.go Index (Fprintln)
    status, headers, text = await get(http, f"{modern.dc('dc1').http_url}/v1/nope")
    assert (status, text) == (404, "Invalid URL path: not a recognized HTTP API endpoint\n")
    assert "X-Consul-Default-Acl-Policy" not in headers


def test_profiles_by_name() -> None:
    assert profile_for("1.0.8") is LEGACY
    assert profile_for("1.21") is MODERN
    assert profile_for("1.22.1").modern and profile_for("2.0.1").modern
    assert profile_for("2.x").http_max_conns_per_client == 200
    assert profile_for(MODERN) is MODERN
    assert isinstance(profile_for("1.21.3"), ConsulProfile)
    with pytest.raises(ValueError, match="unknown Consul version"):
        profile_for("1.9.0")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (1, "1s"), (1.5, "1.5s"), (90, "1m30s"), (0.1, "100ms"), (3600, "1h0m0s")],
)
def test_go_duration_strings(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


async def test_prepared_query_answers_carry_modern_nodes_and_headers(
    modern: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    dc1 = modern.dc("dc1")
    dc1.agent.register_service(
        {
            "Name": "pq",
            "Tags": ["a"],
            "Address": "127.0.0.1",
            "Port": 1,
            "Check": {"CheckID": "pq-ttl", "TTL": "10m", "Status": "passing"},
        }
    )
    definition = {"Name": "pq", "Service": {"Service": "pq"}}
    async with http.post(f"{dc1.http_url}/v1/query", json=definition, timeout=TIMEOUT) as resp:
        assert resp.status == 200
    status, headers, result = await get(http, f"{dc1.http_url}/v1/query/pq/execute")
    assert status == 200 and len(result["Nodes"]) == 1
    _, _, health = await get(http, f"{dc1.http_url}/v1/health/service/pq")
    # the same modern entries (execute leaves empty tag lists null: compare the keys)
    assert keys(result["Nodes"]) == keys(health)
    assert result["Nodes"][0]["Service"]["Weights"] == {"Passing": 1, "Warning": 1}
    assert headers["X-Consul-Query-Backend"] == "blocking-query"
    assert headers["X-Consul-Default-Acl-Policy"] == "allow"
    assert headers["X-Consul-Index"] != "0"  # agent/http.go setIndex
