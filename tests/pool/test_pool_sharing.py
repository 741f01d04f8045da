"""Process-wide watch sharing: every pool (and AsyncResilientMinio) on the same Consul target in
one process and event loop uses one blocking-query stream, counted on the emulated agent; closing
the last user stops it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.watch import SHARED_WATCHES, ConsulIdentity, Watch, WatchRegistry
from mcresolve.minio import AsyncResilientMinio
from mcresolve.pool import EndpointPool, PoolSnapshot
from mcresolve.testing.consul import ConsulEmulator
from mcresolve.testing.consul.http_api import AgentHttpApi
from support import register, until

from .conftest import DC1, SERVICE
from .helpers import snapshot_until

TARGET = f"consul://{SERVICE}"
PATH = f"/v1/health/service/{SERVICE}"
DEADLINE = 10.0  # generous for a loaded machine; every wait below takes milliseconds


@pytest.fixture
async def consul(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ConsulEmulator]:
    """One datacenter with the service; the CONSUL_* environment points at its agent."""
    async with ConsulEmulator(["dc1"]) as emulator:
        url = emulator.dc("dc1").http_url
        for name in ("CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "CONSUL_HTTP_SSL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("CONSUL_HTTP_ADDR", url)
        async with ConsulClient(ConsulConfig.for_addresses(url)) as client:
            await register(client, SERVICE, DC1)
        yield emulator


def shared_registry(emulator: ConsulEmulator) -> WatchRegistry | None:
    """The process-wide registry this loop uses for the environment's configuration."""
    return SHARED_WATCHES.registry_for(ConsulConfig.from_env())


def the_watch(emulator: ConsulEmulator) -> Watch[object]:
    registry = shared_registry(emulator)
    assert registry is not None
    watches = list(registry.watches().values())
    assert len(watches) == 1, watches
    return watches[0]


def ports(snapshot: PoolSnapshot) -> set[int]:
    return {s.endpoint.port for s in snapshot.endpoints}


async def all_see(pools: list[EndpointPool], predicate: Callable[[PoolSnapshot], bool]) -> None:
    for pool in pools:
        await snapshot_until(pool, predicate, within=DEADLINE)


async def served_when_parked(api: AgentHttpApi, watches: list[Watch[object]]) -> int:
    """Requests the agent received, once each watch's latest request is held there (a watch
    counts a request just before sending it)."""
    await until(lambda: api.parked >= len(watches), within=DEADLINE, what="every watch parked")
    return api.requests_served(PATH)


async def assert_stream_stopped(emulator: ConsulEmulator, watch: Watch[object]) -> None:
    """After the last user closed: no registry, the loop ended, and the agent gets no further
    request even when the service changes (a change wakes any blocking request still held for
    the aborted one; once none is held, a live watch would have sent its next one)."""
    api = AgentHttpApi.of(emulator.dc("dc1"))
    assert shared_registry(emulator) is None
    assert not watch.running
    served = api.requests_served(PATH)
    emulator.dc("dc1").set_check_status("minio-dc1-c-ttl", "critical", "after close")
    await until(lambda: not api.parked, within=DEADLINE, what="no query held")
    assert api.requests_served(PATH) == served
    assert watch.requests == served


async def test_pools_on_one_target_share_one_request_stream(consul: ConsulEmulator) -> None:
    api = AgentHttpApi.of(consul.dc("dc1"))
    dc1 = consul.dc("dc1")
    # Three pools configured by the environment, two by an equal (separately built) config:
    # the same Consul identity, hence the same registry and watch.
    config = ConsulConfig.for_addresses(dc1.http_url)
    pools = [EndpointPool(TARGET) for _ in range(3)]
    pools += [EndpointPool(TARGET, consul=config) for _ in range(2)]
    try:
        for pool in pools:
            await pool.start()
        for pool in pools:
            assert ports(await pool.wait_ready(DEADLINE)) == {9001, 9002, 9003}
        watch = the_watch(consul)
        assert watch.subscriber_count == len(pools)
        flips = [("critical", {9001, 9003}), ("passing", {9001, 9002, 9003})]
        for status, expected in flips:
            dc1.set_check_status("minio-dc1-b-ttl", status, "flip")
            await all_see(pools, lambda s, expected=expected: ports(s) == expected)
        # One stream: the first read, one blocking request answered per change, and at most
        # the next one in flight; five separate streams would be at least 5 × 3.
        assert await served_when_parked(api, [watch]) == watch.requests <= 1 + len(flips) + 1
        for pool in pools[:-1]:
            await pool.aclose()
        assert watch.running and watch.subscriber_count == 1
        assert shared_registry(consul) is not None
    finally:
        for pool in pools:
            await pool.aclose()
    await assert_stream_stopped(consul, watch)


async def test_a_different_token_is_a_different_stream_and_never_part_of_the_key(
    consul: ConsulEmulator,
) -> None:
    api = AgentHttpApi.of(consul.dc("dc1"))
    token = "f00dfeed-sentinel-token"
    with_token = ConsulConfig.for_addresses(consul.dc("dc1").http_url, token=token)
    async with EndpointPool(TARGET) as plain, EndpointPool(TARGET, consul=with_token) as secret:
        await plain.wait_ready(DEADLINE)
        await secret.wait_ready(DEADLINE)
        registries = [
            SHARED_WATCHES.registry_for(ConsulConfig.from_env()),
            SHARED_WATCHES.registry_for(with_token),
        ]
        assert None not in registries and registries[0] is not registries[1]
        watches = [w for r in registries if r is not None for w in r.watches().values()]
        assert len(watches) == 2
        assert await served_when_parked(api, watches) == sum(w.requests for w in watches)
        keys = [key for key, _ in SHARED_WATCHES.active()]
        assert ConsulIdentity.of(with_token) in keys
        assert token not in repr(keys) and token not in repr(registries)
        for key in keys:
            if isinstance(key, ConsulIdentity):
                assert key.config.token is None


async def test_two_async_resilient_minio_on_one_target_share_the_stream(
    consul: ConsulEmulator,
) -> None:
    api = AgentHttpApi.of(consul.dc("dc1"))
    first = AsyncResilientMinio(
        TARGET, access_key="k", secret_key="s", secure=False, region="us-east-1"
    )
    second = AsyncResilientMinio(
        TARGET, access_key="k", secret_key="s", secure=False, region="us-east-1"
    )
    async with first, second:
        assert first.pool is not second.pool
        watch = the_watch(consul)
        assert watch.subscriber_count == 2
        consul.dc("dc1").set_check_status("minio-dc1-a-ttl", "critical", "flip")
        await all_see([first.pool, second.pool], lambda s: ports(s) == {9002, 9003})
        assert await served_when_parked(api, [watch]) == watch.requests <= 3
    await assert_stream_stopped(consul, watch)
