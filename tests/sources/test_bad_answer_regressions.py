"""One bad answer must not stop a source or freeze its view: the reproductions of what did.

Each test uses only what the sources offered before they were hardened (so it fails, rather than
errors, on the old code): a prepared-query answer with a port out of range, or a body nested too
deep to parse; an SRV record with port 0; a health answer with one bad port in which an
instance also went critical; an SRV TTL of 2147483647 s. After each, a good answer must be
published by the source itself, without ``refresh_now()``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.blocking import BlockingPolicy
from mcresolve.consul.watch import WatchPolicy, WatchRegistry
from mcresolve.pool import EndpointPool
from mcresolve.sources import DnsCache, DnsSource, HealthSource, PreparedQuerySource, Resolution
from mcresolve.sources.target import DnsTarget, HealthTarget, PreparedQueryTarget, parse_target
from mcresolve.timing import BackoffPolicy

from .helpers import next_matching
from .scripted import HttpAnswer, ScriptedConsul, ScriptedDns, srv_handler

FAST = BackoffPolicy(base=0.01, multiplier=2.0, cap=0.05)
FAST_WATCH = WatchPolicy(
    blocking=BlockingPolicy(wait=30.0, min_interval=0.0, burst=10), backoff=FAST
)


def ports(resolution: Resolution) -> set[int]:
    return {e.port for e in resolution.endpoints}


def node(name: str, port: object, address: str = "127.0.0.1") -> dict[str, Any]:
    return {
        "Node": {"Node": name, "Address": address, "Datacenter": "dc1"},
        "Service": {"ID": f"web-{name}", "Service": "web", "Port": port, "Tags": None},
        "Checks": [],
    }


def query_answer(*nodes: dict[str, Any]) -> HttpAnswer:
    body = {"Service": "web", "Nodes": list(nodes), "DNS": {"TTL": ""}, "Datacenter": "dc1"}
    return HttpAnswer(json.dumps(body).encode())


@pytest.fixture
async def consul() -> AsyncIterator[ScriptedConsul]:
    server = ScriptedConsul()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def client(consul: ScriptedConsul) -> AsyncIterator[ConsulClient]:
    config = ConsulConfig.for_addresses(consul.url, connect_timeout=0.5, request_timeout=2.0)
    async with ConsulClient(config) as consul_client:
        yield consul_client


@pytest.fixture
async def dns_server() -> AsyncIterator[ScriptedDns]:
    server = ScriptedDns()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# --- stage 3: a prepared-query answer --------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        query_answer(node("n1", 70000)),
        query_answer(node("n1", 10**30)),
        query_answer(node("n1", 70000), node("n2", 9002)),
        HttpAnswer(b"[" * 200_000 + b"]" * 200_000),  # too deep for json.loads
    ],
    ids=["port-70000", "port-1e30", "one-of-two-bad", "nested-200000"],
)
async def test_prepared_query_source_survives_a_bad_answer(
    consul: ScriptedConsul, client: ConsulClient, bad: HttpAnswer
) -> None:
    consul.query = bad
    target = parse_target("consul+query://web?refresh=0.1s")
    assert isinstance(target, PreparedQueryTarget)
    async with PreparedQuerySource(target, client, None, backoff=FAST) as source:
        await next_matching(source, lambda r: r.error is not None)
        consul.query = query_answer(node("n1", 9001), node("n2", 9002))
        good = await next_matching(source, lambda r: r.error is None and not r.stale)
        assert ports(good) == {9001, 9002}
        executions = source.executions
        await next_matching(source, lambda r: source.executions > executions + 2)


# --- stage 1: an SRV record with port 0 ------------------------------------------------------


async def test_dns_source_survives_an_srv_record_with_port_zero(dns_server: ScriptedDns) -> None:
    addresses = {"n1.node.dc1.consul.": ["127.0.0.1"], "n2.node.dc1.consul.": ["127.0.0.2"]}
    dns_server.handler = srv_handler([(0, "n1.node.dc1.consul.")], addresses)
    target = parse_target(
        f"dns://web.service.consul?server={dns_server.address}&refresh=0.05s&ttl-floor=0"
    )
    assert isinstance(target, DnsTarget)
    async with DnsSource(target, backoff=FAST) as source:
        await next_matching(source, lambda r: r.error is not None or r.stale)
        dns_server.handler = srv_handler(
            [(9001, "n1.node.dc1.consul."), (9002, "n2.node.dc1.consul.")], addresses
        )
        good = await next_matching(source, lambda r: r.error is None and bool(r.endpoints))
        assert ports(good) == {9001, 9002}


# --- stage 2: one bad port hides an instance that went critical ------------------------------


async def test_health_answer_with_a_bad_port_still_removes_the_critical_instance(
    consul: ScriptedConsul, client: ConsulClient
) -> None:
    consul.set_health(
        HttpAnswer(json.dumps([node("a", 9001), node("b", 9002), node("c", 9003)]).encode())
    )
    registry = WatchRegistry(client, FAST_WATCH)
    target = parse_target("consul://web")
    assert isinstance(target, HealthTarget)
    try:
        source = HealthSource(target, registry)
        async with EndpointPool(source) as pool:
            await next_matching(source, lambda r: ports(r) == {9001, 9002, 9003})
            # c went critical (it leaves the ?passing answer); d registered with port 70000
            consul.set_health(
                HttpAnswer(
                    json.dumps([node("a", 9001), node("b", 9002), node("d", 70000)]).encode()
                )
            )
            after = await next_matching(source, lambda r: 9003 not in ports(r))
            assert ports(after) == {9001, 9002}
            assert after.error is not None and "70000" in str(after.error)
            snapshot = pool.snapshot()
            assert {e.port for e in snapshot.by_state("active")} | {
                e.port for e in snapshot.by_state("standby")
            } <= {9001, 9002}
            assert snapshot.source_error is not None
            # the agent answers correctly again: the error clears by itself
            consul.set_health(HttpAnswer(json.dumps([node("a", 9001), node("b", 9002)]).encode()))
            clean = await next_matching(source, lambda r: r.error is None)
            assert ports(clean) == {9001, 9002} and not clean.stale
    finally:
        await registry.aclose()


# --- stage 1: a huge TTL must not freeze the view --------------------------------------------


async def test_a_huge_dns_ttl_is_capped(dns_server: ScriptedDns) -> None:
    addresses = {"n1.node.dc1.consul.": ["127.0.0.1"], "n2.node.dc1.consul.": ["127.0.0.2"]}
    dns_server.handler = srv_handler([(9001, "n1.node.dc1.consul.")], addresses, ttl=2147483647)
    now = [1000.0]
    cache = DnsCache(timer=lambda: now[0])
    target = parse_target(
        f"dns://web.service.consul?server={dns_server.address}&refresh=0.05s&ttl-floor=0"
    )
    assert isinstance(target, DnsTarget)
    async with DnsSource(target, cache=cache, backoff=FAST) as source:
        await next_matching(source, lambda r: ports(r) == {9001})
        dns_server.handler = srv_handler([(9002, "n2.node.dc1.consul.")], addresses, ttl=2147483647)
        now[0] += 3600.0  # one hour later (2147483647 s is 68 years)
        changed = await next_matching(source, lambda r: ports(r) == {9002}, within=5.0)
        assert changed.error is None
