"""httpx clients through the pool transports against real loopback servers behind fault proxies."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from mcresolve.balancer.outlier import FailureKind
from mcresolve.balancer.picker import PickStrategy
from mcresolve.errors import DeadlineExceeded
from mcresolve.http.httpx import AsyncPoolTransport, PoolTransport, RequestOptions
from mcresolve.pool import EndpointPool, PoolPolicy
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.pool.planner import AttemptRecord
from mcresolve.testing.faultproxy import FaultProxy, S3ErrorSpec
from support import until_sync

from .conftest import Billing

URL = "http://billing.service.consul/invoices"
UNAVAILABLE = S3ErrorSpec("ServiceUnavailable", 503, "try another node", None)
FAULTS = ["refuse", "reset", "blackhole", "503"]


def break_node(proxy: FaultProxy, fault: str) -> None:
    if fault == "refuse":
        proxy.refuse()
    elif fault == "reset":
        proxy.reset()
    elif fault == "blackhole":
        proxy.blackhole()
    else:
        proxy.answer_error(UNAVAILABLE)


def policy(**call: Any) -> PoolPolicy:
    defaults: dict[str, Any] = {"attempt_timeout": 2.0, "deadline": 20.0}
    return PoolPolicy(call=CallPolicy(**{**defaults, **call}))


def transport(billing: Billing, **pool: Any) -> AsyncPoolTransport:
    return AsyncPoolTransport(pool_options={**billing.pool_options, "policy": policy(), **pool})


async def test_consul_name_resolves_through_a_pool_and_keeps_the_logical_host(
    billing: Billing,
) -> None:
    async with httpx.AsyncClient(transport=transport(billing)) as client:
        responses = [await client.get(URL) for _ in range(12)]
    assert {r.status_code for r in responses} == {200}
    ports = {p.port for p in billing.proxies}
    assert {r.extensions["mcresolve.endpoint"].port for r in responses} <= ports
    seen = [s for server in billing.servers for s in server.seen]
    assert len(seen) == 12
    assert {s.host for s in seen} == {"billing.service.consul"}
    assert {s.path for s in seen} == {"/invoices"}


async def test_prepared_query_base_url_and_target_mapping(billing: Billing) -> None:
    async with httpx.AsyncClient(
        transport=transport(billing), base_url="consul+query://billing"
    ) as client:
        by_query = await client.get("/invoices?month=11")
    mapped = AsyncPoolTransport(
        {"billing": "consul+query://billing"}, pool_options=billing.pool_options
    )
    async with httpx.AsyncClient(transport=mapped) as client:
        by_map = await client.get("http://billing/invoices")
        assert set(mapped.pools) == {"consul+query://billing"}
    assert by_query.status_code == by_map.status_code == 200
    assert by_query.json()["path"] == "/invoices"
    hosts = {s.host for server in billing.servers for s in server.seen}
    assert hosts == {"billing"}


async def test_other_hosts_pass_through_untouched(billing: Billing) -> None:
    server = billing.servers[0]
    async with httpx.AsyncClient(transport=transport(billing)) as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/direct")
        assert client._transport.pools == {}  # type: ignore[attr-defined]
    assert response.status_code == 200 and server.seen[-1].path == "/direct"


@pytest.mark.parametrize("fault", FAULTS)
async def test_one_node_broken_every_idempotent_request_succeeds(
    billing: Billing, fault: str
) -> None:
    bad = billing.proxies[1]
    break_node(bad, fault)
    t = transport(billing, policy=policy(attempt_timeout=1.0))
    async with httpx.AsyncClient(transport=t) as client:
        for method in ["GET", "HEAD", "PUT", "DELETE", "GET", "OPTIONS"] * 3:
            response = await client.request(method, URL, content=b"x" if method == "PUT" else None)
            assert response.status_code == 200, (method, response.status_code)
            assert response.extensions["mcresolve.endpoint"].port != bad.port
        pool = t.pools["billing.service.consul"]
        ejected = {s.endpoint.port for s in pool.snapshot().endpoints if s.state == "ejected"}
    assert ejected == {bad.port}
    assert billing.servers[1].seen == []


async def test_post_is_not_replayed_after_a_reset(billing: Billing) -> None:
    for proxy in billing.proxies:
        proxy.reset(methods={"POST"})
    async with httpx.AsyncClient(transport=transport(billing)) as client:
        with pytest.raises(httpx.TransportError):
            await client.post(URL, json={"amount": 10})
    reached = sum(p.stats.total_requests for p in billing.proxies)
    assert reached == 1


async def test_post_is_replayed_after_a_refused_connection(billing: Billing) -> None:
    billing.proxies[0].refuse()
    billing.proxies[1].refuse()
    records: list[AttemptRecord] = []
    pool = EndpointPool(
        "billing.service.consul",
        **billing.pool_options,
        policy=PoolPolicy(call=policy().call, strategy=PickStrategy.ROUND_ROBIN),
    )
    pool.add_attempt_listener(records.append)
    async with (
        pool,
        httpx.AsyncClient(transport=AsyncPoolTransport({"billing.service.consul": pool})) as client,
    ):
        for _ in range(3):
            response = await client.post(URL, content=b'{"amount": 10}')
            assert response.status_code == 201
    refused = [r for r in records if r.error is not None]
    assert refused and all(r.verdict.failure_kind is FailureKind.CONNECT for r in refused)  # type: ignore[union-attr]
    assert billing.servers[2].count("POST") == 3
    assert billing.total("POST") == 3


async def test_post_with_idempotency_key_is_replayed_after_a_reset(billing: Billing) -> None:
    billing.proxies[0].reset()
    billing.proxies[1].reset()
    records: list[AttemptRecord] = []
    pool = EndpointPool(
        "billing.service.consul",
        **billing.pool_options,
        policy=PoolPolicy(call=policy().call, strategy=PickStrategy.ROUND_ROBIN),
    )
    pool.add_attempt_listener(records.append)
    async with (
        pool,
        httpx.AsyncClient(transport=AsyncPoolTransport({"billing.service.consul": pool})) as client,
    ):
        for key in ("a", "b", "c"):
            response = await client.post(URL, content=b"{}", headers={"Idempotency-Key": key})
            assert response.status_code == 201
    resets = [r for r in records if r.verdict is not None]
    assert resets and all(r.verdict.failure_kind is FailureKind.RESET for r in resets)
    assert billing.servers[2].count("POST") == 3


async def test_streaming_body_is_sent_once(billing: Billing) -> None:
    for proxy in billing.proxies:
        proxy.reset(methods={"PUT"})

    async def chunks() -> Any:
        yield b"part-1"
        yield b"part-2"

    async with httpx.AsyncClient(transport=transport(billing)) as client:
        with pytest.raises(httpx.TransportError):
            await client.put(URL, content=chunks())
    assert sum(p.stats.total_requests for p in billing.proxies) == 1


async def test_every_node_503_returns_the_last_answer(billing: Billing) -> None:
    for proxy in billing.proxies:
        proxy.answer_error(S3ErrorSpec("ServiceUnavailable", 503, "busy", 120))
    async with httpx.AsyncClient(transport=transport(billing)) as client:
        response = await client.get(URL)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "120"
    assert "busy" in response.text
    assert [p.stats.requests.total() for p in billing.proxies] == [1, 1, 1]


async def test_a_500_is_returned_without_retry(billing: Billing) -> None:
    for proxy in billing.proxies:
        proxy.answer_error("InternalError")
    async with httpx.AsyncClient(transport=transport(billing)) as client:
        response = await client.get(URL)
    assert response.status_code == 500
    assert sum(p.stats.total_requests for p in billing.proxies) == 1


async def test_deadline_bounds_the_whole_request(billing: Billing) -> None:
    for proxy in billing.proxies:
        proxy.blackhole()
    options = RequestOptions(deadline=1.5, attempt_timeout=0.4)
    async with httpx.AsyncClient(transport=transport(billing), timeout=60) as client:
        with pytest.raises(DeadlineExceeded) as caught:
            await client.get(URL, extensions={"mcresolve": options})
    attempts = caught.value.attempts
    assert attempts
    for record in attempts:
        assert record.verdict is not None
        assert record.verdict.failure_kind is FailureKind.TIMEOUT


async def test_hedging_answers_from_the_fast_node(billing: Billing) -> None:
    slow, fast = billing.proxies[0], billing.proxies[1]
    slow.delay(30.0)
    target = f"static://127.0.0.1:{slow.port},127.0.0.1:{fast.port}"
    records: list[AttemptRecord] = []
    pool = EndpointPool(target, policy=PoolPolicy(strategy=PickStrategy.RANDOM))
    pool.add_attempt_listener(records.append)
    options = RequestOptions(hedge_delay=0.05, attempt_timeout=60, deadline=60)
    async with pool, httpx.AsyncClient(transport=AsyncPoolTransport({"billing": pool})) as client:
        # Random picks: the slow node comes first in half the requests (30 in a row all
        # avoiding it: probability 1e-9).
        for _ in range(30):
            response = await client.get("http://billing/x", extensions={"mcresolve": options})
            assert response.status_code == 200
            assert response.extensions["mcresolve.endpoint"].port == fast.port
            if any(r.hedge for r in records):
                break
    hedged = [r for r in records if r.hedge]
    assert hedged and all(r.error is None and r.endpoint.port == fast.port for r in hedged)


def sync_transport(billing: Billing, **call: Any) -> PoolTransport:
    return PoolTransport(pool_options={"consul": billing.config, "policy": policy(**call)})


@pytest.mark.parametrize("fault", ["refuse", "reset", "503"])
async def test_sync_client_survives_one_broken_node(billing: Billing, fault: str) -> None:
    bad = billing.proxies[2]
    break_node(bad, fault)

    def run() -> list[httpx.Response]:
        with httpx.Client(transport=sync_transport(billing)) as client:
            return [client.get(URL) for _ in range(9)]

    responses = await asyncio.to_thread(run)
    assert {r.status_code for r in responses} == {200}
    assert all(r.extensions["mcresolve.endpoint"].port != bad.port for r in responses)
    assert {s.host for server in billing.servers for s in server.seen} == {"billing.service.consul"}


async def test_sync_attempts_are_cut_at_the_attempt_timeout(billing: Billing) -> None:
    for proxy in billing.proxies:
        proxy.blackhole()

    def run() -> DeadlineExceeded:
        transport = sync_transport(billing, attempt_timeout=0.4, deadline=2.0)
        with httpx.Client(transport=transport, timeout=60) as client:
            try:
                client.get(URL)
            except DeadlineExceeded as error:
                return error
        raise AssertionError("the request did not fail")

    error = await asyncio.to_thread(run)
    # A blocking attempt cannot be interrupted: without the transport's cap each attempt would
    # wait for the client's 60 s read timeout and the call would make a single attempt.
    assert len(error.attempts) >= 2
    assert all(isinstance(r.error, httpx.ReadTimeout) for r in error.attempts)


async def test_sync_post_is_not_replayed_and_503s_return_the_last_answer(
    billing: Billing,
) -> None:
    transport = sync_transport(billing)
    client = httpx.Client(transport=transport)
    try:
        for proxy in billing.proxies:
            proxy.reset(methods={"POST"})
        with pytest.raises(httpx.TransportError):
            await asyncio.to_thread(client.post, URL, content=b"{}")
        assert sum(p.stats.total_requests for p in billing.proxies) == 1  # not replayed
        for proxy in billing.proxies:
            proxy.pass_through()
            proxy.reset_stats()
            proxy.answer_error(S3ErrorSpec("ServiceUnavailable", 503, "busy", 120))
        response = await asyncio.to_thread(client.get, URL)
    finally:
        await asyncio.to_thread(client.close)
    assert response.status_code == 503 and response.headers["Retry-After"] == "120"
    # At most one attempt per node (the POST's node is ejected, and comes back only in panic
    # mode); once every endpoint of the round answered 503 with Retry-After 120 the call gave
    # up at once with the last answer instead of waiting past its deadline.
    assert [p.stats.total_requests for p in billing.proxies] in ([1, 1, 1], *_two_of_three())


def _two_of_three() -> list[list[int]]:
    return [[0, 1, 1], [1, 0, 1], [1, 1, 0]]


async def test_sync_transport_uses_a_given_background_pool_and_leaves_it_open(
    billing: Billing,
) -> None:
    billing.proxies[0].refuse()
    endpoints = ",".join(f"127.0.0.1:{p.port}" for p in billing.proxies)

    def run() -> tuple[list[int], bool]:
        background = EndpointPool.start_in_thread(f"static://{endpoints}")
        try:
            transport = PoolTransport({"billing": background})
            with httpx.Client(transport=transport) as client:
                statuses = [client.get("http://billing/invoices").status_code for _ in range(6)]
            still_open = background.snapshot() is not None and background.pick() is not None
            return statuses, still_open
        finally:
            background.close()

    statuses, still_open = await asyncio.to_thread(run)
    assert statuses == [200] * 6 and still_open
    assert {s.host for server in billing.servers for s in server.seen} == {"billing"}


async def test_sync_transport_hedges_answers_from_the_fast_node(billing: Billing) -> None:
    """``PoolTransport`` hedges through ``call_sync``: the slow node's answer comes after the
    fast node's, and the losing response is closed when it arrives."""
    slow, fast = billing.proxies[0], billing.proxies[1]
    slow.delay(1.0)
    target = f"static://127.0.0.1:{slow.port},127.0.0.1:{fast.port}"
    records: list[AttemptRecord] = []
    options = RequestOptions(hedge_delay=0.05, attempt_timeout=60, deadline=60)

    def get_twice() -> list[int]:
        background = EndpointPool.start_in_thread(
            target, policy=PoolPolicy(strategy=PickStrategy.ROUND_ROBIN)
        )
        background.pool.add_attempt_listener(records.append)
        try:
            with httpx.Client(transport=PoolTransport({"billing": background})) as client:
                ports = []
                for _ in range(2):  # round robin: one of the two starts on the slow node
                    response = client.get("http://billing/x", extensions={"mcresolve": options})
                    assert response.status_code == 200
                    ports.append(response.extensions["mcresolve.endpoint"].port)
                # the call that started on the slow node was answered by a hedge on the fast
                # one (a call that started on the fast node may hedge too on a loaded machine)
                assert any(
                    r.hedge and r.error is None and r.endpoint.port == fast.port for r in records
                )
                # the loser finishes later with an answer (closed by the discard hook)
                until_sync(lambda: any(r.endpoint.port == slow.port for r in records))
                return ports
        finally:
            background.close()

    assert await asyncio.to_thread(get_twice) == [fast.port, fast.port]
