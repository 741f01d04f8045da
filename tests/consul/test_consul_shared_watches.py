"""Process-wide shared registries (:class:`SharedWatchRegistries`): keyed by Consul identity (the
token only as a keyed digest, never stored or shown) and event loop, reference-counted by leases,
closed with the client they created when the last lease closes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mcresolve.consul import ConsulClient, ConsulConfig, ConsulError
from mcresolve.consul.blocking import BlockingPolicy
from mcresolve.consul.watch import (
    ConsulIdentity,
    HealthServiceSpec,
    SharedWatchRegistries,
    WatchPolicy,
    WatchRegistry,
)
from mcresolve.testing.consul import ConsulEmulator
from mcresolve.testing.consul.http_api import AgentHttpApi
from mcresolve.timing import BackoffPolicy
from support import until

SERVICE = "storage-object-minio"
PATH = f"/v1/health/service/{SERVICE}"
TOKEN = "5ec12e7-sentinel-token"
FAST = WatchPolicy(
    blocking=BlockingPolicy(wait=2.0, min_interval=0.02),
    backoff=BackoffPolicy(base=0.05, cap=0.3),
)
DEADLINE = 10.0


@pytest.fixture
async def emulator() -> AsyncIterator[ConsulEmulator]:
    async with ConsulEmulator(["dc1"]) as consul:
        consul.dc("dc1").agent.register_service(
            {
                "Name": SERVICE,
                "ID": "minio-0",
                "Port": 9000,
                "Check": {"CheckID": "minio-0-ttl", "TTL": "15m", "Status": "passing"},
            }
        )
        yield consul


def config_of(emulator: ConsulEmulator, token: str | None = None) -> ConsulConfig:
    return ConsulConfig.for_addresses(emulator.dc("dc1").http_url, token=token)


def test_identity_compares_every_setting_and_the_token_only_by_digest() -> None:
    config = ConsulConfig.for_addresses("127.0.0.1:8500", token=TOKEN)
    identity = ConsulIdentity.of(config)
    assert identity == ConsulIdentity.of(ConsulConfig.for_addresses("127.0.0.1:8500", token=TOKEN))
    assert hash(identity) == hash(ConsulIdentity.of(config.with_options()))
    assert identity.config.token is None  # the token itself is not kept
    assert TOKEN not in repr(identity) and TOKEN not in str(identity)
    assert TOKEN.encode() not in (identity.token_digest or b"")
    assert repr(identity) == "ConsulIdentity(http://127.0.0.1:8500, token=set, tls=False)"
    different = [
        config.with_options(token="another-token"),
        config.with_options(token=None),
        ConsulConfig.for_addresses("https://127.0.0.1:8500", token=TOKEN),
        ConsulConfig.for_addresses("127.0.0.1:8501", token=TOKEN),
        config.with_options(tls_server_name="consul.example"),
        config.with_options(verify=False),
        config.with_options(datacenter="dc2"),
    ]
    for other in different:
        assert ConsulIdentity.of(other) != identity, other
    lease = SharedWatchRegistries().lease(config)
    assert TOKEN not in repr(lease) and TOKEN not in repr(lease.key)


async def test_leases_share_one_registry_and_the_last_one_closes_it(
    emulator: ConsulEmulator,
) -> None:
    shared = SharedWatchRegistries(FAST)
    api = AgentHttpApi.of(emulator.dc("dc1"))
    spec = HealthServiceSpec(SERVICE)
    first = shared.lease(config_of(emulator, TOKEN))
    second = shared.lease(config_of(emulator, TOKEN))  # an equal, separately built config
    other_token = shared.lease(config_of(emulator, "another-token"))
    assert not first.bound and first.watches() == {}  # nothing happens before the first use
    subs = [lease.subscribe(spec) for lease in (first, second, other_token)]
    for sub in subs:
        async with asyncio.timeout(DEADLINE):
            await sub.next_update()
    assert subs[0].watch is subs[1].watch and subs[2].watch is not subs[0].watch
    assert first.client is second.client is not other_token.client
    loop = asyncio.get_running_loop()
    assert shared.active() == {
        (ConsulIdentity.of(config_of(emulator, TOKEN)), loop): 2,
        (ConsulIdentity.of(config_of(emulator, "another-token")), loop): 1,
    }
    registry = shared.registry_for(config_of(emulator, TOKEN))
    assert isinstance(registry, WatchRegistry) and registry.watches() == first.watches()
    client, watch = first.client, subs[0].watch
    # Closing a lease ends its own subscriptions (even ones its user forgot to close).
    await first.aclose()
    assert subs[0].closed and not subs[1].closed and watch.running
    assert shared.registry_for(config_of(emulator, TOKEN)) is registry
    await second.aclose()
    assert subs[1].closed and not watch.running
    assert shared.registry_for(config_of(emulator, TOKEN)) is None
    with pytest.raises(ConsulError, match="closed"):
        await client.status_leader()  # the client the registry created is closed with it
    await second.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        second.subscribe(spec)
    # the other token's watch holds its request
    await until(lambda: api.parked >= 1, within=DEADLINE, what="the other watch parked")
    assert other_token.watches() and len(shared.active()) == 1
    await other_token.aclose()
    assert shared.active() == {}


async def test_a_client_passed_in_is_shared_by_identity_and_left_open(
    emulator: ConsulEmulator,
) -> None:
    shared = SharedWatchRegistries(FAST)
    async with ConsulClient(config_of(emulator)) as client:
        leases = [shared.lease(client), shared.lease(client)]
        subs = [lease.subscribe(HealthServiceSpec(SERVICE)) for lease in leases]
        assert subs[0].watch is subs[1].watch and leases[0].client is client
        # An equal config is not that client: it gets its own registry and client.
        by_config = shared.lease(config_of(emulator))
        assert by_config.subscribe(HealthServiceSpec(SERVICE)).watch is not subs[0].watch
        assert by_config.client is not client
        for lease in [*leases, by_config]:
            await lease.aclose()
        assert shared.active() == {}
        assert await client.status_leader()  # still open


async def test_each_event_loop_gets_its_own_registry(emulator: ConsulEmulator) -> None:
    shared = SharedWatchRegistries(FAST)
    here = shared.lease(config_of(emulator))
    sub = here.subscribe(HealthServiceSpec(SERVICE))
    here_client = here.client
    config = config_of(emulator)

    async def on_another_loop() -> tuple[bool, int, str]:
        lease = shared.lease(config)
        other = lease.subscribe(HealthServiceSpec(SERVICE))
        async with asyncio.timeout(DEADLINE):
            update = await other.next_update()
        separate = other.watch is not sub.watch and lease.client is not here_client
        loops = len({loop for _, loop in shared.active()})
        try:
            here.subscribe(HealthServiceSpec(SERVICE))  # bound to the test's loop
            misuse = "no error"
        except RuntimeError as exc:
            misuse = str(exc)
        await lease.aclose()
        return separate and len(update.value) == 1, loops, misuse

    # The emulator runs on this loop: let it serve while the other loop runs in a thread.
    separate, loops, misuse = await asyncio.to_thread(asyncio.run, on_another_loop())
    assert separate and loops == 2
    assert "another event loop" in misuse
    assert len(shared.active()) == 1  # the other loop's registry was closed with its lease
    await here.aclose()
    assert shared.active() == {}
