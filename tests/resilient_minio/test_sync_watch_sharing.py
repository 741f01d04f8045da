"""Synchronous ResilientMinio clients built from targets share one process-wide loop thread
(:data:`mcresolve.pool.loop_thread.SHARED_LOOP_THREAD`), hence their Consul watches: two clients on
one target make one blocking-query stream, counted on the emulated agent; closing the last one
stops the thread. No storage needed: the clients resolve, they send no S3 request."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from resilient_minio_bed import SERVICE, ConsulBed

import mcresolve.pool.endpoint_pool
from mcresolve.consul.watch import SHARED_WATCHES
from mcresolve.minio import ResilientMinio
from mcresolve.pool import EndpointPool
from mcresolve.pool.loop_thread import SHARED_LOOP_THREAD, SharedLoopThread
from mcresolve.testing.consul.http_api import AgentHttpApi
from support import until_sync

TARGET = f"consul://{SERVICE}"
PATH = f"/v1/health/service/{SERVICE}"
INSTANCES = (("sync-a", 9201), ("sync-b", 9202))


@pytest.fixture
def consul() -> Iterator[ConsulBed]:
    """An emulated Consul (on its own loop thread) with two passing instances in dc1."""
    bed = ConsulBed()
    try:
        for service_id, port in INSTANCES:
            bed.request(
                "dc1",
                "PUT",
                "/v1/agent/service/register",
                {
                    "Name": SERVICE,
                    "ID": service_id,
                    "Address": "127.0.0.1",
                    "Port": port,
                    "Check": {"CheckID": f"{service_id}-ttl", "TTL": "15m", "Status": "passing"},
                },
            )
        yield bed
    finally:
        bed.close()


@pytest.fixture
def loop_thread(monkeypatch: pytest.MonkeyPatch) -> SharedLoopThread:
    """A fresh process-wide loop thread for background pools, so that a client another test
    left open cannot keep it alive."""
    fresh = SharedLoopThread(name="mcresolve-loop-test")
    monkeypatch.setattr(mcresolve.pool.endpoint_pool, "SHARED_LOOP_THREAD", fresh)
    return fresh


def ports(client: ResilientMinio) -> set[int]:
    return {e.port for e in client.pool.snapshot().by_state("active")}


def test_two_sync_clients_on_one_target_share_the_loop_thread_and_one_watch(
    consul: ConsulBed, loop_thread: SharedLoopThread
) -> None:
    config = consul.config("dc1")
    api = AgentHttpApi.of(consul.emulator.dc("dc1"))
    before = api.requests_served(PATH)
    kwargs: dict[str, Any] = {
        "access_key": "k",
        "secret_key": "s",
        "secure": False,
        "region": "us-east-1",
        "consul": config,
    }
    first = ResilientMinio(TARGET, **kwargs)
    try:
        second = ResilientMinio(TARGET, **kwargs)
    except BaseException:
        first.close()
        raise
    try:
        thread = loop_thread.thread
        assert thread is not None and thread.is_alive() and loop_thread.users == 2
        assert first.pool is not second.pool
        assert first.pool._loop is second.pool._loop  # one loop for both pools
        registry = SHARED_WATCHES.registry_for(config, first.pool._loop)
        assert registry is not None
        (watch,) = registry.watches().values()
        assert watch.subscriber_count == 2
        consul.request("dc1", "PUT", "/v1/agent/check/fail/sync-a-ttl")
        for client in (first, second):
            until_sync(lambda c=client: ports(c) == {9202}, what="instance a removed")
        # One stream: the first read, one blocking request answered by the change and the next
        # one held by the agent. Two streams would make at least four.
        until_sync(lambda: api.parked >= 1, what="the next blocking request parked")
        served = api.requests_served(PATH) - before
        assert served == watch.requests <= 3
    finally:
        first.close()
        assert loop_thread.users == 1 and thread.is_alive()
        second.close()
    assert loop_thread.users == 0 and loop_thread.thread is None
    assert not thread.is_alive()
    assert SHARED_WATCHES.registry_for(config, first.pool._loop) is None


def test_the_shared_loop_thread_restarts_after_the_last_user_left() -> None:
    # what background pools use:
    assert mcresolve.pool.endpoint_pool.SHARED_LOOP_THREAD is SHARED_LOOP_THREAD
    loops = SharedLoopThread(name="test-shared-loop")
    first = loops.acquire()
    thread = loops.thread
    assert thread is not None and thread.daemon and loops.acquire() is first
    loops.release()
    assert thread.is_alive() and loops.users == 1
    loops.release()
    assert not thread.is_alive() and first.is_closed() and loops.thread is None
    with pytest.raises(RuntimeError):
        loops.release()
    second = loops.acquire()
    try:
        assert second is not first and loops.thread is not thread
    finally:
        loops.release()


def test_a_pool_that_fails_to_start_releases_the_shared_thread(
    loop_thread: SharedLoopThread,
) -> None:
    from mcresolve.errors import NoEndpointAvailable
    from mcresolve.sources.static import StaticSource

    with pytest.raises(NoEndpointAvailable):
        EndpointPool.start_in_thread(lambda: StaticSource(()), ready_timeout=0.05)
    assert loop_thread.users == 0 and loop_thread.thread is None
    assert not any(t.name == "mcresolve-loop-test" for t in threading.enumerate())


def test_a_background_pool_refuses_to_close_from_its_own_loop_thread(
    loop_thread: SharedLoopThread,
) -> None:
    background = EndpointPool.start_in_thread("static://127.0.0.1:9301")
    try:

        async def close_inside() -> None:
            background.close()  # would wait for the loop it runs on

        with pytest.raises(RuntimeError, match="shared loop thread"):
            background.run(close_inside(), timeout=10)
        assert background.pool.snapshot().usable == 1  # still running
    finally:
        background.close()
    assert loop_thread.users == 0
