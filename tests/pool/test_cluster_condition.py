"""One condition, one error: a storage cluster that cannot take writes (write quorum lost) ends
every call with :class:`~mcresolve.errors.ClusterUnavailable`, whatever the number of endpoints
in the pool and wherever the deadline falls. ``ResilientMinio`` maps it to
``StorageClusterDegraded``, so callers catch the condition by one type.

Two ways a MinIO cluster shows it, both classified by :mod:`mcresolve.minio.classify` as the
client does: every node answers ``503 XMinioWriteQuorum``; or every node accepts the PUT and
never answers (MinIO 2019 hangs writes while write quorum is lost), which is CLUSTER once every
endpoint was tried and no node answered in time. Before, the second gave
``ClusterUnavailable`` with one endpoint and ``DeadlineExceeded`` with two (the deadline passed
during the hung retry after the cluster wait). Time is the pool's injected clock: an attempt
takes the time it was given (hung) or 10 ms (answered)."""

from __future__ import annotations

import asyncio
import random

import pytest
import urllib3.exceptions

from manual_source import eps
from mcresolve.balancer.outlier import OutlierPolicy
from mcresolve.balancer.retry_budget import RetryBudgetPolicy
from mcresolve.endpoint import Endpoint
from mcresolve.errors import CallFailed, ClusterUnavailable, DeadlineExceeded
from mcresolve.minio.classify import Outcome, classify, classify_exception
from mcresolve.pool import EndpointPool, PoolPolicy
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.pool.planner import AttemptContext, AttemptRecord, VerdictLike, attempt_time
from mcresolve.sources.static import StaticSource
from mcresolve.timing import BackoffPolicy, Jitter

from .helpers import FakeClock

TINY = BackoffPolicy(base=0.001, cap=0.001, jitter=Jitter.NONE)
"""Real waits stay short; the scenario's time is the injected clock's."""


class WriteQuorumLost(Exception):
    """A node answered ``503 XMinioWriteQuorum``."""


def classifier(exc: BaseException, context: AttemptContext) -> VerdictLike:
    every = context.every_endpoint_tried
    if isinstance(exc, WriteQuorumLost):
        return classify(
            Outcome("PUT", status=503, code="XMinioWriteQuorum", from_every_endpoint=every)
        )
    return classify_exception(exc, method="PUT", from_every_endpoint=every, idempotent=True)


async def one_write(size: int, deadline: float, hung: bool, sync: bool) -> BaseException:
    clock = FakeClock()
    policy = PoolPolicy(
        call=CallPolicy(
            deadline=deadline, attempt_timeout=10.0, backoff=TINY, cluster_backoff=TINY
        ),
        retry_budget=RetryBudgetPolicy(min_retries_per_second=1e6),
    )

    def put(endpoint: Endpoint) -> None:
        given = attempt_time()
        if hung:
            clock.advance(given.timeout if given is not None else 10.0)
            raise urllib3.exceptions.ReadTimeoutError(None, "/bucket/key", "Read timed out.")
        clock.advance(0.01)
        raise WriteQuorumLost("503 XMinioWriteQuorum")

    async def put_async(endpoint: Endpoint) -> None:
        put(endpoint)

    endpoints = eps(*range(9001, 9001 + size))
    async with EndpointPool(
        StaticSource(endpoints), policy=policy, clock=clock, rng=random.Random(size)
    ) as pool:
        with pytest.raises(CallFailed) as caught:
            if sync:
                await asyncio.to_thread(pool.call_sync, put, classify=classifier)
            else:
                await pool.call(put_async, classify=classifier)
    return caught.value


@pytest.mark.parametrize("sync", [False, True], ids=["call", "call_sync"])
@pytest.mark.parametrize("hung", [True, False], ids=["hung", "503"])
@pytest.mark.parametrize("deadline", [30.0, 25.0, 12.5])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
async def test_write_quorum_lost_is_cluster_unavailable_whatever_the_pool_size(
    size: int, deadline: float, hung: bool, sync: bool
) -> None:
    """When the client could ask every node before the deadline, the condition is known and
    the error is ``ClusterUnavailable`` whatever the pool's size. Hung nodes that the deadline
    leaves no time to ask (``size × attempt_timeout > deadline``) make it unknowable: a node
    never asked may serve, and the honest error is ``DeadlineExceeded``."""
    error = await one_write(size, deadline, hung, sync)
    if hung and size * 10.0 > deadline:
        assert type(error) is DeadlineExceeded, f"{type(error).__name__}: {error}"
        return
    assert isinstance(error, ClusterUnavailable), f"{type(error).__name__}: {error}"
    assert error.verdict.error_class.value == "cluster"


class ReadQuorum(Exception):
    """A node answered ``503 XMinioReadQuorum`` from its own view of its peers."""


def read_classifier(exc: BaseException, context: AttemptContext) -> VerdictLike:
    if isinstance(exc, ReadQuorum):
        return classify(Outcome("GET", status=503, code="XMinioReadQuorum"))
    return classify_exception(exc, method="GET", from_every_endpoint=context.every_endpoint_tried)


async def test_a_node_answering_for_the_cluster_is_avoided_for_a_while_then_returns() -> None:
    """A node that has just restarted answers read quorum lost; the other serves. The call
    succeeds on the other node at once, the first is avoided (standby, out of the picker) for
    10 s of the pool's clock, probed when the other node fails meanwhile (and reinstated by
    the probe's success), and back in the picker once the avoidance is over."""
    clock = FakeClock()
    restarted, healthy = eps(9001, 9002)
    quorum_until = clock() + 5.0
    broken: set[int] = set()
    seen: list[int] = []
    policy = PoolPolicy(
        call=CallPolicy(backoff=TINY, cluster_backoff=TINY),
        outlier=OutlierPolicy(resets=5),  # the other node's resets do not eject it at once
    )

    async def get(endpoint: Endpoint) -> int:
        seen.append(endpoint.port)
        clock.advance(0.01)
        if endpoint.port in broken:
            raise ConnectionResetError("reset")
        if endpoint == restarted and clock() < quorum_until:
            raise ReadQuorum("503 XMinioReadQuorum")
        return endpoint.port

    async with EndpointPool(
        StaticSource((restarted, healthy)), policy=policy, clock=clock, rng=random.Random(3)
    ) as pool:
        assert await pool.call(get, classify=read_classifier, exclude=[healthy.key]) == 9002
        assert seen == [9001, 9002]  # asked of the other node at once, no wait
        status = {s.endpoint.port: s for s in pool.snapshot().endpoints}
        assert status[9001].state == "standby" and not status[9001].in_picker
        assert not status[9001].consecutive_failures  # not blamed
        for _ in range(5):
            assert await pool.call(get, classify=read_classifier) == 9002
        assert seen[2:] == [9002] * 5
        clock.advance(10.0)  # the avoidance is over (and the node has reconnected its peers)
        ports = {await pool.call(get, classify=read_classifier) for _ in range(30)}
        assert ports == {9001, 9002}
        # avoided again, then the other node breaks: the avoided node is probed and serves
        quorum_until = clock() + 1.0
        seen.clear()
        await pool.call(get, classify=read_classifier, exclude=[healthy.key])
        assert seen == [9001, 9002]
        clock.advance(1.0)
        broken.add(9002)
        records: list[AttemptRecord] = []
        pool.add_attempt_listener(records.append)
        assert await pool.call(get, classify=read_classifier) == 9001
        assert [(r.endpoint.port, r.probe, r.error is None) for r in records] == [
            (9002, False, False),
            (9001, True, True),
        ]
        assert pool.snapshot().by_state("standby") == ()  # the probe's success reinstated it
