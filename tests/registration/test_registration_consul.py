"""The registration helper against the emulated Consul agent (real HTTP, checks that really run)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from mcresolve.consul import BadRequest, ConsulClient, ConsulConfig, ConsulUnavailable
from mcresolve.consul.registration import (
    ConsulRegistration,
    HttpCheck,
    RegistrationPolicy,
    ServiceDefinition,
    TtlCheck,
)
from mcresolve.testing.consul import AgentConfig, ConsulEmulator
from mcresolve.timing import BackoffPolicy
from support import until

#: Fast retries so that recovery takes milliseconds instead of the production backoff.
FAST = RegistrationPolicy(
    verify_interval=0.2, retry=BackoffPolicy(base=0.02, cap=0.2), deregister_timeout=2.0
)


@contextlib.asynccontextmanager
async def health_server() -> AsyncIterator[str]:
    """A tiny HTTP server answering ``/health`` with 200; yields its base URL."""
    app = web.Application()

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def client_for(consul: ConsulEmulator) -> ConsulClient:
    return ConsulClient(
        ConsulConfig.for_addresses(
            consul.dc("dc1").http_url, connect_timeout=0.5, request_timeout=2.0
        )
    )


def check_status(consul: ConsulEmulator, check_id: str) -> str | None:
    for entry in consul.dc("dc1").health_service("app"):
        for check in entry["Checks"]:
            if check["CheckID"] == check_id:
                return str(check["Status"])
    return None


@pytest.fixture(params=["1.0.8", "1.21"])
def consul_version(request: pytest.FixtureRequest) -> str:
    """Every registration test runs against the recorded 1.0.8 and the modern 1.21 agent."""
    return str(request.param)


async def test_http_check_registration_passes_and_deregisters_on_exit(consul_version: str) -> None:
    async with (
        ConsulEmulator(["dc1"], version=consul_version) as consul,
        health_server() as base,
        client_for(consul) as c,
    ):
        service = ServiceDefinition(
            "app",
            service_id="app-1",
            address="127.0.0.1",
            port=8080,
            tags=("web",),
            check=HttpCheck(f"{base}/health", interval=0.2, timeout=1.0),
        )
        async with ConsulRegistration(c, service, policy=FAST) as registration:
            assert registration.registered
            services = await c.agent_services()
            assert services["app-1"]["Tags"] == ["web"]
            await until(lambda: check_status(consul, "service:app-1") == "passing", what="pass")
            passing = await c.health_service("app", passing=True)
            assert [e.service.id for e in passing.value] == ["app-1"]
        assert "app-1" not in await c.agent_services()
        assert registration.registrations == 1


async def test_ttl_heartbeats_keep_the_check_passing_and_status_is_reported(
    consul_version: str,
) -> None:
    async with ConsulEmulator(["dc1"], version=consul_version) as consul, client_for(consul) as c:
        statuses: list[str | None] = []
        service = ServiceDefinition("app", service_id="app-ttl", check=TtlCheck(ttl=1.2))

        async def record() -> None:
            while True:
                changed = consul.dc("dc1").catalog.changed_event()
                statuses.append(check_status(consul, "service:app-ttl"))
                await changed.wait()

        async with ConsulRegistration(c, service, policy=FAST) as registration:
            recorder = asyncio.create_task(record())
            started = time.monotonic()
            await until(lambda: registration.heartbeats >= 5, within=10, what="5 heartbeats")
            elapsed = time.monotonic() - started
            # longer than the TTL (a time, and a lower bound: load only adds): only the
            # heartbeats kept the check alive
            assert elapsed > 1.2
            assert check_status(consul, "service:app-ttl") == "passing"
            assert "critical" not in statuses
            await registration.set_status("critical", "disk full")
            await until(lambda: check_status(consul, "service:app-ttl") == "critical", within=2)
            checks = await c.agent_checks()
            assert checks["service:app-ttl"]["Output"] == "disk full"
            await registration.set_status("passing")
            await until(lambda: check_status(consul, "service:app-ttl") == "passing", within=2)
            recorder.cancel()
        assert "app-ttl" not in await c.agent_services()


@pytest.mark.parametrize("kind", ["ttl", "http"])
async def test_reregisters_after_agent_restart_with_fresh_state(
    kind: str, consul_version: str
) -> None:
    async with (
        ConsulEmulator(["dc1"], version=consul_version) as consul,
        health_server() as base,
        client_for(consul) as c,
    ):
        check: TtlCheck | HttpCheck = (
            TtlCheck(ttl=1.5) if kind == "ttl" else HttpCheck(f"{base}/health", interval=0.2)
        )
        service = ServiceDefinition("app", service_id=f"app-{kind}", port=1234, check=check)
        async with ConsulRegistration(c, service, policy=FAST) as registration:
            dc1 = consul.dc("dc1")
            await consul.stop_agent("dc1")
            # A dev agent restarted with a fresh state has forgotten every service.
            dc1.agent.deregister_service(service.id)
            await until(lambda: registration.last_error is not None, what="a failed call")
            assert isinstance(registration.last_error, ConsulUnavailable)
            await consul.start_agent("dc1")
            await until(lambda: registration.registrations == 2, what="re-registration")
            services = await c.agent_services()
            assert services[service.id]["Port"] == 1234
            await until(
                lambda: check_status(consul, f"service:app-{kind}") == "passing", what="passing"
            )


async def test_agent_restart_with_state_kept_does_not_reregister(consul_version: str) -> None:
    async with ConsulEmulator(["dc1"], version=consul_version) as consul, client_for(consul) as c:
        service = ServiceDefinition("app", service_id="app-kept", check=TtlCheck(ttl=1.5))
        async with ConsulRegistration(c, service, policy=FAST) as registration:
            await consul.stop_agent("dc1")
            await until(lambda: registration.last_error is not None, what="a failed heartbeat")
            beats = registration.heartbeats
            await consul.start_agent("dc1")
            await until(lambda: registration.heartbeats > beats, what="heartbeat after restart")
            assert registration.registrations == 1


async def test_unreachable_agent_at_start_registers_when_it_comes_up(consul_version: str) -> None:
    async with ConsulEmulator(["dc1"], version=consul_version) as consul, client_for(consul) as c:
        await consul.stop_agent("dc1")
        service = ServiceDefinition("app", service_id="app-late", check=TtlCheck(ttl=5))
        async with ConsulRegistration(c, service, policy=FAST) as registration:
            assert not registration.registered
            await consul.start_agent("dc1")
            async with asyncio.timeout(5):
                await registration.wait_registered()
            assert "app-late" in await c.agent_services()
            assert check_status(consul, "service:app-late") == "passing"


async def test_rejected_definition_raises_and_server_errors_are_retried(
    consul_version: str,
) -> None:
    async with ConsulEmulator(["dc1"], version=consul_version) as consul, client_for(consul) as c:
        dc1 = consul.dc("dc1")
        service = ServiceDefinition("app", service_id="app-x", check=TtlCheck(ttl=5))
        dc1.faults.fail_next(1, status=400, message="Invalid check: TTL must be > 0")
        with pytest.raises(BadRequest, match="TTL must be > 0"):
            async with ConsulRegistration(c, service, policy=FAST):
                pass
        dc1.faults.fail_next(2, status=500, message="No cluster leader")
        async with ConsulRegistration(c, service, policy=FAST) as registration:
            async with asyncio.timeout(5):
                await registration.wait_registered()
            assert "No cluster leader" in str(registration.last_error)
            assert "app-x" in await c.agent_services()


async def test_crashed_instance_is_reaped_after_deregister_critical_service_after(
    consul_version: str,
) -> None:
    config = AgentConfig(reap_interval=0.1, min_deregister_critical_after=0.0)
    async with (
        ConsulEmulator(["dc1"], agent_config=config, version=consul_version) as consul,
        client_for(consul) as c,
    ):
        service = ServiceDefinition(
            "app", service_id="app-crash", check=TtlCheck(ttl=0.3, deregister_critical_after=0.4)
        )
        registration = ConsulRegistration(c, service, policy=FAST, deregister_on_exit=False)
        await registration.start()
        await registration.aclose()  # the process "crashes": no heartbeat, no deregistration
        assert "app-crash" in await c.agent_services()
        await until(lambda: check_status(consul, "service:app-crash") is None, within=5)
        assert "app-crash" not in await c.agent_services()
