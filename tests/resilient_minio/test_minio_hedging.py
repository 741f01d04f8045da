"""ResilientMinio hedges reads when its call policy asks for it, on the real SeaweedFS cluster:
one node's reads are delayed by its fault proxy, the hedge on the other node answers, and the
slow node's response, once it comes, is closed and its connection given back to the pool."""

from __future__ import annotations

import io
import time
from typing import Any

import urllib3
from resilient_minio_bed import make_client, static_target, unique

from mcresolve.balancer.picker import PickStrategy
from mcresolve.endpoint import Endpoint
from mcresolve.minio import HttpPolicy, ResilientMinio
from mcresolve.pool import PoolPolicy
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.pool.planner import AttemptRecord
from mcresolve.testing.storage import StorageCluster, StorageNode
from support import until_sync

#: Long timeouts: the slow node's answer must come back (a success to discard), not time out.
SLOW_HTTP = HttpPolicy(connect_timeout=5.0, read_timeout=20.0)
HEDGED = CallPolicy(deadline=60.0, attempt_timeout=20.0, hedge_delay=0.05, max_hedges=1)
#: Round robin puts a first attempt on each node within two calls (nothing fails: no ejection).
ROUND_ROBIN = PoolPolicy(strategy=PickStrategy.ROUND_ROBIN)
DELAY = 1.0


def connections_in_use(client: ResilientMinio, endpoint: Endpoint) -> int:
    """Connections of ``endpoint``'s HTTP pool taken and not given back."""
    http: urllib3.PoolManager = client.client_for(endpoint)._http
    pools = [http.pools[key] for key in http.pools.keys()]  # noqa: SIM118 (not a dict)
    return sum(p.pool.maxsize - p.pool.qsize() for p in pools if p.pool is not None)  # type: ignore[attr-defined]


def _hedged_read(
    client: ResilientMinio, slow: StorageNode, read: Any
) -> tuple[Any, list[AttemptRecord]]:
    """Run ``read()`` until a call's first attempt went to ``slow`` (its answer then comes
    after a hedge's); that call's value and the records of the attempts it started that had
    finished when it returned. The pool's clock is :func:`time.monotonic`."""
    records: list[AttemptRecord] = []
    remove = client.pool.add_attempt_listener(records.append)
    try:
        for _ in range(4):  # round robin: one of the first two calls starts on the slow node
            began = time.monotonic()
            value = read()
            mine = [r for r in records if r.started >= began]
            if any(r.hedge for r in mine) and all(r.endpoint.port != slow.port for r in mine):
                return value, mine
            if hasattr(value, "release_conn"):
                value.close()
                value.release_conn()
        raise AssertionError("no call started on the slow node")
    finally:
        remove()


def test_get_object_hedges_around_a_slow_node_and_releases_the_losing_response(
    mcresolve_storage: StorageCluster, bucket: str
) -> None:
    slow, fast = mcresolve_storage.nodes_in("dc1")[:2]
    name = unique("hedge-get")
    data = b"h" * 4096
    with make_client(
        mcresolve_storage,
        static_target(mcresolve_storage),
        http=SLOW_HTTP,
        call_policy=HEDGED,
        pool_policy=ROUND_ROBIN,
    ) as client:
        client.put_object(bucket, name, io.BytesIO(data), len(data))
        slow_endpoint = next(
            e for e in client.pool.snapshot().endpoints if e.endpoint.port == slow.port
        ).endpoint
        slow.proxy.delay(DELAY, methods=["GET"])
        response, records = _hedged_read(client, slow, lambda: client.get_object(bucket, name))
        try:
            assert response.read() == data
        finally:
            response.close()
            response.release_conn()
        [hedge] = records
        assert hedge.endpoint.port == fast.port and hedge.error is None
        # The slow node answers later: its response is closed and its connection back.
        until_sync(
            lambda: (
                connections_in_use(client, slow_endpoint) == 0
                and client.pool.snapshot().endpoints[0].in_flight == 0
                and client.pool.snapshot().endpoints[1].in_flight == 0
            ),
            what="the losing response released",
        )


def test_stat_object_hedges_around_a_slow_node(
    mcresolve_storage: StorageCluster, bucket: str
) -> None:
    slow, fast = mcresolve_storage.nodes_in("dc1")[:2]
    name = unique("hedge-stat")
    with make_client(
        mcresolve_storage,
        static_target(mcresolve_storage),
        http=SLOW_HTTP,
        call_policy=HEDGED,
        pool_policy=ROUND_ROBIN,
    ) as client:
        client.put_object(bucket, name, io.BytesIO(b"s" * 10), 10)
        slow.proxy.delay(DELAY, methods=["HEAD"])
        stat, records = _hedged_read(client, slow, lambda: client.stat_object(bucket, name))
        assert stat.size == 10
        [hedge] = records
        assert hedge.endpoint.port == fast.port and hedge.error is None


def test_writes_do_not_hedge_even_when_the_policy_does(
    mcresolve_storage: StorageCluster, bucket: str
) -> None:
    slow = mcresolve_storage.nodes_in("dc1")[0]
    with make_client(
        mcresolve_storage,
        static_target(mcresolve_storage),
        http=SLOW_HTTP,
        call_policy=HEDGED,
        pool_policy=ROUND_ROBIN,
    ) as client:
        slow.proxy.delay(0.3, methods=["PUT"])
        records: list[AttemptRecord] = []
        client.pool.add_attempt_listener(records.append)
        for _ in range(2):  # one of them goes to the slow node
            client.put_object(bucket, unique("no-hedge"), io.BytesIO(b"w"), 1)
        assert len(records) == 2 and not any(r.hedge for r in records)
