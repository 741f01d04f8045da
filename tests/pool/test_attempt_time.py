"""The deadline is a promise: no attempt outlives it. Nodes that accept connections and never
answer ("blackholes": loopback listeners that never accept, so the kernel completes the TCP
handshake and nothing is ever read or written) hold a request until a timeout fires; a
synchronous attempt cannot be interrupted, so the pool tells the function the time it has
(:func:`mcresolve.pool.planner.attempt_time_left`) and ``ResilientMinio`` makes it the request's
timeout.

Assertions are structural: the time each attempt was given ends no later than the call's
deadline, and the error says the deadline ended the call. The wall-clock bound (deadline + 2 s)
is only the symptom the fix removes (the per-endpoint client's 10 s read timeout ran on after a
deadline of 0.8 s)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from mcresolve.endpoint import Endpoint
from mcresolve.errors import DeadlineExceeded
from mcresolve.minio import HttpPolicy, ResilientMinio
from mcresolve.pool import EndpointPool, PoolPolicy
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.pool.planner import AttemptRecord, AttemptTime, attempt_time, attempt_time_left

DEADLINE = 0.8
"""Seconds; far below the 10 s attempt timeout and read timeout, so only the time left can end
an attempt this early."""
POLICY = CallPolicy(deadline=DEADLINE, attempt_timeout=10.0)
SYMPTOM = DEADLINE + 2.0
"""Generous wall-clock bound: on the old code every call took the full 10 s read timeout."""


@pytest.fixture
def blackholes() -> Iterator[tuple[Endpoint, Endpoint]]:
    sockets = [socket.socket() for _ in range(2)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
            sock.listen(16)  # never accepted: connects succeed, nothing is ever answered
        yield tuple(Endpoint("127.0.0.1", s.getsockname()[1]) for s in sockets)  # type: ignore[return-value]
    finally:
        for sock in sockets:
            sock.close()


def _request(endpoint: Endpoint) -> bytes:
    """A blocking request bounded by the attempt's time, as the pool's contract asks."""
    left = attempt_time_left()
    assert left is not None and left <= DEADLINE
    with socket.create_connection((endpoint.address, endpoint.port), timeout=left) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        sock.settimeout(attempt_time_left())
        return sock.recv(1)


def _check_attempts(records: list[AttemptRecord], times: list[AttemptTime]) -> None:
    """Every attempt's time ended no later than the call's deadline. The first attempt of
    ``call_sync`` starts with the call, so the deadline is its start plus ``DEADLINE``."""
    assert records and len(times) == len(records)
    deadline = records[0].started + DEADLINE
    for record, given in zip(records, times, strict=True):
        assert given.ends <= deadline + 1e-9
        assert record.timeout <= DEADLINE and record.timeout == given.timeout
        assert not record.counted  # the deadline ended it, not the endpoint: not held against it


def test_attempt_time_is_none_outside_an_attempt() -> None:
    assert attempt_time() is None and attempt_time_left() is None


async def test_call_sync_tells_a_blocking_function_its_time(
    blackholes: tuple[Endpoint, Endpoint],
) -> None:
    async with EndpointPool(
        f"static://{blackholes[0].host_port},{blackholes[1].host_port}",
        policy=PoolPolicy(call=POLICY),
    ) as pool:
        records: list[AttemptRecord] = []
        times: list[AttemptTime] = []
        pool.add_attempt_listener(records.append)

        def fn(endpoint: Endpoint) -> bytes:
            given = attempt_time()
            assert given is not None
            times.append(given)
            return _request(endpoint)

        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as caught:
            await asyncio.to_thread(pool.call_sync, fn)
        elapsed = time.monotonic() - started
        assert list(caught.value.attempts) == records
        _check_attempts(records, times)
        # The thing tested is a time bound (the socket read waits the time left, not its own
        # 10 s timeout): the records above hold the decision, this generous ceiling the effect.
        assert elapsed < SYMPTOM
        assert all(s.state == "active" for s in pool.snapshot().endpoints)


async def test_call_tells_an_async_function_its_time_and_cancels_it_then() -> None:
    async with EndpointPool("static://127.0.0.1:9", policy=PoolPolicy(call=POLICY)) as pool:
        times: list[AttemptTime] = []

        async def fn(endpoint: Endpoint) -> None:
            given = attempt_time()
            assert given is not None
            times.append(given)
            await asyncio.Event().wait()

        with pytest.raises(DeadlineExceeded) as caught:
            await pool.call(fn)
        (record,) = caught.value.attempts
        assert record.timeout <= DEADLINE and times[0].timeout == record.timeout
        assert times[0].ends <= record.started + DEADLINE + 1e-3


def test_resilient_minio_request_timeout_is_the_time_left(
    blackholes: tuple[Endpoint, Endpoint],
) -> None:
    """Two hung MinIO nodes, a 0.8 s deadline and the default 10 s read timeout: the request
    waits the time left, not the read timeout, and the call ends with DeadlineExceeded."""
    with ResilientMinio(
        f"static://{blackholes[0].host_port},{blackholes[1].host_port}",
        access_key="minio",
        secret_key="minio123",
        secure=False,
        region="us-east-1",
        http=HttpPolicy(read_timeout=10.0),
        call_policy=POLICY,
    ) as client:
        records: list[AttemptRecord] = []
        client.pool.add_attempt_listener(records.append)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            client.stat_object("bucket", "key")
        elapsed = time.monotonic() - started
        assert records and all(r.timeout <= DEADLINE for r in records)
        assert not any(r.counted for r in records)
        # The thing tested is a time bound (the socket read waits the time left, not its own
        # 10 s timeout): the records above hold the decision, this generous ceiling the effect.
        assert elapsed < SYMPTOM
