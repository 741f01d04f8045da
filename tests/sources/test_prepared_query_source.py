"""Stage 3 against the emulator: prepared query execution with failover to dc2."""

from __future__ import annotations

import asyncio

import pytest

from mcresolve.sources import PreparedQuerySource, Resolution, from_target
from mcresolve.sources.target import PreparedQueryTarget, parse_target
from mcresolve.timing import jittered
from support import Cluster

from .conftest import DC1, SERVICE
from .helpers import define_query, next_matching


@pytest.fixture(params=["1.0.8", "1.21"])
def consul_version(request: pytest.FixtureRequest) -> str:
    """Every test here runs against the recorded 1.0.8 and the modern 1.21 emulator."""
    return str(request.param)


#: Long periodic refresh: every reaction below must come from the health watch or refresh_now.
SLOW = "refresh=5m"


def ports(resolution: Resolution) -> set[int]:
    return {e.port for e in resolution.endpoints}


def query_source(cluster: Cluster, options: str = SLOW) -> PreparedQuerySource:
    target = parse_target(f"consul+query://{SERVICE}?{options}")
    assert isinstance(target, PreparedQueryTarget)
    return PreparedQuerySource(target, cluster.dc1, cluster.registry)


def test_jitter_stays_within_twenty_percent() -> None:
    assert jittered(10.0, 0.0) == 8.0
    assert jittered(10.0, 0.5) == 10.0
    assert 11.99 < jittered(10.0, 0.9999999) < 12.0


async def test_query_resolves_with_the_answering_datacenter(cluster: Cluster) -> None:
    await define_query(cluster)
    async with from_target(f"{SERVICE}.query.consul", registry=cluster.registry) as source:
        resolution = await next_matching(source, lambda r: bool(r.endpoints))
    # the query's answer; warm standby endpoints of dc2 (on by default) may follow it
    answer = [e for e in resolution.endpoints if e.datacenter == "dc1"]
    assert {e.port for e in answer} == {9001, 9002, 9003, 9004}
    assert resolution.datacenter == "dc1" and resolution.ok
    assert {e.datacenter for e in resolution.endpoints} <= {"dc1", "dc2"}
    assert {e.service_id for e in answer} == {i for i, _, t in DC1 if "minio" in t}


async def test_critical_check_removes_the_endpoint_at_once(cluster: Cluster) -> None:
    await define_query(cluster)
    source = query_source(cluster)
    async with source:
        await next_matching(source, lambda r: ports(r) == {9001, 9002, 9003, 9004})
        cluster.consul.dc("dc1").set_check_status("minio-dc1-b-ttl", "critical")
        removed = await next_matching(source, lambda r: 9002 not in ports(r))
        assert ports(removed) == {9001, 9003, 9004}


async def test_all_local_critical_fails_over_to_dc2_and_back(cluster: Cluster) -> None:
    await define_query(cluster)
    dc1 = cluster.consul.dc("dc1")
    source = query_source(cluster)
    async with source:
        await next_matching(source, lambda r: r.datacenter == "dc1" and bool(r.endpoints))
        for service_id, _, tags in DC1:
            if "minio" in tags:
                dc1.set_check_status(f"{service_id}-ttl", "critical")
        failed_over = await next_matching(source, lambda r: r.datacenter == "dc2")
        assert ports(failed_over) == {9101, 9102}
        assert {e.datacenter for e in failed_over.endpoints} == {"dc2"}
        dc1.set_check_status("minio-dc1-a-ttl", "passing")
        back = await next_matching(source, lambda r: r.datacenter == "dc1")
        assert ports(back) == {9001}


async def test_remote_instances_are_watched_after_failover(cluster: Cluster) -> None:
    await define_query(cluster)
    dc1 = cluster.consul.dc("dc1")
    for service_id, _, tags in DC1:
        if "minio" in tags:
            dc1.set_check_status(f"{service_id}-ttl", "critical")
    source = query_source(cluster)
    async with source:
        await next_matching(source, lambda r: ports(r) == {9101, 9102})
        cluster.consul.dc("dc2").set_check_status("minio-dc2-a-ttl", "critical")
        shrunk = await next_matching(source, lambda r: ports(r) == {9102})
        assert shrunk.datacenter == "dc2"


async def test_refresh_now_re_executes(cluster: Cluster) -> None:
    await define_query(cluster)
    target = parse_target(f"consul+query://{SERVICE}?{SLOW}")
    assert isinstance(target, PreparedQueryTarget)
    source = PreparedQuerySource(target, cluster.dc1, registry=None)  # no health watch
    async with source:
        await next_matching(source, lambda r: bool(r.endpoints))
        before = source.executions
        await cluster.dc1.agent_service_deregister("minio-dc1-d")
        source.refresh_now()
        after = await next_matching(source, lambda r: 9004 not in ports(r))
        assert ports(after) == {9001, 9002, 9003}
        assert source.executions == before + 1


async def test_limit_is_sent(cluster: Cluster) -> None:
    await define_query(cluster)
    async with query_source(cluster, f"{SLOW}&limit=2") as source:
        resolution = await next_matching(source, lambda r: bool(r.endpoints))
    assert len(resolution.endpoints) == 2


async def test_unknown_query_is_an_error(cluster: Cluster) -> None:
    async with query_source(cluster) as source:
        async with asyncio.timeout(10):
            resolution = await source.wait_ready()
    assert resolution.error is not None and "Query not found" in str(resolution.error)


async def test_agent_down_keeps_last_known_good_and_recovers(cluster: Cluster) -> None:
    await define_query(cluster)
    target = f"consul+query://{SERVICE}?{SLOW}"
    async with from_target(target, registry=cluster.registry) as source:
        good = await next_matching(source, lambda r: len(r.endpoints) == 4)
        await cluster.consul.stop_agent("dc1")
        stale = await next_matching(source, lambda r: r.error is not None)
        assert stale.endpoints == good.endpoints and stale.stale
        await cluster.consul.start_agent("dc1")
        back = await next_matching(source, lambda r: r.ok)
        # the query's answer; warm standby endpoints of dc2 (on by default) may follow it
        assert len([e for e in back.endpoints if e.datacenter == "dc1"]) == 4
