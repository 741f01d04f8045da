"""Stage 1 against the emulator's DNS server (UDP and TCP on one port, UDP capped at 3)."""

from __future__ import annotations

import asyncio

import pytest

from mcresolve.sources import DnsCache, DnsSource, Resolution, from_target
from mcresolve.sources.dns import consul_target_location, decode_addr_label
from mcresolve.sources.target import DnsTarget, parse_target
from support import Cluster

from .conftest import DC1, SERVICE
from .helpers import define_query, next_matching


@pytest.fixture(params=["1.0.8", "1.21"])
def consul_version(request: pytest.FixtureRequest) -> str:
    """Every test here runs against the recorded 1.0.8 and the modern 1.21 emulator."""
    return str(request.param)


def ports(resolution: Resolution) -> set[int]:
    return {e.port for e in resolution.endpoints}


def dns_target(cluster: Cluster, name: str, options: str = "") -> DnsTarget:
    target = parse_target(f"dns://{name}?server={cluster.dns_server}&timeout=500ms{options}")
    assert isinstance(target, DnsTarget)
    return target


def test_consul_target_names() -> None:
    assert consul_target_location("n1.node.dc1.consul.") == ("n1", "dc1")
    assert consul_target_location("7f000001.addr.dc2.consul.") == ("", "dc2")
    assert consul_target_location("minio.example.com.") == ("", "")
    assert decode_addr_label("7f000001") == "127.0.0.1"
    assert decode_addr_label("00000000000000000000000000000001") == "::1"
    assert decode_addr_label("zz") is None
    assert decode_addr_label("7f00") is None


async def test_srv_goes_over_tcp_and_gets_every_instance(cluster: Cluster) -> None:
    source = DnsSource(dns_target(cluster, f"{SERVICE}.service.consul"))
    async with source:
        async with asyncio.timeout(10):
            resolution = await source.wait_ready()
    assert ports(resolution) == {9001, 9002, 9003, 9004, 9005}
    assert {(e.node, e.datacenter) for e in resolution.endpoints} == {("n1", "dc1")}
    assert resolution.ok and resolution.datacenter == "dc1"
    assert source.queries == {"udp": 0, "tcp": 1}


async def test_udp_only_gets_the_capped_subset(cluster: Cluster) -> None:
    source = DnsSource(dns_target(cluster, f"{SERVICE}.service.consul", "&transport=udp"))
    async with source:
        async with asyncio.timeout(10):
            resolution = await source.wait_ready()
    # why transport=auto asks SRV over TCP: Consul answers at most 3 records over UDP (1.0.8
    # and today's agents alike: udp_answer_limit stays beside a_record_limit), without TC
    assert 0 < len(resolution.endpoints) <= 3
    assert source.queries == {"udp": 1, "tcp": 0}


async def test_tcp_always(cluster: Cluster) -> None:
    source = DnsSource(dns_target(cluster, f"{SERVICE}.service.consul", "&transport=tcp"))
    async with source:
        async with asyncio.timeout(10):
            resolution = await source.wait_ready()
    assert len(resolution.endpoints) == 5
    assert source.queries == {"udp": 0, "tcp": 1}


async def test_tags_and_dc_in_the_name(cluster: Cluster) -> None:
    source = DnsSource(dns_target(cluster, f"minio.{SERVICE}.service.dc2.consul"))
    async with source:
        async with asyncio.timeout(10):
            resolution = await source.wait_ready()
    assert ports(resolution) == {9101, 9102}
    assert resolution.datacenter == "dc2"


async def test_a_records_stay_on_udp_below_the_cap(cluster: Cluster) -> None:
    target = dns_target(cluster, f"{SERVICE}.service.consul", "&type=a&port=9000")
    source = DnsSource(target)
    async with source:
        async with asyncio.timeout(10):
            await source.wait_ready()
    assert source.queries == {"udp": 1, "tcp": 0}


async def test_a_records_with_the_port_option(cluster: Cluster) -> None:
    target = dns_target(cluster, f"{SERVICE}.service.consul", "&type=a&port=9000")
    async with DnsSource(target) as source:
        async with asyncio.timeout(10):
            resolution = await source.wait_ready()
    assert [e.host_port for e in resolution.endpoints] == ["127.0.0.1:9000"]


async def test_nxdomain_is_an_empty_answer(cluster: Cluster) -> None:
    async with DnsSource(dns_target(cluster, "no-such-service.service.consul")) as source:
        async with asyncio.timeout(10):
            resolution = await source.wait_ready()
    assert resolution.endpoints == () and resolution.ok


async def test_servfail_is_an_error(cluster: Cluster) -> None:
    async with DnsSource(dns_target(cluster, f"{SERVICE}.service.nodc.consul")) as source:
        async with asyncio.timeout(10):
            resolution = await source.wait_ready()
    assert resolution.error is not None and resolution.endpoints == ()


async def test_critical_check_leaves_the_dns_answer(cluster: Cluster) -> None:
    target = dns_target(cluster, f"v2.{SERVICE}.service.consul", "&refresh=50ms&ttl-floor=0")
    async with DnsSource(target) as source:
        await next_matching(source, lambda r: ports(r) == {9003})
        cluster.consul.dc("dc1").set_check_status("minio-dc1-c-ttl", "warning")
        cluster.consul.dc("dc1").set_check_status("minio-dc1-b-ttl", "critical")
    target_all = dns_target(cluster, f"minio.{SERVICE}.service.consul", "&refresh=50ms")
    async with DnsSource(target_all) as source:
        resolution = await next_matching(source, lambda r: bool(r.endpoints))
    # warning instances stay in DNS answers, critical ones leave
    assert ports(resolution) == {9001, 9003, 9004}


async def test_agent_down_keeps_last_known_good_and_recovers(cluster: Cluster) -> None:
    name = f"{SERVICE}.service.consul"
    target = f"dns://{name}?server={cluster.dns_server}&timeout=300ms&refresh=50ms&ttl-floor=0"
    async with from_target(target) as source:
        good = await next_matching(source, lambda r: len(r.endpoints) == 5)
        await cluster.consul.stop_agent("dc1")
        stale = await next_matching(source, lambda r: r.error is not None)
        assert stale.endpoints == good.endpoints and stale.stale
        await cluster.consul.start_agent("dc1")
        back = await next_matching(source, lambda r: r.ok)
        assert len(back.endpoints) == 5


async def test_cache_honours_the_ttl_floor(cluster: Cluster) -> None:
    cache = DnsCache()
    target = dns_target(cluster, f"minio.{SERVICE}.service.dc2.consul", "&ttl-floor=1m")
    first = DnsSource(target, cache=cache)
    answer = await first.resolve()
    assert first.queries["tcp"] == 1
    second = DnsSource(target, cache=cache)  # shares the cache: no query
    assert await second.resolve() == answer
    assert second.queries == {"udp": 0, "tcp": 0}
    assert answer.ttl == 60.0  # Consul's TTL 0 raised to the floor
    await second.resolve(use_cache=False)
    assert second.queries["tcp"] == 1


async def test_refresh_now_bypasses_the_cache(cluster: Cluster) -> None:
    target = dns_target(cluster, f"minio.{SERVICE}.service.dc2.consul", "&ttl-floor=1m")
    source = DnsSource(target)
    async with source:
        await next_matching(source, lambda r: bool(r.endpoints))
        cluster.consul.dc("dc2").set_check_status("minio-dc2-a-ttl", "critical")
        source.refresh_now()
        resolution = await next_matching(source, lambda r: ports(r) == {9102})
    assert resolution.ok


@pytest.mark.parametrize("transport", ["auto", "tcp"])
async def test_query_names_fail_over_like_http(cluster: Cluster, transport: str) -> None:
    # DNS prepared-query names need the emulator's query store; without a query defined,
    # Consul answers NXDOMAIN: an empty, non-error answer.
    target = dns_target(cluster, "no-such-query.query.consul", f"&transport={transport}")
    async with DnsSource(target) as source:
        async with asyncio.timeout(10):
            resolution = await source.wait_ready()
    assert resolution.endpoints == () and resolution.error is None


async def test_query_name_fails_over_to_dc2_when_dc1_is_all_critical_and_back(
    cluster: Cluster,
) -> None:
    """Stage 1 with the article's ``<query>.query.consul``: Consul's DNS executes the prepared
    query (tag minio, failover to dc2), so the answer moves to dc2 and comes back."""
    await define_query(cluster)  # created over the agent's HTTP API
    dc1 = cluster.consul.dc("dc1")
    minio_dc1 = {port for _, port, tags in DC1 if "minio" in tags}
    target = dns_target(cluster, f"{SERVICE}.query.consul", "&refresh=50ms&ttl-floor=0")
    async with DnsSource(target) as source:
        local = await next_matching(source, lambda r: ports(r) == minio_dc1)
        assert {(e.node, e.datacenter) for e in local.endpoints} == {("n1", "dc1")}
        assert local.datacenter == "dc1"
        for service_id, _, _ in DC1:
            dc1.set_check_status(f"{service_id}-ttl", "critical", "down")
        remote = await next_matching(source, lambda r: ports(r) == {9101, 9102})
        assert {(e.node, e.datacenter) for e in remote.endpoints} == {("n2", "dc2")}
        assert remote.datacenter == "dc2" and remote.ok
        dc1.set_check_status("minio-dc1-a-ttl", "passing", "back")
        back = await next_matching(source, lambda r: ports(r) == {9001})
        assert back.datacenter == "dc1" and back.endpoints[0].datacenter == "dc1"
