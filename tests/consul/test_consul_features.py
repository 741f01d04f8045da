"""Which parameters a health read sends, decided from the agent's Consul version.

The parameter test runs a tiny HTTP agent on loopback that records each query string (the
emulator answers correctly either way, so only a recording shows *what* was sent)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.features import (
    AgentFeatures,
    UnsupportedByAgent,
    health_filter,
    parse_version,
    quote,
)
from mcresolve.testing.consul import bexpr


class RecordingAgent:
    def __init__(self, version: object) -> None:
        self.version = version
        self.queries: list[list[tuple[str, str]]] = []
        self.self_reads = 0

    async def agent_self(self, request: web.Request) -> web.Response:
        self.self_reads += 1
        return web.json_response({"Config": {"Version": self.version, "Datacenter": "dc1"}})

    async def health(self, request: web.Request) -> web.Response:
        self.queries.append(list(request.query.items()))
        return web.Response(
            text=json.dumps([]),
            content_type="application/json",
            headers={"X-Consul-Index": "7"},
        )


@pytest.fixture
async def agent(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[RecordingAgent, ConsulClient]]:
    recorder = RecordingAgent(getattr(request, "param", "1.21.3"))
    app = web.Application()
    app.router.add_get("/v1/agent/self", lambda r: recorder.agent_self(r))
    app.router.add_get("/v1/health/service/{name}", recorder.health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = ConsulClient(ConsulConfig.for_addresses(f"127.0.0.1:{port}", request_timeout=2.0))
    try:
        yield recorder, client
    finally:
        await client.aclose()
        await runner.cleanup()


@pytest.mark.parametrize("agent", ["1.21.3"], indirect=True)
async def test_modern_agent_gets_node_meta_inside_filter(
    agent: tuple[RecordingAgent, ConsulClient],
) -> None:
    recorder, client = agent
    await client.health_service(
        "api", passing=True, tags=["minio"], node_meta={"rack": "r1"}, filter="Service.Port > 1"
    )
    await client.health_service("api", node_meta={"rack": "r2"})
    first, second = recorder.queries
    assert ("node-meta", "rack:r1") not in first and ("tag", "minio") in first
    assert dict(first)["filter"] == 'Node.Meta["rack"] == "r1" and (Service.Port > 1)'
    assert dict(second)["filter"] == 'Node.Meta["rack"] == "r2"'
    assert recorder.self_reads == 1  # the version is read once per client


@pytest.mark.parametrize("agent", ["1.0.8", None, "nonsense"], indirect=True)
async def test_old_or_unknown_agents_get_plain_parameters_and_no_filter(
    agent: tuple[RecordingAgent, ConsulClient],
) -> None:
    recorder, client = agent
    await client.health_service("api", tags=["minio"], node_meta={"rack": "r1"})
    assert ("node-meta", "rack:r1") in recorder.queries[0]
    assert "filter" not in dict(recorder.queries[0])
    for option in ({"filter": "Service.Port > 1"}, {"peer": "east"}):
        with pytest.raises(UnsupportedByAgent):
            await client.health_service("api", **option)  # type: ignore[arg-type]
    assert len(recorder.queries) == 1  # nothing was sent for the refused reads


async def test_nothing_modern_is_sent_unless_set(
    agent: tuple[RecordingAgent, ConsulClient],
) -> None:
    recorder, client = agent
    await client.health_service("api", passing=True)
    assert recorder.queries == [[("passing", "1")]]
    assert recorder.self_reads == 0  # no version read when nothing depends on it
    await client.health_service("api", peer="east", ns="team", partition="p1")
    assert [(k, v) for k, v in recorder.queries[1]] == [
        ("peer", "east"),
        ("ns", "team"),
        ("partition", "p1"),
    ]


def test_versions() -> None:
    assert parse_version("1.21.3+ent") == (1, 21, 3)
    assert parse_version("v2.1.0-rc1") == (2, 1, 0)
    assert parse_version("1.0") == (1, 0, 0)
    assert parse_version(None) is None and parse_version("dev") is None
    assert not AgentFeatures(parse_version("1.4.9")).filter
    assert AgentFeatures(parse_version("1.5.0")).filter
    assert not AgentFeatures(parse_version("1.12.9")).peer
    assert AgentFeatures(parse_version("1.14.0")).peer
    assert AgentFeatures.from_agent_self({"Config": "x"}).version is None


@given(st.text(max_size=40), st.text(min_size=1, max_size=20))
def test_quoted_node_meta_matches_exactly_that_value(value: str, key: str) -> None:
    """Hostile values stay one string literal: the expression parses (with the go-bexpr
    grammar of the emulator) and matches the node with exactly that meta value."""
    expression = health_filter({key: value}, None)
    assert expression is not None
    parsed = bexpr.parse(expression)
    assert bexpr.evaluate(parsed, {"Node": {"Meta": {key: value}}})
    assert not bexpr.evaluate(parsed, {"Node": {"Meta": {key: value + "x"}}})


def test_quote_escapes() -> None:
    assert quote('a"b\\c\n') == '"a\\"b\\\\c\\n"'


async def test_a_token_without_agent_read_keeps_node_meta_and_refuses_filter(
    agent: tuple[RecordingAgent, ConsulClient],
) -> None:
    """``/v1/agent/self`` needs ``agent:read``: a 403 there is an unknown version, cached."""
    recorder, client = agent

    async def forbidden(request: web.Request) -> web.Response:
        recorder.self_reads += 1
        return web.Response(status=403, text="Permission denied")

    recorder.agent_self = forbidden  # type: ignore[method-assign]
    await client.health_service("api", node_meta={"rack": "r1"})
    assert ("node-meta", "rack:r1") in recorder.queries[0]
    with pytest.raises(UnsupportedByAgent, match="answered 403"):
        await client.health_service("api", filter="Service.Port > 1")
    assert recorder.self_reads == 1 and len(recorder.queries) == 1
