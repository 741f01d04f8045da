"""Fault injection: stopped agents, WAN partitions, slow/failing/dropped requests, index rewind,
flipped checks; and blocking queries across these. Also: no ``Server`` header (Consul sends none).

Blocking queries are known to be parked through the agent's ``parked`` counter, never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from mcresolve.testing.consul import ConsulEmulator
from mcresolve.testing.consul.datacenter import Datacenter
from mcresolve.testing.consul.http_api import AgentHttpApi
from support import until

DEADLINE = 10.0  # generous bound for a loaded machine; the states below take milliseconds


@pytest.fixture
async def consul() -> AsyncIterator[ConsulEmulator]:
    async with ConsulEmulator(["dc1", "dc2"], rtt_ms={("dc1", "dc2"): 40.0}) as emulator:
        for name in ("dc1", "dc2"):
            emulator.dc(name).agent.register_service(
                {
                    "ID": f"web-{name}",
                    "Name": "web",
                    "Port": 80,
                    "Check": {"CheckID": f"web-{name}-ttl", "TTL": "15m", "Status": "passing"},
                }
            )
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], Any]:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
        text = await resp.text()
        body = json.loads(text) if resp.content_type == "application/json" else text
        return resp.status, dict(resp.headers), body


async def _parked(dc: Datacenter, count: int = 1) -> None:
    """Wait (with a deadline) until ``dc``'s agent holds ``count`` blocking queries."""
    api = AgentHttpApi.of(dc)
    await until(lambda: api.parked >= count, within=DEADLINE, what=f"{count} parked queries")


async def _answers(http: aiohttp.ClientSession, url: str, expected: tuple[int, Any]) -> bool:
    """Whether ``url`` answers ``expected`` (status, body) now."""
    status, _, body = await _get(http, url)
    return (status, body) == expected


async def test_fail_next_and_delay(consul: ConsulEmulator, http: aiohttp.ClientSession) -> None:
    dc1 = consul.dc("dc1")
    dc1.faults.fail_next(2, status=503, message="Service Unavailable")
    url = f"{dc1.http_url}/v1/health/service/web"
    for _ in range(2):
        status, headers, body = await _get(http, url)
        assert (status, body) == (503, "Service Unavailable")
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
    status, _, body = await _get(http, url)
    assert status == 200 and body[0]["Service"]["ID"] == "web-dc1"
    dc1.faults.delay = 0.2
    started = time.monotonic()
    assert (await _get(http, url))[0] == 200
    assert time.monotonic() - started >= 0.2  # a time by nature (the injected delay)
    dc1.faults.clear()


async def test_drop_next_closes_the_connection(
    consul: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    dc1 = consul.dc("dc1")
    dc1.faults.drop_next(1)
    reader, writer = await asyncio.open_connection("127.0.0.1", dc1.http_port)
    writer.write(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without an answer
    writer.close()
    assert dc1.faults.pending == 0
    assert (await _get(http, f"{dc1.http_url}/v1/status/leader"))[0] == 200


async def test_stop_and_start_agent(consul: ConsulEmulator, http: aiohttp.ClientSession) -> None:
    dc1, dc2 = consul.dc("dc1"), consul.dc("dc2")
    port = dc2.http_port
    # a blocking ?dc=dc2 query in flight fails when dc2 dies, like Consul's "EOF"
    status, headers, _ = await _get(http, f"{dc1.http_url}/v1/health/service/web?dc=dc2")
    index = headers["X-Consul-Index"]
    watcher = asyncio.create_task(
        _get(http, f"{dc1.http_url}/v1/health/service/web?dc=dc2&index={index}&wait=30s")
    )
    await _parked(dc1)  # held by dc1 for dc2
    await consul.stop_agent("dc2")
    status, headers, body = await asyncio.wait_for(watcher, 5)
    assert (status, body) == (500, "rpc error making call: EOF")
    assert headers["X-Consul-Knownleader"] == "false"
    # the stopped agent's port refuses connections
    with pytest.raises(aiohttp.ClientConnectionError):
        await _get(http, f"http://127.0.0.1:{port}/v1/status/leader")
    status, _, body = await _get(http, f"{dc1.http_url}/v1/health/service/web?dc=dc2")
    assert status == 500 and body.startswith("rpc error getting client: failed to get conn:")
    # later (no_path_after, 54.6 Consul seconds: 55 ms at this scale) the WAN pool gives up on it
    consul.time_scale = 0.001
    url = f"{dc1.http_url}/v1/health/service/web?dc=dc2"
    expected = (500, "No path to datacenter")
    await until(lambda: _answers(http, url, expected), within=DEADLINE, what="no path to dc2")
    members = (await _get(http, f"{dc1.http_url}/v1/agent/members?wan=1"))[2]
    assert {m["Name"]: m["Status"] for m in members} == {"n1.dc1": 1, "n2.dc2": 4}
    # local reads are unaffected
    assert (await _get(http, f"{dc1.http_url}/v1/health/service/web"))[0] == 200
    consul.time_scale = 1.0
    await consul.start_agent("dc2")
    assert dc2.http_port == port
    status, _, body = await _get(http, f"{dc1.http_url}/v1/health/service/web?dc=dc2")
    assert status == 200 and body[0]["Service"]["ID"] == "web-dc2"  # state kept


async def test_partition_and_heal(consul: ConsulEmulator, http: aiohttp.ClientSession) -> None:
    dc1 = consul.dc("dc1")
    consul.partition("dc1", "dc2")
    status, _, body = await _get(http, f"{dc1.http_url}/v1/catalog/services?dc=dc2")
    assert (status, body) == (500, "No path to datacenter")
    assert (await _get(http, f"{dc1.http_url}/v1/catalog/datacenters"))[2] == ["dc1", "dc2"]
    consul.heal("dc1", "dc2")
    assert (await _get(http, f"{dc1.http_url}/v1/catalog/services?dc=dc2"))[0] == 200


async def test_blocking_wakes_on_write_and_rewind_blocks_full_wait(
    consul: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    dc1 = consul.dc("dc1")
    url = f"{dc1.http_url}/v1/health/service/web"
    _, headers, _ = await _get(http, url)
    index = int(headers["X-Consul-Index"])
    watcher = asyncio.create_task(_get(http, f"{url}?index={index}&wait=30s"))
    await _parked(dc1)
    dc1.set_check_status("web-dc1-ttl", "critical", "flipped")
    # The write, not the 30 s wait, ends the query: 5 s is a bound on a hung watcher, six
    # times shorter than the wait, not a measurement.
    _, headers, body = await asyncio.wait_for(watcher, 5)
    assert int(headers["X-Consul-Index"]) > index
    assert body[0]["Checks"][1]["Status"] == "critical"
    assert body[0]["Checks"][1]["Output"] == "flipped"
    # after a rewind the old (higher) index blocks for the whole wait, then the lower one returns
    current = int(headers["X-Consul-Index"])
    dc1.rewind_index(2)
    started = time.monotonic()
    _, headers, _ = await _get(http, f"{url}?index={current}&wait=200ms")
    assert time.monotonic() - started >= 0.2  # a time by nature (the query's wait)
    assert int(headers["X-Consul-Index"]) < current


async def test_set_check_status_on_a_catalog_check(
    consul: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    dc1 = consul.dc("dc1")
    reg = {
        "Node": "ext",
        "Address": "127.0.0.2",
        "Service": {"ID": "e", "Service": "ext"},
        "Check": {"CheckID": "e-chk", "Status": "passing", "ServiceID": "e"},
    }
    async with http.put(f"{dc1.http_url}/v1/catalog/register", data=json.dumps(reg)) as resp:
        assert resp.status == 200 and await resp.json() == True  # noqa: E712
    dc1.set_check_status("e-chk", "warning", "slow")
    _, _, body = await _get(http, f"{dc1.http_url}/v1/health/service/ext?passing")
    assert body == []
    _, _, body = await _get(http, f"{dc1.http_url}/v1/health/state/warning")
    assert [(c["CheckID"], c["Output"]) for c in body] == [("e-chk", "slow")]


async def test_no_server_header_like_consul(
    consul: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    """Consul 1.0.8 sends no ``Server`` header (recordings); aiohttp would add its own."""
    dc1 = consul.dc("dc1")
    base = dc1.http_url
    answers = [
        await _get(http, f"{base}/v1/status/leader"),  # 200 JSON
        await _get(http, f"{base}/v1/no/such/path"),  # empty 404
        await _get(http, f"{base}/v1/agent/service/register"),  # 405 with Allow
        await _get(http, f"{base}/v1/health/service/web?wait=bad"),  # 400 text
    ]
    dc1.faults.fail_next(1)
    answers.append(await _get(http, f"{base}/v1/health/service/web"))  # injected 500
    # a blocking answer, after its (short) full wait
    answers.append(await _get(http, f"{base}/v1/health/service/web?index=999&wait=20ms"))
    assert [a[0] for a in answers] == [200, 404, 405, 400, 500, 200]
    for status, headers, _ in answers:
        assert "server" not in {name.lower() for name in headers}, (status, headers)
