"""Stage 2 against the emulator: a shared blocking watch on /v1/health/service/<name>?passing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.watch import SharedWatchRegistries
from mcresolve.sources import Resolution, from_target
from mcresolve.sources.composite import ResilientSource
from mcresolve.sources.health import HealthSource
from mcresolve.sources.snapshot import load_snapshot
from mcresolve.sources.target import HealthTarget, parse_target
from support import FAST_WATCH, Cluster

from .conftest import SERVICE
from .helpers import define_query, next_matching


@pytest.fixture(params=["1.0.8", "1.21"])
def consul_version(request: pytest.FixtureRequest) -> str:
    """Every test here runs against the recorded 1.0.8 and the modern 1.21 emulator."""
    return str(request.param)


def ports(resolution: Resolution) -> set[int]:
    return {e.port for e in resolution.endpoints}


async def test_health_source_resolves_passing_tagged_instances(cluster: Cluster) -> None:
    async with from_target(f"consul://{SERVICE}?tag=minio", registry=cluster.registry) as source:
        async with asyncio.timeout(10):
            resolution = await source.wait_ready()
    assert ports(resolution) == {9001, 9002, 9003, 9004}
    assert resolution.ok and resolution.datacenter == "dc1"
    first = min(resolution.endpoints, key=lambda e: e.port)
    assert (first.service_id, first.node, first.datacenter) == ("minio-dc1-a", "n1", "dc1")
    assert "primary" in first.tags


async def test_other_datacenter_and_plain_service_name(cluster: Cluster) -> None:
    target = f"minio.{SERVICE}.service.dc2.consul"
    async with from_target(target, registry=cluster.registry) as source:
        resolution = await next_matching(source, lambda r: bool(r.endpoints))
    assert ports(resolution) == {9101, 9102}
    assert {e.datacenter for e in resolution.endpoints} == {"dc2"}
    assert resolution.datacenter == "dc2"


async def test_critical_check_removes_the_endpoint_and_passing_restores_it(
    cluster: Cluster,
) -> None:
    async with from_target(f"consul://{SERVICE}?tag=minio", registry=cluster.registry) as source:
        await next_matching(source, lambda r: 9002 in ports(r))
        cluster.consul.dc("dc1").set_check_status("minio-dc1-b-ttl", "critical", "disk failed")
        removed = await next_matching(source, lambda r: 9002 not in ports(r))
        assert ports(removed) == {9001, 9003, 9004}
        assert removed.ok
        await cluster.dc1.agent_check_pass("minio-dc1-b-ttl")
        restored = await next_matching(source, lambda r: 9002 in ports(r))
        assert ports(restored) == {9001, 9002, 9003, 9004}


async def test_sources_share_one_watch(cluster: Cluster) -> None:
    target = parse_target(f"consul://{SERVICE}?tag=minio")
    assert isinstance(target, HealthTarget)
    sources = [HealthSource(target, cluster.registry) for _ in range(5)]
    for source in sources:
        await source.start()
    try:
        async with asyncio.timeout(10):
            for source in sources:
                await source.wait_ready()
        assert len(cluster.registry.watches()) == 1
    finally:
        for source in sources:
            await source.aclose()
    assert cluster.registry.watches() == {}


async def test_agent_down_keeps_last_known_good_and_recovers(cluster: Cluster) -> None:
    async with from_target(f"consul://{SERVICE}?tag=minio", registry=cluster.registry) as source:
        good = await next_matching(source, lambda r: len(r.endpoints) == 4)
        await cluster.consul.stop_agent("dc1")
        stale = await next_matching(source, lambda r: r.error is not None)
        assert stale.endpoints == good.endpoints
        assert stale.stale and not stale.fallback
        assert stale.resolved_at == good.resolved_at  # the age keeps growing
        await cluster.consul.start_agent("dc1")
        back = await next_matching(source, lambda r: r.ok)
        assert ports(back) == {9001, 9002, 9003, 9004}


async def test_fallback_to_static_when_consul_is_down_at_start(cluster: Cluster) -> None:
    await cluster.consul.stop_agent("dc1")
    target = f"consul://{SERVICE}?tag=minio&fallback=static://10.9.9.9:9000"
    async with from_target(target, registry=cluster.registry) as source:
        engaged = await next_matching(source, lambda r: r.fallback)
        assert [e.host_port for e in engaged.endpoints] == ["10.9.9.9:9000"]
        assert engaged.error is not None
        await cluster.consul.start_agent("dc1")
        back = await next_matching(source, lambda r: r.ok)
        assert ports(back) == {9001, 9002, 9003, 9004} and not back.fallback
        assert isinstance(source, ResilientSource) and source.fallback_source is None


async def test_warm_start_from_snapshot_while_agent_is_down(
    cluster: Cluster, tmp_path: Path
) -> None:
    snapshot = tmp_path / "minio.json"
    target = f"consul://{SERVICE}?tag=minio&snapshot={snapshot}"
    async with from_target(target, registry=cluster.registry) as source:
        await next_matching(source, lambda r: len(r.endpoints) == 4 and r.ok)
    saved = load_snapshot(snapshot)
    assert saved is not None and ports(saved) == {9001, 9002, 9003, 9004}

    await cluster.consul.stop_agent("dc1")
    async with from_target(target, registry=cluster.registry) as source:
        warm = source.current  # published at start, before any answer
        assert warm is not None and ports(warm) == {9001, 9002, 9003, 9004}
        assert warm.stale and warm.source == f"snapshot:{snapshot}"
        failing = await next_matching(source, lambda r: r.error is not None)
        assert ports(failing) == {9001, 9002, 9003, 9004} and not failing.fallback
        await cluster.consul.start_agent("dc1")
        await next_matching(source, lambda r: r.ok)


async def test_all_instances_critical_is_held_as_suspect_then_accepted(cluster: Cluster) -> None:
    target = f"consul://{SERVICE}?tag=v2&empty-hold=300ms&empty-confirm=100"
    async with from_target(target, registry=cluster.registry) as source:
        await next_matching(source, lambda r: ports(r) == {9003})
        cluster.consul.dc("dc1").set_check_status("minio-dc1-c-ttl", "critical")
        held = await next_matching(source, lambda r: r.suspect_empty)
        assert ports(held) == {9003} and held.stale
        emptied = await next_matching(source, lambda r: not r.endpoints)
        assert emptied.ok


async def test_factory_creates_and_closes_its_own_client_for_an_agent_target(
    cluster: Cluster,
) -> None:
    address = cluster.consul.dc("dc2").http_url.removeprefix("http://")
    source = from_target(f"consul://{address}/{SERVICE}", consul=ConsulConfig())
    async with source:
        resolution = await next_matching(source, lambda r: bool(r.endpoints))
    assert ports(resolution) == {9101, 9102}


async def test_factory_with_a_client(cluster: Cluster) -> None:
    client = ConsulClient(ConsulConfig.for_addresses(cluster.consul.dc("dc1").http_url))
    try:
        async with from_target(f"{SERVICE}.service.consul", consul=client) as source:
            resolution = await next_matching(source, lambda r: bool(r.endpoints))
        assert ports(resolution) == {9001, 9002, 9003, 9004, 9005}
        # the client passed in is still usable
        answer = await client.health_service(SERVICE)
        assert len(answer.value) == 5
    finally:
        await client.aclose()


async def test_factory_sources_share_the_process_wide_watch_and_release_it(
    cluster: Cluster,
) -> None:
    """Without ``registry=``, stage 2 sources and a stage 3 source's local health watch on the
    same service share one watch (a lease each on one registry); the last stop closes it."""
    await define_query(cluster)
    shared = SharedWatchRegistries(FAST_WATCH)
    config = ConsulConfig.for_addresses(cluster.consul.dc("dc1").http_url)
    targets = [f"consul://{SERVICE}", f"{SERVICE}.service.consul", f"{SERVICE}.query.consul"]
    sources = [from_target(t, consul=config, shared=shared) for t in targets]
    try:
        for source in sources:
            await source.start()
            await next_matching(source, lambda r: bool(r.endpoints))
        registry = shared.registry_for(config)
        assert registry is not None
        (watch,) = registry.watches().values()  # ?passing on the service in the local dc
        assert watch.subscriber_count == 3
        await sources[0].aclose()
        assert watch.subscriber_count == 2 and shared.registry_for(config) is registry
    finally:
        for source in sources:
            await source.aclose()
    assert shared.active() == {} and not watch.running
