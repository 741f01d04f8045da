"""Limits of a modern agent: the servers' RPC rate limiter (a fault per datacenter) and the
agent's ``http_max_conns_per_client``, both over real loopback sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from mcresolve.testing.consul import ConsulEmulator
from mcresolve.testing.consul.connlimit import TOO_MANY_CONNS_MESSAGE
from support import until

TIMEOUT = aiohttp.ClientTimeout(total=30)
DEADLINE = 10.0  # generous bound for a loaded machine; the states below take milliseconds


@pytest.fixture
async def consul() -> AsyncIterator[ConsulEmulator]:
    async with ConsulEmulator(["dc1", "dc2"], version="1.21") as emulator:
        emulator.dc("dc1").agent.register_service({"Name": "web", "Port": 80})
        yield emulator


async def get(url: str) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as http, http.get(url, timeout=TIMEOUT) as resp:
        text = await resp.text()
        body = json.loads(text) if resp.content_type == "application/json" else text
        return resp.status, dict(resp.headers), body


@pytest.mark.parametrize(
    ("mode", "status", "text"),
    [
        ("retry-elsewhere", 429, "rate limit exceeded, try a different server"),
        (
            "retry-later",
            503,
            "rate limit exceeded for operation that can only be performed by the leader, "
            "try again later",
        ),
    ],
)
async def test_the_rpc_rate_limiter_refuses_server_reads(
    consul: ConsulEmulator, mode: str, status: int, text: str
) -> None:
    dc1 = consul.dc("dc1")
    dc1.faults.rate_limit(mode, count=2)
    for _ in range(2):
        got, headers, body = await get(f"{dc1.http_url}/v1/health/service/web")
        assert (got, body) == (status, text)
        assert "Retry-After" not in headers
    got, _, _ = await get(f"{dc1.http_url}/v1/health/service/web")
    assert got == 200


async def test_the_rate_limiter_spares_agent_endpoints_and_other_datacenters(
    consul: ConsulEmulator,
) -> None:
    dc1 = consul.dc("dc1")
    dc1.faults.rate_limit("retry-later")
    assert (await get(f"{dc1.http_url}/v1/agent/services"))[0] == 200
    assert (await get(f"{consul.dc('dc2').http_url}/v1/catalog/services"))[0] == 200
    assert (await get(f"{dc1.http_url}/v1/catalog/services"))[0] == 503
    assert (await get(f"{dc1.http_url}/v1/query"))[0] == 503
    dc1.faults.clear()
    assert (await get(f"{dc1.http_url}/v1/catalog/services"))[0] == 200


async def _wait_open(consul: ConsulEmulator, count: int) -> None:
    def opened() -> int:
        return consul.dc("dc1").connections.open.get("127.0.0.1", 0)

    await until(lambda: opened() == count, within=DEADLINE, what=f"{count} open connections")


async def test_connections_beyond_the_per_client_limit_get_429(consul: ConsulEmulator) -> None:
    dc1 = consul.dc("dc1")
    assert dc1.http_max_conns_per_client == 200  # agent/config/default.go
    dc1.http_max_conns_per_client = 2
    held = [await asyncio.open_connection(dc1.host, dc1.http_port) for _ in range(2)]
    await _wait_open(consul, 2)
    reader, writer = await asyncio.open_connection(dc1.host, dc1.http_port)
    writer.write(b"GET /v1/agent/self HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), DEADLINE)  # until the agent closes
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert b"Connection: close" in head and b"Retry-After" not in head
    assert body.decode() == TOO_MANY_CONNS_MESSAGE
    assert dc1.connections.refused == 1
    # a held connection still works (keep-alive), and closing one makes room
    reader0, writer0 = held[0]
    writer0.write(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
    status_line = await asyncio.wait_for(reader0.readline(), DEADLINE)
    assert status_line.startswith(b"HTTP/1.1 200")
    for _, writer_held in held:
        writer_held.close()
    await _wait_open(consul, 0)
    assert (await get(f"{dc1.http_url}/v1/status/leader"))[0] == 200


async def test_the_1_0_8_profile_has_no_connection_limit() -> None:
    async with ConsulEmulator(["dc1"]) as legacy:
        dc1 = legacy.dc("dc1")
        assert dc1.http_max_conns_per_client is None
        held = [await asyncio.open_connection(dc1.host, dc1.http_port) for _ in range(5)]
        assert (await get(f"{dc1.http_url}/v1/status/leader"))[0] == 200
        assert dc1.connections.refused == 0
        for _, writer in held:
            writer.close()
