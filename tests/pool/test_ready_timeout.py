"""``ready_timeout`` of the MinIO wrappers (and ``EndpointPool.start_in_thread``): a number waits
that long for the pool's first endpoint, ``None`` does not wait (calls wait within their own
deadline instead). The source here is a Consul target whose agent refuses connections, so the
pool never gets an endpoint."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from mcresolve.consul import ConsulConfig
from mcresolve.errors import DeadlineExceeded, NoEndpointAvailable
from mcresolve.minio import AsyncResilientMinio, ResilientMinio
from mcresolve.pool import EndpointPool
from mcresolve.pool.call_policy import CallPolicy

TARGET = "consul://storage-object-minio"


@pytest.fixture
def dead_agent() -> Iterator[ConsulConfig]:
    """A Consul address on loopback that refuses connections (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        yield ConsulConfig.for_addresses(
            f"127.0.0.1:{port}", connect_timeout=0.5, request_timeout=1.0
        )


def test_sync_client_waits_ready_timeout_then_fails(dead_agent: ConsulConfig) -> None:
    started = time.monotonic()
    with pytest.raises(NoEndpointAvailable, match=r"no endpoint within 0\.3 s"):
        ResilientMinio(TARGET, secure=False, consul=dead_agent, ready_timeout=0.3)
    # The message shows the decision (0.3 s, not 10 s); a wait is a time bound, so a generous
    # ceiling checks it is carried out (a lower bound cannot flake under load).
    assert 0.3 <= time.monotonic() - started < 5.0


def test_sync_client_with_ready_timeout_none_does_not_wait(dead_agent: ConsulConfig) -> None:
    started = time.monotonic()
    client = ResilientMinio(TARGET, secure=False, consul=dead_agent, ready_timeout=None)
    try:
        # "Does not wait" is a time bound: a generous ceiling, far under the 10 s default.
        assert time.monotonic() - started < 3.0
        assert client.pool.snapshot().endpoints == ()
        with pytest.raises(DeadlineExceeded, match="waiting for an endpoint"):
            client.with_policy(deadline=0.2).bucket_exists("bucket")
    finally:
        client.close()


def test_start_in_thread_ready_timeout_none(dead_agent: ConsulConfig) -> None:
    background = EndpointPool.start_in_thread(TARGET, consul=dead_agent, ready_timeout=None)
    try:
        assert background.snapshot().endpoints == ()
    finally:
        background.close()


async def test_async_client_ready_timeout(dead_agent: ConsulConfig) -> None:
    client = AsyncResilientMinio(TARGET, secure=False, consul=dead_agent, ready_timeout=0.2)
    with pytest.raises(NoEndpointAvailable, match=r"no endpoint within 0\.2 s"):
        await client.start()
    await client.aclose()
    async with AsyncResilientMinio(
        TARGET, consul=dead_agent, ready_timeout=None, call_policy=CallPolicy(deadline=0.2)
    ) as waitless:
        assert waitless.pool.snapshot().endpoints == ()
        with pytest.raises(DeadlineExceeded, match="waiting for an endpoint"):
            await waitless.bucket_exists("bucket")
