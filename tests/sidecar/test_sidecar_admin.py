"""The Sidecar against the Consul emulator: /health follows the pools (and turns 503 first on
drain), /metrics exports pools and listeners, bind errors close everything, no secret shows."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable

import pytest
from sidecar_upstreams import answering, serving

from mcresolve.consul import ConsulConfig
from mcresolve.errors import PoolClosed
from mcresolve.sidecar import DrainPolicy, ListenSpec, Sidecar, SidecarBindError
from mcresolve.testing.consul import ConsulEmulator
from support import consul_client, register, until

TOKEN = "c0ffee00-dead-beef-0000-5ecre7t0ken5"


async def admin_get(address: tuple[str, int], path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def exchange(address: tuple[str, int], request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(request)
    answer = await reader.readuntil(b"\n")
    writer.close()
    return answer


@pytest.fixture
def config(mcresolve_consul: ConsulEmulator) -> ConsulConfig:
    return ConsulConfig.for_addresses(mcresolve_consul.dc("dc1").http_url, token=TOKEN)


async def test_health_follows_consul_and_metrics_count_the_traffic(
    mcresolve_consul: ConsulEmulator, config: ConsulConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(answering()) as a, serving(answering()) as b:
        async with consul_client(mcresolve_consul, "dc1") as client:
            await register(client, "echo", [("echo-a", a.port, []), ("echo-b", b.port, [])])
        specs = [ListenSpec(("127.0.0.1", 0), "consul://echo")]
        async with Sidecar(specs, consul=config, admin=("127.0.0.1", 0)) as sidecar:
            admin = sidecar.admin_address
            assert admin is not None
            listen = sidecar.listeners[0].address
            await until(lambda: sidecar.health().status == 200, what="ready")
            status, body = await admin_get(admin, "/health")
            report = json.loads(body)
            assert status == 200 and report["status"] == "ok"
            (listener,) = report["listeners"]
            assert listener["mode"] == "tcp" and listener["target"] == "consul://echo"
            assert {e["address"] for e in listener["endpoints"]} == {a.endpoint, b.endpoint}

            assert await exchange(listen, b"hi\n") == b"ok:hi\n"
            status, metrics = await admin_get(admin, "/metrics")
            text = metrics.decode()
            assert status == 200
            assert "mcresolve_sidecar_forwarded_total{" in text
            assert "mcresolve_pool_attempts_total{" in text

            dc1 = mcresolve_consul.dc("dc1")
            dc1.set_check_status("echo-a-ttl", "critical")
            dc1.set_check_status("echo-b-ttl", "critical")
            await until(lambda: sidecar.health().status == 503, what="no endpoint")
            status, body = await admin_get(admin, "/health")
            assert status == 503
            assert json.loads(body)["without_endpoint"] == [f"127.0.0.1:{listen[1]}"]
            dc1.set_check_status("echo-b-ttl", "passing")
            await until(lambda: sidecar.health().status == 200, what="ready again")
            assert await exchange(listen, b"back\n") == b"ok:back\n"

            assert (await admin_get(admin, "/nope"))[0] == 404
            everything = body.decode() + text + caplog.text
    assert TOKEN not in everything
    assert "event=listening" in caplog.text


async def test_drain_turns_health_503_while_the_ports_still_accept() -> None:
    async with serving(answering()) as up:
        specs = [ListenSpec(("127.0.0.1", 0), f"static://{up.endpoint}")]
        drain = DrainPolicy(unready_delay=3600, grace=1)
        async with Sidecar(specs, admin=("127.0.0.1", 0), drain=drain) as sidecar:
            admin = sidecar.admin_address
            assert admin is not None
            assert (await admin_get(admin, "/health"))[0] == 200
            draining = asyncio.ensure_future(sidecar.drain())
            await until(lambda: sidecar.draining, what="draining")
            status, body = await admin_get(admin, "/health")
            assert status == 503 and json.loads(body)["status"] == "draining"
            # Load balancers are told first; the port still serves meanwhile.
            assert await exchange(sidecar.listeners[0].address, b"x\n") == b"ok:x\n"
            draining.cancel()


async def test_an_address_in_use_is_a_bind_error_and_nothing_stays_open() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            admin_port = free.getsockname()[1]
        specs = [
            ListenSpec(("127.0.0.1", 0), "static://127.0.0.1:1"),
            ListenSpec(("127.0.0.1", port), "static://127.0.0.1:2"),
        ]
        sidecar = Sidecar(specs, admin=("127.0.0.1", admin_port))
        with pytest.raises(SidecarBindError, match=f"cannot listen on 127.0.0.1:{port}: "):
            await sidecar.start()
    first = sidecar.listeners[0].address
    with pytest.raises(OSError):
        await asyncio.open_connection(*first)
    for pool in sidecar.pools.values():
        with pytest.raises(PoolClosed):
            await pool.call(_never_called)


async def _never_called(endpoint: object) -> None:
    raise AssertionError("a closed pool ran a call")


async def test_one_pool_per_target_shared_by_its_listeners() -> None:
    async with serving(answering()) as up:
        target = f"static://{up.endpoint}"
        specs = [
            ListenSpec(("127.0.0.1", 0), target),
            ListenSpec(("127.0.0.1", 0), target),
            ListenSpec(("127.0.0.1", 0), "static://127.0.0.1:1"),
        ]
        async with Sidecar(specs) as sidecar:
            assert len(sidecar.pools) == 2
            first, second, _ = sidecar.listeners
            assert await exchange(first.address, b"1\n") == b"ok:1\n"
            assert await exchange(second.address, b"2\n") == b"ok:2\n"


def _http_ok(up: object) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """An HTTP/1.1 upstream answering every request with ``200 ok`` (keep-alive)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    return handle


async def test_http_and_tcp_listeners_side_by_side_on_one_pool() -> None:
    """``mode="http"`` builds the http listener: requests are answered through it (the
    endpoint named when asked), beside a tcp listener on the same target and pool."""
    async with serving(_http_ok) as up:
        target = f"static://{up.endpoint}"
        specs = [
            ListenSpec(("127.0.0.1", 0), target, "http"),
            ListenSpec(("127.0.0.1", 0), target, "tcp"),
        ]
        async with Sidecar(specs, admin=("127.0.0.1", 0)) as sidecar:
            assert len(sidecar.pools) == 1
            http, tcp = sidecar.listeners
            assert (http.mode, tcp.mode) == ("http", "tcp")
            for listener in (http, tcp):
                reader, writer = await asyncio.open_connection(*listener.address)
                writer.write(b"GET /x HTTP/1.1\r\nHost: s3\r\nX-Mcresolve-Endpoint: 1\r\n\r\n")
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 OK"), head
                assert await reader.readexactly(2) == b"ok"
                named = f"x-mcresolve-endpoint: {up.endpoint}".encode()
                # only the http mode reads requests, so only it can add the header
                assert (named in head.lower()) == (listener is http), head
                writer.close()
            assert http.stats().requests_total == 1
            admin = sidecar.admin_address
            assert admin is not None
            status, body = await admin_get(admin, "/health")
            assert status == 200
            modes = sorted(view["mode"] for view in json.loads(body)["listeners"])
            assert modes == ["http", "tcp"]
