"""``?filter=`` on the modern profile's read endpoints (api-docs/health.mdx, catalog.mdx,
agent/service.mdx list the selectors), its error answer, and 1.0.8 ignoring it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.testing.consul import ConsulEmulator

TIMEOUT = aiohttp.ClientTimeout(total=30)


def _register(emulator: ConsulEmulator) -> None:
    for dc in ("dc1", "dc2"):
        agent = emulator.dc(dc).agent
        agent.register_service(
            {
                "ID": "store-a",
                "Name": "store",
                "Tags": ["primary", "v2"],
                "Address": "127.0.0.1",
                "Port": 9001,
                "Meta": {"version": "2"},
                "Check": {"CheckID": "store-a-ttl", "TTL": "10m", "Status": "passing"},
            }
        )
        agent.register_service(
            {
                "ID": "store-b",
                "Name": "store",
                "Tags": ["secondary"],
                "Address": "127.0.0.2",
                "Port": 9002,
                "Meta": {"version": "1"},
                "Check": {"CheckID": "store-b-ttl", "TTL": "10m", "Status": "critical"},
            }
        )


@pytest.fixture
async def consul() -> AsyncIterator[ConsulEmulator]:
    async with ConsulEmulator(["dc1", "dc2"], version="1.21") as emulator:
        _register(emulator)
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], Any]:
    async with http.get(url, timeout=TIMEOUT) as resp:
        text = await resp.text()
        body = json.loads(text) if resp.content_type == "application/json" else text
        return resp.status, dict(resp.headers), body


def f(expression: str) -> str:
    return "filter=" + quote(expression)


@pytest.mark.parametrize(
    ("expression", "ids"),
    [
        ('Service.Meta.version == "2"', ["store-a"]),
        ('"primary" in Service.Tags', ["store-a"]),
        ('Service.Tags contains "secondary"', ["store-b"]),
        ("Service.Port != 9001", ["store-b"]),
        ('Node.Meta["consul-version"] == "1.21.3"', ["store-a", "store-b"]),
        ('Checks.Status == "critical"', ["store-b"]),
        ('Service.ID matches "-a$" or Service.Address == "127.0.0.2"', ["store-a", "store-b"]),
        ('not (Service.Meta.version == "2") and Service.Meta is not empty', ["store-b"]),
        ('Service.Meta.absent == "x"', []),
    ],
)
async def test_health_service_filter(
    consul: ConsulEmulator, http: aiohttp.ClientSession, expression: str, ids: list[str]
) -> None:
    for dc in ("", "&dc=dc2"):
        url = f"{consul.dc('dc1').http_url}/v1/health/service/store?{f(expression)}{dc}"
        status, _, body = await get(http, url)
        assert status == 200
        assert [e["Service"]["ID"] for e in body] == ids


async def test_filter_and_passing_combine(
    consul: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    url = f"{consul.dc('dc1').http_url}/v1/health/service/store?passing&{f('Service.Port > 1')}"
    status, _, text = await get(http, url)
    assert status == 500 and text.startswith("Failed to create")  # ">" is no bexpr operator
    url = f"{consul.dc('dc1').http_url}/v1/health/service/store?passing&{f('v2 in Service.Tags')}"
    _, _, body = await get(http, url)
    assert [e["Service"]["ID"] for e in body] == ["store-a"]


async def test_catalog_agent_and_check_filters(
    consul: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    base = consul.dc("dc1").http_url
    _, _, catalog = await get(
        http, f"{base}/v1/catalog/service/store?{f('ServiceMeta.version == 1')}"
    )
    assert [e["ServiceID"] for e in catalog] == ["store-b"]
    _, _, services = await get(http, f"{base}/v1/catalog/services?{f('ServiceName == store')}")
    assert services == {"store": ["primary", "v2", "secondary"]}
    _, _, services = await get(http, f"{base}/v1/catalog/services?{f('ServiceTags is empty')}")
    assert services == {"consul": []}
    _, _, agent = await get(http, f"{base}/v1/agent/services?{f('Meta.version == 2')}")
    assert list(agent) == ["store-a"]
    _, _, checks = await get(http, f"{base}/v1/health/checks/store?{f('Status == passing')}")
    assert [c["CheckID"] for c in checks] == ["store-a-ttl"]
    by_service = f("ServiceID == `store-b`")
    _, _, agent_checks = await get(http, f"{base}/v1/agent/checks?{by_service}")
    assert list(agent_checks) == ["store-b-ttl"]


async def test_an_invalid_filter_is_a_500_with_go_bexpr_text(
    consul: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    # hashicorp/consul#7338 (agent endpoint) and #9441 (forwarded RPC: "rpc error making call")
    base = consul.dc("dc1").http_url
    expected = (
        "Failed to create boolean expression evaluator: 1:4 (3): no match found, expected: "
        '"!=", ".", "==", "[", [ \\t\\r\\n] or [a-zA-Z0-9_]'
    )
    status, headers, text = await get(http, f"{base}/v1/agent/services?filter=foo")
    assert (status, text) == (500, expected)
    assert "X-Consul-Index" not in headers
    status, headers, text = await get(http, f"{base}/v1/health/service/store?filter=foo")
    assert (status, text) == (500, expected)
    assert headers["X-Consul-Index"] == "1" and headers["X-Consul-Knownleader"] == "false"
    status, _, text = await get(http, f"{base}/v1/health/service/store?filter=foo&dc=dc2")
    assert (status, text) == (500, "rpc error making call: " + expected)


async def test_the_1_0_8_profile_ignores_filter(http: aiohttp.ClientSession) -> None:
    async with ConsulEmulator(["dc1", "dc2"]) as legacy:
        _register(legacy)
        url = f"{legacy.dc('dc1').http_url}/v1/health/service/store?filter=foo"
        status, _, body = await get(http, url)
    assert status == 200 and len(body) == 2


@settings(max_examples=5, deadline=None)
@given(st.lists(st.text(max_size=30), min_size=20, max_size=20))
def test_hostile_filters_answer_200_or_the_documented_500(expressions: list[str]) -> None:
    """Any text as ``filter=`` gets a 200 list or Consul's 500 with go-bexpr's message, never
    another status, a dropped connection or a stuck agent."""

    async def run() -> None:
        async with ConsulEmulator(["dc1"], version="1.21") as emulator:
            emulator.dc("dc1").agent.register_service(
                {"Name": "store", "Tags": ["a"], "Meta": {"version": "2"}, "Port": 1}
            )
            async with aiohttp.ClientSession() as http:
                for expression in expressions:
                    url = f"{emulator.dc('dc1').http_url}/v1/health/service/store?{f(expression)}"
                    status, _, body = await get(http, url)
                    if status == 200:
                        assert isinstance(body, list)
                    else:
                        assert status == 500, (expression, status, body)
                        assert body.startswith("Failed to create boolean expression evaluator: ")

    asyncio.run(run())
