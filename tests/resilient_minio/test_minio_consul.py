"""ResilientMinio resolved through (emulated) Consul on the real SeaweedFS cluster: nodes
SIGKILLed under a stream of reads/writes/lists, a whole datacenter's storage lost with a
stage-3 target, writes while nodes die and restart, and the asyncio facade."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from resilient_minio_bed import (
    SERVICE,
    ConsulBed,
    make_client,
    unique,
    wait_all_passing,
)

from mcresolve.minio import AsyncResilientMinio, ResilientMinio
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.pool.planner import AttemptRecord
from mcresolve.testing.storage import StorageCluster
from support import until_sync

QUERY = f"consul+query://{SERVICE}"
HEALTH = f"consul://{SERVICE}"


class Workload:
    """Threads doing reads, writes and listings until stopped; every failure is recorded."""

    def __init__(self, client: ResilientMinio, bucket: str, prefix: str, threads: int = 3):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.written: dict[str, bytes] = {}
        self.failures: list[BaseException] = []
        self.calls = 0
        self.listing_problems: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(i,), name=f"workload-{i}")
            for i in range(threads)
        ]

    def _one(self, worker: int, step: int) -> None:
        name = f"{self.prefix}{worker:02d}-{step:05d}"
        payload = os.urandom(256 + step % 512)
        self.client.put_object(self.bucket, name, io.BytesIO(payload), len(payload))
        with self._lock:
            self.written[name] = payload
        response = self.client.get_object(self.bucket, name)
        try:
            assert response.read() == payload
        finally:
            response.close()
            response.release_conn()
        if step % 5 == 0:
            mine = f"{self.prefix}{worker:02d}-"
            names = [o.object_name for o in self.client.list_objects(self.bucket, prefix=mine)]
            expected = sorted(k for k in list(self.written) if k.startswith(mine))
            if names != expected:
                self.listing_problems.append(f"{mine}: {len(names)} vs {len(expected)}")

    def _loop(self, worker: int) -> None:
        step = 0
        while not self._stop.is_set():
            try:
                self._one(worker, step)
            except BaseException as exc:  # the test asserts there are none
                self.failures.append(exc)
            with self._lock:
                self.calls += 1
            step += 1

    def __enter__(self) -> Workload:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def wait_calls(self, count: int) -> None:
        target = self.calls + count
        until_sync(lambda: self.calls >= target or bool(self.failures), what=f"{count} calls")


def verify_written(client: ResilientMinio, bucket: str, written: dict[str, bytes]) -> None:
    for name, payload in written.items():
        assert client.get_object(bucket, name).read() == payload, name


def consul_client(storage: StorageCluster, bed: ConsulBed, target: str, **kw: Any) -> Any:
    return make_client(storage, target, consul=bed.config("dc1"), **kw)


def test_node_sigkilled_during_reads_writes_and_lists_costs_no_call(
    mcresolve_storage: StorageCluster, consul_bed: ConsulBed, bucket: str
) -> None:
    wait_all_passing(consul_bed, mcresolve_storage)
    prefix = unique("kill") + "/"
    with consul_client(
        mcresolve_storage, consul_bed, HEALTH + "?dc=dc1", list_page_size=7
    ) as client:
        with Workload(client, bucket, prefix) as work:
            work.wait_calls(15)
            mcresolve_storage.run(mcresolve_storage.node("dc1", 0).kill())
            work.wait_calls(30)
        assert work.failures == []
        assert work.listing_problems == []
        verify_written(client, bucket, work.written)
        listed = [o.object_name for o in client.list_objects(bucket, prefix, recursive=True)]
    assert listed == sorted(work.written)  # nothing lost, nothing twice


def test_whole_datacenter_storage_lost_is_survived_by_the_prepared_query(
    mcresolve_storage: StorageCluster, consul_bed: ConsulBed, bucket: str
) -> None:
    wait_all_passing(consul_bed, mcresolve_storage)
    prefix = unique("dcloss") + "/"
    with consul_client(mcresolve_storage, consul_bed, QUERY) as client:
        with Workload(client, bucket, prefix, threads=2) as work:
            work.wait_calls(10)
            mcresolve_storage.run(mcresolve_storage.kill_datacenter("dc1"))
            work.wait_calls(25)
            dc2_ports = {n.port for n in mcresolve_storage.nodes_in("dc2")}
            until_sync(
                lambda: {e.port for e in client.pool.snapshot().by_state("active")} <= dc2_ports,
                what="dc2 active",
            )
            work.wait_calls(10)
        assert work.failures == []
        assert work.listing_problems == []
        verify_written(client, bucket, work.written)


def test_whole_datacenter_storage_lost_is_survived_by_stage2_with_a_standby_datacenter(
    mcresolve_storage: StorageCluster, consul_bed: ConsulBed, bucket: str
) -> None:
    """``failover=dc2``: a health target (one datacenter by nature) keeps dc2's passing
    instances warm and moves there when both dc1 nodes die, with no failed call."""
    wait_all_passing(consul_bed, mcresolve_storage)
    prefix = unique("dcloss-stage2") + "/"
    with consul_client(mcresolve_storage, consul_bed, f"{HEALTH}?failover=dc2") as client:
        dc2_ports = {n.port for n in mcresolve_storage.nodes_in("dc2")}
        until_sync(
            lambda: dc2_ports <= {e.port for e in client.pool.snapshot().by_state("standby")},
            what="dc2 warm",
        )
        with Workload(client, bucket, prefix, threads=2) as work:
            work.wait_calls(10)
            mcresolve_storage.run(mcresolve_storage.kill_datacenter("dc1"))
            until_sync(
                lambda: {e.port for e in client.pool.snapshot().by_state("active")} <= dc2_ports,
                what="dc2 active",
            )
            work.wait_calls(10)
        assert work.failures == []
        assert work.listing_problems == []
        verify_written(client, bucket, work.written)


class ConsecutiveRefusals:
    """Per calling thread, the longest run of refused attempts (connections to dead nodes)
    that ended in a success: all within one call, as the workload records no failure."""

    def __init__(self) -> None:
        self._runs = threading.local()
        self.longest = 0
        self.refused = 0

    def __call__(self, record: AttemptRecord) -> None:
        run = getattr(self._runs, "count", 0)
        if record.refused:
            self._runs.count = run + 1
            self.refused += 1
        elif record.error is None:
            self.longest = max(self.longest, run)
            self._runs.count = 0


def test_whole_datacenter_lost_with_two_attempts_per_call_costs_no_call(
    mcresolve_storage: StorageCluster, consul_bed: ConsulBed, bucket: str
) -> None:
    """Guards the pool's rule that refused connections are not charged against
    ``max_attempts``: with two attempts per call and two dead nodes in dc1, a call during the
    loss (before Consul's checks turn critical and the prepared query answers with dc2) would
    otherwise fail after trying both. Without warm standby (``standby=0``): with it the first
    call that finds both dc1 nodes dead moves to dc2 at once, and no call meets them twice."""
    from resilient_minio_bed import READ_TIMEOUT

    wait_all_passing(consul_bed, mcresolve_storage)
    prefix = unique("dcloss2") + "/"
    two = CallPolicy(attempt_timeout=READ_TIMEOUT, deadline=30.0, max_attempts=2)
    assert len(mcresolve_storage.nodes_in("dc1")) == two.max_attempts
    refusals = ConsecutiveRefusals()
    target = f"{QUERY}?standby=0"
    with consul_client(mcresolve_storage, consul_bed, target, call_policy=two) as client:
        client.pool.add_attempt_listener(refusals)
        with Workload(client, bucket, prefix, threads=2) as work:
            work.wait_calls(6)
            mcresolve_storage.run(mcresolve_storage.kill_datacenter("dc1"))
            dc2_ports = {n.port for n in mcresolve_storage.nodes_in("dc2")}
            until_sync(
                lambda: {e.port for e in client.pool.snapshot().by_state("active")} <= dc2_ports,
                what="dc2 active",
            )
            work.wait_calls(6)
        assert work.failures == []
        assert work.listing_problems == []
        # Some call went through at least max_attempts refused attempts and still succeeded.
        assert refusals.longest >= two.max_attempts, (refusals.longest, refusals.refused)
        verify_written(client, bucket, work.written)


def test_every_object_reported_written_reads_back_while_nodes_die_and_restart(
    mcresolve_storage: StorageCluster, consul_bed: ConsulBed, bucket: str
) -> None:
    wait_all_passing(consul_bed, mcresolve_storage)
    prefix = unique("chaos") + "/"
    nodes = mcresolve_storage.nodes_in("dc1")
    with consul_client(mcresolve_storage, consul_bed, QUERY) as client:
        with Workload(client, bucket, prefix) as work:
            for round_ in range(4):
                node = nodes[round_ % 2]
                work.wait_calls(6)
                mcresolve_storage.run(node.kill())
                work.wait_calls(6)
                mcresolve_storage.run(node.restart())
        assert work.failures == []
        assert len(work.written) >= 40
        verify_written(client, bucket, work.written)


def run_async(factory: Callable[[], Any]) -> Any:
    import asyncio

    return asyncio.run(factory())


def test_async_facade_with_a_stage_2_target(
    mcresolve_storage: StorageCluster, consul_bed: ConsulBed, bucket: str
) -> None:
    from resilient_minio_bed import FAST_HTTP, POLICY

    prefix = unique("aio") + "/"

    async def scenario() -> tuple[list[str], list[str], list[bytes], float]:
        import asyncio

        async with AsyncResilientMinio(
            HEALTH,
            consul=consul_bed.config("dc1"),
            workers=8,
            http=FAST_HTTP,
            call_policy=POLICY,
            access_key=mcresolve_storage.access_key,
            secret_key=mcresolve_storage.secret_key,
            secure=False,
            region="us-east-1",
        ) as s3:
            names = [f"{prefix}{i:02d}" for i in range(12)]
            await asyncio.gather(
                *(s3.put_object(bucket, n, io.BytesIO(n.encode()), len(n)) for n in names)
            )
            listed = [o.object_name async for o in s3.list_objects(bucket, prefix=prefix)]
            awaited = [o.object_name for o in await s3.list_objects(bucket, prefix=prefix)]
            bodies = await asyncio.gather(*(s3.read_object(bucket, n) for n in names))
            assert s3.sync.http_policy.max_connections >= 8
            started = time.monotonic()
            url = await s3.presigned_get_object(bucket, names[0])
            assert url.startswith("http://")
            return listed, awaited, bodies, time.monotonic() - started

    listed, awaited, bodies, _ = run_async(scenario)
    expected = [f"{prefix}{i:02d}" for i in range(12)]
    assert listed == expected and awaited == expected
    assert bodies == [n.encode() for n in expected]
