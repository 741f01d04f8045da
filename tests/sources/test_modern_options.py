"""Stage 2 options of today's Consul: ``filter=``, ``node-meta`` sent as a filter on agents that
have one, ``peer=``, and the refusals on 1.0.8 (which would ignore them and answer unfiltered)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.features import UnsupportedByAgent
from mcresolve.consul.watch import WatchRegistry
from mcresolve.sources import Resolution, from_target
from mcresolve.sources.health import health_spec
from mcresolve.sources.target import parse_target
from mcresolve.testing.consul import ConsulEmulator
from support import FAST_WATCH

from .helpers import next_matching

SERVICE = "api"
# (id, port, Meta.version)
INSTANCES = [("api-a", 9301, "1"), ("api-b", 9302, "2"), ("api-c", 9303, "2")]


@pytest.fixture(params=["1.0.8", "1.21"])
def consul_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def bed(consul_version: str) -> AsyncIterator[tuple[ConsulEmulator, WatchRegistry]]:
    async with ConsulEmulator(["dc1"], version=consul_version) as consul:
        client = ConsulClient(
            ConsulConfig.for_addresses(
                consul.dc("dc1").http_url, connect_timeout=0.5, request_timeout=2.0
            )
        )
        registry = WatchRegistry(client, FAST_WATCH)
        try:
            for service_id, port, version in INSTANCES:
                await client.agent_service_register(
                    {
                        "Name": SERVICE,
                        "ID": service_id,
                        "Port": port,
                        "Address": "127.0.0.1",
                        "Meta": {"version": version},
                        "Check": {"TTL": "15m", "Status": "passing"},
                    }
                )
            yield consul, registry
        finally:
            await registry.aclose()
            await client.aclose()


def ports(resolution: Resolution) -> set[int]:
    return {e.port for e in resolution.endpoints}


FILTER = "consul://api?filter=Service.Meta.version%20%3D%3D%20%222%22"


async def test_filter_selects_on_modern_agents_and_is_refused_by_1_0_8(
    bed: tuple[ConsulEmulator, WatchRegistry], consul_version: str
) -> None:
    _, registry = bed
    async with from_target(FILTER, registry=registry) as source:
        resolution = await next_matching(source, lambda r: bool(r.endpoints) or r.error is not None)
    if consul_version == "1.0.8":
        # 1.0.8 ignores filter= and would answer all three: never sent, an error instead.
        assert isinstance(resolution.error, UnsupportedByAgent)
        assert "1.0.8" in str(resolution.error) and not resolution.endpoints
    else:
        assert resolution.error is None
        assert ports(resolution) == {9302, 9303}


async def test_the_1_0_8_emulator_ignores_filter_like_the_real_agent(
    bed: tuple[ConsulEmulator, WatchRegistry], consul_version: str
) -> None:
    """Why the library must not send it: the raw parameter widens nothing on modern agents and
    is silently ignored by 1.0.8 (all instances come back)."""
    consul, _ = bed
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{consul.dc('dc1').http_url}/v1/health/service/api",
            params={"filter": 'Service.Meta.version == "2"'},
        ) as answer,
    ):
        body = await answer.json()
    expected = 3 if consul_version == "1.0.8" else 2
    assert answer.status == 200 and len(body) == expected


async def test_a_filter_is_part_of_the_watch_key(
    bed: tuple[ConsulEmulator, WatchRegistry], consul_version: str
) -> None:
    _, registry = bed
    plain = health_spec(parse_target("consul://api"))  # type: ignore[arg-type]
    filtered = health_spec(parse_target(FILTER))  # type: ignore[arg-type]
    again = health_spec(parse_target(FILTER))  # type: ignore[arg-type]
    assert plain != filtered and filtered == again and hash(filtered) == hash(again)
    if consul_version == "1.0.8":
        return
    async with (
        from_target("consul://api", registry=registry) as all_of_them,
        from_target(FILTER, registry=registry) as version_two,
    ):
        every = await next_matching(all_of_them, lambda r: len(r.endpoints) == 3)
        two = await next_matching(version_two, lambda r: bool(r.endpoints))
        assert ports(every) == {9301, 9302, 9303} and ports(two) == {9302, 9303}
        assert len(registry.watches()) == 2


@pytest.mark.parametrize("form", ["consul://api?peer=east", "api.service.east.peer.consul", "dns"])
async def test_peer_is_refused_by_1_0_8_and_reads_the_peer_on_modern(
    consul_version: str, form: str
) -> None:
    async with ConsulEmulator(["dc1", "dc2"], version=consul_version) as consul:
        client = ConsulClient(
            ConsulConfig.for_addresses(
                consul.dc("dc1").http_url, connect_timeout=0.5, request_timeout=2.0
            )
        )
        remote = ConsulClient(
            ConsulConfig.for_addresses(
                consul.dc("dc2").http_url, connect_timeout=0.5, request_timeout=2.0
            )
        )
        registry = WatchRegistry(client, FAST_WATCH)
        try:
            await remote.agent_service_register(
                {
                    "Name": SERVICE,
                    "ID": "api-east",
                    "Port": 9401,
                    "Address": "127.0.0.1",
                    "Check": {"TTL": "15m", "Status": "passing"},
                }
            )
            if consul_version != "1.0.8":
                consul.peer("dc1", "dc2", name="east", services=[SERVICE])
            if form == "dns":
                if consul_version == "1.0.8":
                    return  # 1.0.8's DNS has no .peer. label
                port = consul.dc("dc1").dns_port
                form = f"dns://api.service.east.peer.consul?server=127.0.0.1:{port}"
            async with from_target(form, registry=registry) as source:
                resolution = await next_matching(
                    source, lambda r: bool(r.endpoints) or r.error is not None
                )
        finally:
            await registry.aclose()
            await client.aclose()
            await remote.aclose()
    if consul_version == "1.0.8":
        assert isinstance(resolution.error, UnsupportedByAgent)
    else:
        assert resolution.error is None and ports(resolution) == {9401}


async def test_streaming_answers_without_leader_headers_are_not_stale(
    bed: tuple[ConsulEmulator, WatchRegistry], consul_version: str
) -> None:
    """A modern agent answers blocking health reads from its streaming backend, without
    X-Consul-LastContact / X-Consul-KnownLeader: read as unknown (None), never as stale."""
    consul, registry = bed
    async with from_target("consul://api", registry=registry) as source:
        await next_matching(source, lambda r: len(r.endpoints) == 3)
        consul.dc("dc1").set_check_status("service:api-a", "critical", "down")
        changed = await next_matching(source, lambda r: len(r.endpoints) == 2)
        (watch,) = registry.watches().values()
        latest = watch.latest
        assert latest is not None
    assert not changed.stale and changed.error is None
    if consul_version == "1.0.8":
        assert latest.meta.known_leader is True and latest.meta.last_contact_ms == 0
    else:  # the change came through a blocking (index > 0) read: streaming
        assert latest.meta.known_leader is None and latest.meta.last_contact_ms is None
