"""Blocking-query watches against the Consul emulator: wake-up on a check flip, last-known-good
through agent outages, index rewind, agent failover, errors as events, sharing, cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from consul_replay import CountingProxy, Planned, ReplayServer

from mcresolve.consul import ConsulClient, ConsulConfig, ConsulTimeout, ServerError
from mcresolve.consul.blocking import BlockingPolicy
from mcresolve.consul.watch import (
    HealthServiceSpec,
    Subscription,
    Watch,
    WatchFailure,
    WatchPolicy,
    WatchRegistry,
    WatchUpdate,
)
from mcresolve.testing.consul import ConsulEmulator
from mcresolve.testing.consul.datacenter import Datacenter
from mcresolve.testing.consul.http_api import AgentHttpApi
from mcresolve.timing import BackoffPolicy
from support import until

SERVICE = "storage-object-minio"
FAST = WatchPolicy(
    blocking=BlockingPolicy(wait=2.0, min_interval=0.02),
    backoff=BackoffPolicy(base=0.05, cap=0.3),
)
DEADLINE = 10.0  # generous bound for a loaded 2-core machine; typical values are milliseconds


@pytest.fixture
async def emulator() -> AsyncIterator[ConsulEmulator]:
    async with ConsulEmulator(["dc1"]) as consul:
        yield consul


def address_of(emulator: ConsulEmulator) -> str:
    return emulator.dc("dc1").http_url.removeprefix("http://")


async def register(client: ConsulClient, count: int = 3) -> None:
    for i in range(count):
        await client.agent_service_register(
            {
                "Name": SERVICE,
                "ID": f"minio-{i}",
                "Port": 9000 + i,
                "Tags": ["minio", "v1"],
                "Check": {"CheckID": f"minio-{i}-ttl", "TTL": "15m", "Status": "passing"},
            }
        )


async def next_event(sub: Subscription[object]) -> WatchUpdate[object] | WatchFailure[object]:
    async with asyncio.timeout(DEADLINE):
        return await anext(sub)


async def next_update(sub: Subscription[object]) -> WatchUpdate[object]:
    async with asyncio.timeout(DEADLINE):
        return await sub.next_update()


async def parked(dc: Datacenter, count: int = 1) -> None:
    """Wait (with a deadline) until ``dc``'s agent holds ``count`` blocking queries: the watches'
    next requests have arrived (so they were counted by any proxy) and wait for a change."""
    api = AgentHttpApi.of(dc)
    await until(lambda: api.parked >= count, within=DEADLINE, what=f"{count} parked queries")


def ids(update: WatchUpdate[object]) -> list[str]:
    return sorted(e.service.id for e in update.value)  # type: ignore[attr-defined]


async def test_check_flip_wakes_the_watch_quickly(emulator: ConsulEmulator) -> None:
    dc1 = emulator.dc("dc1")
    async with ConsulClient(ConsulConfig.for_addresses(address_of(emulator))) as client:
        await register(client)
        async with WatchRegistry(client, FAST) as registry:
            spec = HealthServiceSpec(SERVICE, tags=("minio",))
            sub = registry.subscribe(spec)
            first = await next_update(sub)
            assert ids(first) == ["minio-0", "minio-1", "minio-2"]
            endpoints = spec.endpoints(first.value)  # type: ignore[arg-type]
            assert sorted(e.port for e in endpoints) == [9000, 9001, 9002]
            assert all(e.datacenter == "dc1" and e.node == "n1" for e in endpoints)
            latencies = []
            for check, status, expected in [
                ("minio-1-ttl", "critical", ["minio-0", "minio-2"]),
                ("minio-1-ttl", "passing", ["minio-0", "minio-1", "minio-2"]),
            ]:
                await parked(dc1)  # the watch's next blocking request waits on the agent
                flipped = time.monotonic()
                dc1.set_check_status(check, status, "flip")
                update = await next_update(sub)
                latencies.append(update.received_at - flipped)
                assert ids(update) == expected
            assert max(latencies) < 1.0, latencies


async def test_wake_ups_without_a_change_are_not_delivered(emulator: ConsulEmulator) -> None:
    dc1 = emulator.dc("dc1")
    async with ConsulClient(ConsulConfig.for_addresses(address_of(emulator))) as client:
        await register(client)
        async with WatchRegistry(client, FAST) as registry:
            sub = registry.subscribe(HealthServiceSpec(SERVICE))
            await next_update(sub)
            dc1.set_check_status("minio-1-ttl", "critical", "down")
            assert ids(await next_update(sub)) == ["minio-0", "minio-2"]
            watch = sub.watch
            before = watch.requests
            # critical -> warning wakes a ?passing watcher, but the filtered answer is the same.
            dc1.set_check_status("minio-1-ttl", "warning", "still out")
            # Until the wake-up was answered and the watch re-armed.
            await until(lambda: watch.requests >= before + 2, within=DEADLINE, what="re-armed")
            dc1.set_check_status("minio-2-ttl", "critical", "down")
            assert ids(await next_update(sub)) == ["minio-0"]


async def test_agent_outage_keeps_last_known_good_and_recovers(emulator: ConsulEmulator) -> None:
    dc1 = emulator.dc("dc1")
    async with ConsulClient(ConsulConfig.for_addresses(address_of(emulator))) as client:
        await register(client)
        async with WatchRegistry(client, FAST) as registry:
            sub = registry.subscribe(HealthServiceSpec(SERVICE))
            good = await next_update(sub)
            await emulator.stop_agent("dc1")
            failure = await next_event(sub)
            assert isinstance(failure, WatchFailure)
            assert failure.last_update is good and failure.failures == 1
            assert failure.last_good_age() is not None
            assert sub.latest is good  # last-known-good stays available
            # The state changes while the agent is away; the watch sees it once it is back.
            dc1.set_check_status("minio-0-ttl", "critical", "down")
            while not (
                isinstance(event := await next_event(sub), WatchFailure) and event.failures >= 2
            ):
                pass
            await emulator.start_agent("dc1")
            update = await next_update(sub)
            assert update.recovered and ids(update) == ["minio-1", "minio-2"]
            assert sub.watch.failure is None


async def test_index_rewind_is_recovered(emulator: ConsulEmulator) -> None:
    dc1 = emulator.dc("dc1")
    policy = WatchPolicy(blocking=BlockingPolicy(wait=1.0, min_interval=0.02))
    async with ConsulClient(ConsulConfig.for_addresses(address_of(emulator))) as client:
        await register(client)
        async with WatchRegistry(client, policy) as registry:
            sub = registry.subscribe(HealthServiceSpec(SERVICE))
            first = await next_update(sub)
            assert first.meta.index is not None and first.meta.index > 5
            dc1.rewind_index(1)
            # The request holding the old (now too high) index is released at the end of its
            # wait with a lower index; the watch resets and resynchronises.
            dc1.set_check_status("minio-0-ttl", "critical", "down")
            update = await next_update(sub)
            assert ids(update) == ["minio-1", "minio-2"]
            # From now on changes arrive promptly again (the watch blocks on the new index).
            await parked(dc1)
            flipped = time.monotonic()
            dc1.set_check_status("minio-1-ttl", "critical", "down")
            update = await next_update(sub)
            assert ids(update) == ["minio-2"]
            assert update.received_at - flipped < 0.5
            assert update.meta.index is not None and update.meta.index < first.meta.index


async def test_fails_over_to_the_next_agent_without_a_gap(emulator: ConsulEmulator) -> None:
    dc1 = emulator.dc("dc1")
    proxy = CountingProxy(dc1.http_url)
    await proxy.start()
    try:
        config = ConsulConfig.for_addresses(proxy.address, address_of(emulator))
        async with ConsulClient(config) as client:
            await register(client)
            async with WatchRegistry(client, FAST) as registry:
                sub = registry.subscribe(HealthServiceSpec(SERVICE))
                await next_update(sub)
                assert client.current_address.port == proxy.port
                await parked(dc1)  # a blocking request is in flight through the proxy
                await proxy.stop()
                dc1.set_check_status("minio-2-ttl", "critical", "down")
                update = await next_update(sub)
                assert ids(update) == ["minio-0", "minio-1"] and not update.recovered
                assert client.current_address.port == dc1.http_port
                assert sub.watch.failure is None
    finally:
        await proxy.stop()


async def test_error_answers_become_events_then_recover(emulator: ConsulEmulator) -> None:
    dc1 = emulator.dc("dc1")
    async with ConsulClient(ConsulConfig.for_addresses(address_of(emulator))) as client:
        await register(client)
        async with WatchRegistry(client, FAST) as registry:
            sub = registry.subscribe(HealthServiceSpec(SERVICE))
            good = await next_update(sub)
            dc1.faults.fail_next(2, message="No cluster leader")
            dc1.set_check_status("minio-0-ttl", "warning", "wake the watch")
            failures = [await next_event(sub), await next_event(sub)]
            assert all(isinstance(f, WatchFailure) for f in failures)
            errors = [f.error for f in failures if isinstance(f, WatchFailure)]
            assert all(isinstance(e, ServerError) and e.no_cluster_leader for e in errors)
            update = await next_update(sub)
            assert update.recovered and ids(update) == ["minio-1", "minio-2"]
            assert ids(good) == ["minio-0", "minio-1", "minio-2"]


async def test_one_request_stream_for_many_subscribers(emulator: ConsulEmulator) -> None:
    dc1 = emulator.dc("dc1")
    proxy = CountingProxy(dc1.http_url)
    await proxy.start()
    try:
        async with ConsulClient(ConsulConfig.for_addresses(proxy.address)) as client:
            await register(client)
            registry = WatchRegistry(client, FAST)
            path = f"/v1/health/service/{SERVICE}"
            specs = [
                HealthServiceSpec(SERVICE, tags=("minio", "v1")),
                HealthServiceSpec(SERVICE, tags=("V1", "MINIO", "v1")),  # same watch
            ]
            subs = [registry.subscribe(specs[i % 2]) for i in range(6)]
            assert len(registry.watches()) == 1
            for sub in subs:
                assert ids(await next_update(sub)) == ["minio-0", "minio-1", "minio-2"]
            for flip in ("critical", "passing", "critical"):
                dc1.set_check_status("minio-0-ttl", flip, "")
                for sub in subs:
                    await next_update(sub)
            # A late subscriber gets the current state at once, without a new request.
            late = registry.subscribe(specs[0])
            assert ids(await next_update(late)) == ["minio-1", "minio-2"]
            watch = late.watch
            await parked(dc1)  # (a watch counts a request just before sending it)
            # One stream: 1 initial read + 1 blocking request per change (+ the one in flight),
            # not 7 of each.
            assert proxy.count(path) == watch.requests <= 6
            # A different filter is a different watch.
            other = registry.subscribe(HealthServiceSpec(SERVICE, passing=False))
            assert len(registry.watches()) == 2
            assert ids(await next_update(other)) == ["minio-0", "minio-1", "minio-2"]
            await parked(dc1, 2)  # every request sent so far has reached the proxy
            await other.aclose()
            assert len(registry.watches()) == 1
            for sub in [*subs, late][:-1]:
                await sub.aclose()
            assert watch.running and len(registry.watches()) == 1
            await late.aclose()  # the last subscriber: the watch stops
            assert not watch.running and not registry.watches()
            # No request after the watch stopped. Bounded by events rather than a quiet period:
            # a control watch through the same proxy is woken by the next change and sends its
            # next request; a watch still running would have been woken by the same change and
            # would have re-requested alongside it. So once the proxy has seen the control
            # watch's requests, it must have seen nothing else.
            count, stopped_requests = proxy.count(path), watch.requests
            async with WatchRegistry(client, FAST) as control_registry:
                control = control_registry.subscribe(HealthServiceSpec(SERVICE, passing=False))
                await next_update(control)
                dc1.set_check_status("minio-0-ttl", "passing", "")
                await next_update(control)
                # its request after the change, seen by the proxy
                await until(lambda: control.watch.requests >= 3, within=DEADLINE)
                await until(
                    lambda: proxy.count(path) >= count + control.watch.requests, within=DEADLINE
                )
                assert proxy.count(path) == count + control.watch.requests
            assert watch.requests == stopped_requests
            with pytest.raises(StopAsyncIteration):
                await anext(late)
            await registry.aclose()
    finally:
        await proxy.stop()


async def test_callbacks_and_standalone_watch(emulator: ConsulEmulator) -> None:
    async with ConsulClient(ConsulConfig.for_addresses(address_of(emulator))) as client:
        await register(client, 1)
        watch = Watch(client, HealthServiceSpec(SERVICE), FAST)
        seen: list[object] = []
        got = asyncio.Event()

        def on_event(event: object) -> None:
            seen.append(event)
            got.set()

        def broken(event: object) -> None:
            raise RuntimeError("a buggy subscriber must not break the watch")

        sub = watch.subscribe(on_event)
        watch.subscribe(broken)
        watch.start()
        async with asyncio.timeout(DEADLINE):
            await got.wait()
        assert isinstance(seen[0], WatchUpdate) and watch.subscriber_count == 2
        await sub.aclose()
        assert watch.subscriber_count == 1
        await watch.aclose()
        assert not watch.running and watch.subscriber_count == 0


async def test_a_silent_agent_cannot_hang_the_watch(replay: ReplayServer) -> None:
    # Accepts the request and never answers (blackholed). The watch's first request is an
    # immediate read (index 0, which never blocks): it is bounded by the ordinary request
    # timeout, not by the long poll's wait + wait/16 + margin (here 66.75 s), so the watch
    # reports the silent agent, by name, as early as a non-blocking call would.
    replay.answer(Planned(delay=120.0))
    policy = WatchPolicy(blocking=BlockingPolicy(wait=60), backoff=BackoffPolicy(base=5, cap=5))
    config = ConsulConfig.for_addresses(replay.address, request_timeout=0.5)
    client = ConsulClient(config)
    async with client, WatchRegistry(client, policy) as registry:
        sub = registry.subscribe(HealthServiceSpec(SERVICE))
        event = await next_event(sub)
        assert isinstance(event, WatchFailure) and isinstance(event.error, ConsulTimeout)
        assert event.error.tried == ((f"http://{replay.address}", "no answer within 0.5 s"),)
        assert event.last_update is None and event.retry_in > 0
    assert replay.seen[0].query["index"] == "0"


async def test_rate_limit_and_index_sanity_against_a_churning_agent(replay: ReplayServer) -> None:
    # An agent that answers every blocking request at once with index 0 (a Consul bug the docs
    # warn about) and a different body each time (a churning service): the watch neither blocks on
    # index 0 nor turns into a busy loop.
    counter = iter(range(10**6))

    def churn() -> Planned:
        body = f'[{{"Node": {{"Node": "n", "Address": "10.0.0.{next(counter) % 250}"}},'
        body += ' "Service": {"ID": "i", "Service": "s", "Port": 1}}]'
        return Planned(body=body.encode(), headers={"X-Consul-Index": "0"})

    replay.answer(*(churn() for _ in range(40)))
    interval = 0.05
    policy = WatchPolicy(blocking=BlockingPolicy(wait=5, min_interval=interval, burst=2))
    client = ConsulClient(ConsulConfig.for_addresses(replay.address))
    async with client, WatchRegistry(client, policy) as registry:
        sub = registry.subscribe(HealthServiceSpec(SERVICE))
        started = time.monotonic()
        for _ in range(12):
            await next_update(sub)
        elapsed = time.monotonic() - started
    # 12 answers need at least (12 - burst) refills of the bucket.
    assert elapsed >= (12 - 2) * interval * 0.9
    sent = [s.query["index"] for s in replay.seen]
    assert sent[0] == "0" and set(sent[1:]) == {"1"}
