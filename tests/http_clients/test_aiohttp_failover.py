"""PoolSession (aiohttp) against real loopback servers behind fault proxies: the same rules as
the httpx transports, decided by the same classifier."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from mcresolve.balancer.outlier import FailureKind
from mcresolve.balancer.picker import PickStrategy
from mcresolve.errors import DeadlineExceeded
from mcresolve.http.aiohttp import PoolSession, RequestOptions
from mcresolve.pool import EndpointPool, PoolPolicy
from mcresolve.pool.planner import AttemptRecord
from mcresolve.testing.faultproxy import S3ErrorSpec

from .conftest import Billing
from .test_httpx_failover import FAULTS, URL, break_node, policy


def session(billing: Billing, **pool: Any) -> PoolSession:
    return PoolSession(pool_options={**billing.pool_options, "policy": policy(), **pool})


async def test_consul_name_and_logical_host(billing: Billing) -> None:
    async with session(billing) as s:
        for _ in range(6):
            async with s.get(URL) as response:
                assert response.status == 200
                assert (await response.json())["path"] == "/invoices"
        assert set(s.pools) == {"billing.service.consul"}
    assert {x.host for server in billing.servers for x in server.seen} == {"billing.service.consul"}


async def test_base_url_with_a_prepared_query(billing: Billing) -> None:
    async with session(billing, policy=policy()) as s:
        s._base_url = "consul+query://billing"
        response = await s.get("/invoices")
        assert response.status == 200
        response.release()
        assert set(s.pools) == {"consul+query://billing"}


@pytest.mark.parametrize("fault", FAULTS)
async def test_one_node_broken_every_idempotent_request_succeeds(
    billing: Billing, fault: str
) -> None:
    bad = billing.proxies[0]
    break_node(bad, fault)
    async with session(billing, policy=policy(attempt_timeout=1.0)) as s:
        for method in ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"] * 3:
            async with s.request(method, URL, data=b"x") as response:
                assert response.status == 200, (method, response.status)
        pool = s.pools["billing.service.consul"]
        ejected = {e.endpoint.port for e in pool.snapshot().endpoints if e.state == "ejected"}
    assert ejected == {bad.port}
    assert billing.servers[0].seen == []


async def test_post_is_not_replayed_after_a_reset(billing: Billing) -> None:
    for proxy in billing.proxies:
        proxy.reset(methods={"POST"})
    async with session(billing) as s:
        with pytest.raises(aiohttp.ClientError):
            await s.post(URL, json={"amount": 10})
    assert sum(p.stats.total_requests for p in billing.proxies) == 1


async def test_post_marked_idempotent_is_replayed_after_a_reset(billing: Billing) -> None:
    billing.proxies[0].reset()
    billing.proxies[1].reset()
    records: list[AttemptRecord] = []
    pool = EndpointPool(
        "billing.service.consul",
        **billing.pool_options,
        policy=PoolPolicy(call=policy().call, strategy=PickStrategy.ROUND_ROBIN),
    )
    pool.add_attempt_listener(records.append)
    async with pool, PoolSession({"billing.service.consul": pool}) as s:
        for _ in range(3):
            options = RequestOptions(idempotent=True)
            async with s.post(URL, data=b"{}", mcresolve=options) as response:
                assert response.status == 201
    failed = [r for r in records if r.error is not None]
    assert failed and all(r.verdict.failure_kind is FailureKind.RESET for r in failed)  # type: ignore[union-attr]
    assert billing.servers[2].count("POST") == 3


async def test_every_node_503_returns_the_last_answer(billing: Billing) -> None:
    for proxy in billing.proxies:
        proxy.answer_error(S3ErrorSpec("ServiceUnavailable", 503, "busy", 120))
    async with session(billing) as s, s.get(URL) as response:
        assert response.status == 503
        assert "busy" in await response.text()
    assert [p.stats.total_requests for p in billing.proxies] == [1, 1, 1]


async def test_deadline_bounds_the_whole_request(billing: Billing) -> None:
    for proxy in billing.proxies:
        proxy.blackhole()
    async with session(billing) as s:
        with pytest.raises(DeadlineExceeded) as caught:
            await s.get(URL, mcresolve=RequestOptions(deadline=1.5, attempt_timeout=0.4))
    assert caught.value.attempts
    assert all(r.verdict.failure_kind is FailureKind.TIMEOUT for r in caught.value.attempts)  # type: ignore[union-attr]


async def test_other_hosts_pass_through(billing: Billing) -> None:
    server = billing.servers[1]
    async with session(billing) as s:
        async with s.get(f"http://127.0.0.1:{server.port}/direct") as response:
            assert response.status == 200
        assert s.pools == {}


async def test_streaming_body_is_sent_once(billing: Billing) -> None:
    for proxy in billing.proxies:
        proxy.reset(methods={"PUT"})

    async def chunks() -> Any:
        yield b"part-1"
        yield b"part-2"

    async with session(billing) as s:
        with pytest.raises(aiohttp.ClientError):
            await s.put(URL, data=chunks())
    assert sum(p.stats.total_requests for p in billing.proxies) == 1


async def test_hedging_answers_from_the_fast_node(billing: Billing) -> None:
    slow, fast = billing.proxies[0], billing.proxies[1]
    slow.delay(30.0)
    target = f"static://127.0.0.1:{slow.port},127.0.0.1:{fast.port}"
    records: list[AttemptRecord] = []
    pool = EndpointPool(target, policy=PoolPolicy(strategy=PickStrategy.RANDOM))
    pool.add_attempt_listener(records.append)
    options = RequestOptions(hedge_delay=0.05, attempt_timeout=60, deadline=60)
    async with pool, PoolSession({"billing": pool}) as s:
        for _ in range(30):  # the slow node comes first in half the requests
            async with s.get("http://billing/x", mcresolve=options) as response:
                assert response.status == 200
                assert (await response.json())["server"] == "billing-1"
            if any(r.hedge for r in records):
                break
    hedged = [r for r in records if r.hedge]
    assert hedged and all(r.error is None and r.endpoint.port == fast.port for r in hedged)
