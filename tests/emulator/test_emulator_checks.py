"""Checks really run in the emulator: HTTP, TCP and TTL checks, and the critical-service reaper."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mcresolve.testing.consul import ConsulEmulator
from support import until


class Target:
    """A real loopback HTTP server that can be killed."""

    def __init__(self) -> None:
        self.status = 200
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def handle(_request: web.Request) -> web.Response:
            return web.Response(status=self.status, text="ok\n")

        app = web.Application()
        app.router.add_get("/minio/health/live", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port or 0, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    async def kill(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()
        self._runner = None


@pytest.fixture
async def consul() -> AsyncIterator[ConsulEmulator]:
    async with ConsulEmulator(["dc1", "dc2"], time_scale=0.1) as emulator:
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _health(http: aiohttp.ClientSession, base: str, service: str) -> list[dict[str, Any]]:
    async with http.get(f"{base}/v1/health/service/{service}") as resp:
        assert resp.status == 200
        body: list[dict[str, Any]] = await resp.json()
        return body


def _check(entries: list[dict[str, Any]], check_id: str) -> dict[str, Any]:
    for entry in entries:
        for check in entry["Checks"]:
            if check["CheckID"] == check_id:
                return dict(check)
    raise AssertionError(f"no check {check_id}")


async def test_http_check_turns_critical_within_its_interval_when_the_server_dies(
    consul: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    target = Target()
    await target.start()
    try:
        base = consul.dc("dc1").http_url
        url = f"http://127.0.0.1:{target.port}/minio/health/live"
        reg = {
            "ID": "node-a",
            "Name": "storage",
            "Port": target.port,
            "Check": {"CheckID": "node-a-http", "HTTP": url, "Interval": "2s", "Timeout": "1s"},
        }
        async with http.put(f"{base}/v1/agent/service/register", data=json.dumps(reg)) as resp:
            assert resp.status == 200
        first = _check(await _health(http, base, "storage"), "node-a-http")
        assert first["Status"] == "critical" and first["Output"] == ""  # until its first run

        async def passing() -> bool:
            return (
                _check(await _health(http, base, "storage"), "node-a-http")["Status"] == "passing"
            )

        await until(passing, within=2 * 0.2 + 2.0)
        check = _check(await _health(http, base, "storage"), "node-a-http")
        assert check["Output"] == f"HTTP GET {url}: 200 OK Output: ok\n"

        await target.kill()
        killed_at = consul.clock.consul_now()

        async def critical() -> bool:
            return (
                _check(await _health(http, base, "storage"), "node-a-http")["Status"] == "critical"
            )

        await until(critical, within=5.0)
        # What is tested is a time, the check's schedule: critical at the first run after the kill,
        # so within one 2 s interval of Consul time; 5 Consul seconds (0.5 s at this scale) of
        # slack for a loaded machine. Measured on the emulator's clock, not the test's.
        assert consul.clock.consul_now() - killed_at <= 2.0 + 5.0
        check = _check(await _health(http, base, "storage"), "node-a-http")
        assert check["Output"] == (
            f"Get {url}: dial tcp 127.0.0.1:{target.port}: connect: connection refused"
        )
    finally:
        if target._runner is not None:
            await target.kill()


async def test_http_status_mapping_429_warning_500_critical(consul: ConsulEmulator) -> None:
    target = Target()
    await target.start()
    try:
        agent = consul.dc("dc1").agent
        url = f"http://127.0.0.1:{target.port}/minio/health/live"
        agent.register_service(
            {"ID": "s", "Name": "s", "Check": {"CheckID": "c", "HTTP": url, "Interval": "10s"}}
        )
        for code, status, reason in (
            (429, "warning", "Too Many Requests"),
            (500, "critical", "Internal Server Error"),
            (204, "passing", "No Content"),
        ):
            target.status = code
            assert await agent.run_check_now("c") == status
            assert agent.checks["c"].output.startswith(f"HTTP GET {url}: {code} {reason} Output:")
    finally:
        await target.kill()


async def test_tcp_check_follows_the_listener(consul: ConsulEmulator) -> None:
    target = Target()
    await target.start()
    agent = consul.dc("dc1").agent
    address = f"127.0.0.1:{target.port}"
    agent.register_service(
        {"ID": "t", "Name": "t", "Check": {"CheckID": "tcp", "TCP": address, "Interval": "10s"}}
    )
    assert await agent.run_check_now("tcp") == "passing"
    assert agent.checks["tcp"].output == f"TCP connect {address}: Success"
    await target.kill()
    assert await agent.run_check_now("tcp") == "critical"
    assert agent.checks["tcp"].output == f"dial tcp {address}: connect: connection refused"


async def test_ttl_expires_with_consul_output(
    consul: ConsulEmulator, http: aiohttp.ClientSession
) -> None:
    base = consul.dc("dc1").http_url
    reg = {"ID": "x", "Name": "ttl-svc", "Check": {"CheckID": "x-ttl", "TTL": "3s"}}
    async with http.put(f"{base}/v1/agent/service/register", data=json.dumps(reg)) as resp:
        assert resp.status == 200
    async with http.put(f"{base}/v1/agent/check/pass/x-ttl?note=beat") as resp:
        assert resp.status == 200
    passed_at = consul.clock.consul_now()
    assert _check(await _health(http, base, "ttl-svc"), "x-ttl")["Status"] == "passing"

    async def expired() -> bool:
        return _check(await _health(http, base, "ttl-svc"), "x-ttl")["Status"] == "critical"

    await until(expired, within=3.0)
    # the 3 s TTL, on the emulator's clock (Consul seconds), whatever the time scale
    assert consul.clock.consul_now() - passed_at >= 3.0 * 0.95
    check = _check(await _health(http, base, "ttl-svc"), "x-ttl")
    assert check["Output"] == "TTL expired (last output before timeout follows): beat"


async def test_deregister_critical_service_after_is_reaped_by_the_reaper() -> None:
    async with ConsulEmulator(["dc1"], time_scale=0.01) as consul:
        agent = consul.dc("dc1").agent
        started = consul.clock.consul_now()
        agent.register_service(
            {
                "ID": "reap-1",
                "Name": "reap",
                "Check": {"TTL": "2s", "DeregisterCriticalServiceAfter": "30s"},
            }
        )

        async def reaped() -> bool:
            return "reap-1" not in agent.services

        await until(reaped, within=3.0)
        elapsed = consul.clock.consul_now() - started
        # the 30 s setting counts as Consul's 1 min minimum; the reaper runs every 30 s
        assert 60.0 <= elapsed <= 90.0 + 15.0
        assert consul.dc("dc1").catalog.instances("reap") == []
