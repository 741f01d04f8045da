"""ResilientMinio on the real SeaweedFS cluster through static targets: round trips, answers
that must not be retried, cluster-wide error codes, node-local faults, resumable reads and
listings, uploads that retry per part, presigning."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from typing import Any

import pytest
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from resilient_minio_bed import (
    POLICY,
    READ_TIMEOUT,
    make_client,
    static_target,
    unique,
)

from mcresolve.balancer.outlier import OutlierPolicy
from mcresolve.balancer.picker import PickStrategy
from mcresolve.minio import (
    ExternalEndpoint,
    ObjectChangedDuringRead,
    ResilientMinio,
    ResumableResponse,
    StorageClusterDegraded,
    UploadNotRetryable,
)
from mcresolve.pool import PoolPolicy
from mcresolve.testing.faultproxy import FaultMode
from mcresolve.testing.storage import StorageCluster, StorageNode
from support import until_sync

MiB = 1024 * 1024
#: Round robin puts a first attempt on every node within len(nodes) calls, so a faulty node is
#: certainly tried; a long ejection keeps it out for the rest of the test on a slow machine.
ROUND_ROBIN = PoolPolicy(
    strategy=PickStrategy.ROUND_ROBIN, outlier=OutlierPolicy(base_ejection=300.0)
)


def requests_seen(nodes: tuple[StorageNode, ...], mode: FaultMode) -> int:
    return sum(node.proxy.stats.requests[mode] for node in nodes)


class OneShotStream(io.RawIOBase):
    """A non-seekable stream (like a socket or a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.reads = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        return self._data.read(size)


@pytest.fixture
def dc1(mcresolve_storage: StorageCluster) -> tuple[StorageNode, ...]:
    return mcresolve_storage.nodes_in("dc1")


@pytest.fixture
def client(mcresolve_storage: StorageCluster) -> Any:
    with make_client(mcresolve_storage, static_target(mcresolve_storage)) as client:
        yield client


def test_round_trip_through_every_kind_of_call(client: ResilientMinio, bucket: str) -> None:
    assert isinstance(client, Minio)
    name = unique("round")
    payload = os.urandom(3000)
    result = client.put_object(bucket, name, io.BytesIO(payload), len(payload))
    assert result.etag == hashlib.md5(payload).hexdigest()
    assert client.stat_object(bucket, name).size == 3000
    response = client.get_object(bucket, name)
    assert isinstance(response, ResumableResponse)
    assert response.read() == payload and response.status == 200
    response.close()
    response.release_conn()
    ranged = client.get_object(bucket, name, offset=100, length=50)
    assert ranged.read() == payload[100:150]
    assert client.bucket_exists(bucket)
    assert bucket in {b.name for b in client.list_buckets()}
    names = [o.object_name for o in client.list_objects(bucket, prefix=name)]
    assert names == [name]
    errors = list(client.remove_objects(bucket, [DeleteObject(name)]))
    assert errors == []
    assert list(client.list_objects(bucket, prefix=name)) == []


def test_client_errors_are_raised_at_once_and_never_retried(
    mcresolve_storage: StorageCluster,
    client: ResilientMinio,
    bucket: str,
    dc1: tuple[StorageNode, ...],
) -> None:
    for node in dc1:
        node.proxy.reset_stats()
    with pytest.raises(S3Error) as info:
        client.get_object(bucket, unique("missing"))
    assert info.value.code == "NoSuchKey"
    assert requests_seen(dc1, FaultMode.PASS) == 1
    with pytest.raises(S3Error) as head:
        client.stat_object(bucket, unique("missing"))
    assert head.value.code == "NoSuchKey"
    assert requests_seen(dc1, FaultMode.PASS) == 2
    intruder = make_client(
        mcresolve_storage, static_target(mcresolve_storage), secret_key="not-the-secret"
    )
    with intruder, pytest.raises(S3Error) as denied:
        intruder.put_object(bucket, "x", io.BytesIO(b"x"), 1)
    assert denied.value.response.status == 403
    assert requests_seen(dc1, FaultMode.PASS) == 3
    # Answers prove the node serves: nothing was ejected.
    assert client.pool.snapshot().by_state("ejected") == ()


def test_write_quorum_lost_gives_the_typed_error_once_confirmed_and_reads_still_work(
    client: ResilientMinio, bucket: str, dc1: tuple[StorageNode, ...]
) -> None:
    name = unique("quorum")
    client.put_object(bucket, name, io.BytesIO(b"before"), 6)
    for node in dc1:
        node.proxy.answer_error("XMinioWriteQuorum", methods={"PUT", "POST", "DELETE"})
        node.proxy.reset_stats()
    started = time.monotonic()
    with pytest.raises(StorageClusterDegraded) as info:
        client.put_object(bucket, name, io.BytesIO(b"after"), 5)
    # Retry-After 120 s > deadline: give up at once; 5 s is a generous bound against 120 s
    assert time.monotonic() - started < 5.0
    error = info.value
    assert error.writes_affected and not error.reads_affected
    assert error.code == "XMinioWriteQuorum" and error.retry_after == 120
    assert "writes affected" in str(error)
    # A quorum answer is one node's view until a second node confirms it: one attempt per node,
    # no hammering.
    assert [n.proxy.stats.errors["XMinioWriteQuorum"] for n in dc1] == [1] * len(dc1)
    assert client.get_object(bucket, name).read() == b"before"
    assert client.pool.snapshot().by_state("ejected") == ()  # not the nodes' fault


def test_read_quorum_with_short_retry_after_waits_once_then_reports_reads_affected(
    mcresolve_storage: StorageCluster, bucket: str, dc1: tuple[StorageNode, ...]
) -> None:
    for node in dc1:
        node.proxy.answer_error("XMinioReadQuorum", retry_after=1)
    with make_client(
        mcresolve_storage,
        static_target(mcresolve_storage),
        call_policy=POLICY.with_overrides(deadline=2.5),
    ) as client:
        started = time.monotonic()
        with pytest.raises(StorageClusterDegraded) as info:
            client.get_object(bucket, "anything")
        took = time.monotonic() - started
    assert info.value.reads_affected and info.value.writes_affected
    # times by nature: waited Retry-After (1 s) once, within the 2.5 s deadline
    assert 1.0 <= took < 2.5
    attempts = sum(node.proxy.stats.requests[FaultMode.ERROR] for node in dc1)
    # Each round asks every node once (a quorum answer stands when a second node confirms it);
    # one round per Retry-After wait: at most three rounds fit in 2.5 s. Not a storm.
    assert 2 <= attempts <= 3 * len(dc1)


def test_node_not_initialized_ejects_it_and_the_call_succeeds_elsewhere(
    mcresolve_storage: StorageCluster, bucket: str, dc1: tuple[StorageNode, ...]
) -> None:
    name = unique("init")
    bad = dc1[0]
    with make_client(
        mcresolve_storage, static_target(mcresolve_storage), pool_policy=ROUND_ROBIN
    ) as client:
        client.put_object(bucket, name, io.BytesIO(b"x" * 10), 10)
        bad.proxy.answer_error("XMinioServerNotInitialized")
        bad.proxy.reset_stats()
        # Round robin: among len(dc1) consecutive calls one first attempt lands on the bad node.
        for _ in range(len(dc1)):  # GET: the answer carries the code (a HEAD error has no body)
            assert client.get_object(bucket, name).read() == b"x" * 10
        assert bad.proxy.stats.errors["XMinioServerNotInitialized"] == 1
        ejected = client.pool.snapshot().by_state("ejected")
        assert [e.port for e in ejected] == [bad.port]
        for _ in range(18):  # ejected: never asked again
            assert client.get_object(bucket, name).read() == b"x" * 10
        assert bad.proxy.stats.errors["XMinioServerNotInitialized"] == 1
    assert bad.proxy.stats.requests[FaultMode.ERROR] == 1
    with make_client(
        mcresolve_storage, static_target(mcresolve_storage), pool_policy=ROUND_ROBIN
    ) as fresh:
        for _ in range(len(dc1)):  # HEAD: a bare 503 is a server error on that node, retried
            assert fresh.stat_object(bucket, name).size == 10  # elsewhere (not yet an ejection)
    assert bad.proxy.stats.requests[FaultMode.ERROR] >= 2  # so a HEAD did meet the bad node


def test_blackholed_node_costs_at_most_one_attempt_timeout(
    mcresolve_storage: StorageCluster, bucket: str, dc1: tuple[StorageNode, ...]
) -> None:
    name = unique("hole")
    hole = dc1[0]
    with make_client(
        mcresolve_storage, static_target(mcresolve_storage), pool_policy=ROUND_ROBIN
    ) as client:
        client.put_object(bucket, name, io.BytesIO(b"y" * 100), 100)
        hole.proxy.blackhole()
        hole.proxy.reset_stats()
        took: list[float] = []
        for _ in range(30):  # round robin: one of the first len(dc1) calls tries the hole
            started = time.monotonic()
            assert client.get_object(bucket, name).read() == b"y" * 100
            took.append(time.monotonic() - started)
        assert hole.proxy.stats.requests[FaultMode.BLACKHOLE] == 1
        ejected = client.pool.snapshot().by_state("ejected")
        assert [e.port for e in ejected] == [hole.port]
    slowest = max(took)
    assert took.index(slowest) < len(dc1)
    # The call that tried the hole paid one attempt timeout (a time by nature, generous upper
    # bound), then succeeded elsewhere; that no other call paid one is the decision, proven by
    # the hole's single blackholed request and its ejection above, not by the clock.
    assert READ_TIMEOUT * 0.9 <= slowest <= READ_TIMEOUT + 3.0, took


def test_every_node_dead_fails_with_the_attempts_listed(
    mcresolve_storage: StorageCluster, bucket: str, dc1: tuple[StorageNode, ...]
) -> None:
    from mcresolve.errors import CallFailed

    with make_client(
        mcresolve_storage,
        static_target(mcresolve_storage),
        call_policy=POLICY.with_overrides(deadline=1.5),
    ) as client:
        mcresolve_storage.run(mcresolve_storage.kill_datacenter("dc1"))
        with pytest.raises(CallFailed) as info:
            client.stat_object(bucket, "x")
    assert info.value.attempts and "refused" in str(info.value).lower()


def test_listing_resumes_after_the_last_key_when_its_node_dies(
    mcresolve_storage: StorageCluster, bucket: str, dc1: tuple[StorageNode, ...]
) -> None:
    prefix = unique("list") + "/"
    names = sorted(f"{prefix}{i:03d}" for i in range(23))
    with make_client(
        mcresolve_storage, static_target(mcresolve_storage), list_page_size=5
    ) as client:
        for name in names:
            client.put_object(bucket, name, io.BytesIO(b"z"), 1)
        for node in dc1:
            node.proxy.reset_stats()
        listing = client.list_objects(bucket, prefix=prefix, recursive=True)
        seen = [next(listing).object_name for _ in range(3)]  # first page (5 keys) fetched
        serving = [n for n in dc1 if n.proxy.stats.requests[FaultMode.PASS] > 0]
        assert len(serving) == 1
        mcresolve_storage.run(serving[0].kill())
        seen += [o.object_name for o in listing]
    assert seen == names  # no duplicate, no gap


def test_listing_with_directories_resumes_without_repeating_a_prefix(
    mcresolve_storage: StorageCluster, bucket: str, dc1: tuple[StorageNode, ...]
) -> None:
    prefix = unique("dirs") + "/"
    keys = [f"{prefix}{d}/{f}" for d in "abcdef" for f in ("1", "2")] + [f"{prefix}top"]
    with make_client(
        mcresolve_storage, static_target(mcresolve_storage), list_page_size=2
    ) as client:
        for key in keys:
            client.put_object(bucket, key, io.BytesIO(b"d"), 1)
        for node in dc1:
            node.proxy.reset_stats()
        listing = client.list_objects(bucket, prefix=prefix)
        seen = [next(listing).object_name]
        serving = [n for n in dc1 if n.proxy.stats.requests[FaultMode.PASS] > 0]
        mcresolve_storage.run(serving[0].kill())
        seen += [o.object_name for o in listing]
    assert seen == [f"{prefix}{d}/" for d in "abcdef"] + [f"{prefix}top"]


def test_download_resumes_with_a_range_request_when_its_node_dies_mid_body(
    mcresolve_storage: StorageCluster, bucket: str, dc1: tuple[StorageNode, ...]
) -> None:
    name = unique("big")
    payload = os.urandom(24 * MiB)
    with make_client(mcresolve_storage, static_target(mcresolve_storage)) as client:
        client.put_object(bucket, name, io.BytesIO(payload), len(payload), part_size=8 * MiB)
        response = client.get_object(bucket, name)
        assert isinstance(response, ResumableResponse)
        head = response.read(MiB)
        serving = next(n for n in dc1 if n.port == response.endpoints[0].port)
        mcresolve_storage.run(serving.kill())
        rest = response.read()
    assert head + rest == payload
    assert response.resumes >= 1
    assert [e.port for e in response.endpoints][-1] != serving.port


def test_download_refuses_to_resume_when_the_object_changed(
    mcresolve_storage: StorageCluster, bucket: str, dc1: tuple[StorageNode, ...]
) -> None:
    name = unique("changing")
    payload = os.urandom(24 * MiB)
    with make_client(mcresolve_storage, static_target(mcresolve_storage)) as client:
        client.put_object(bucket, name, io.BytesIO(payload), len(payload), part_size=8 * MiB)
        response = client.get_object(bucket, name)
        response.read(MiB)
        serving = next(n for n in dc1 if n.port == response.endpoints[0].port)
        other = next(n for n in dc1 if n is not serving)
        other.client().put_object(bucket, name, io.BytesIO(b"new version"), 11)
        mcresolve_storage.run(serving.kill())
        with pytest.raises(ObjectChangedDuringRead) as info:
            response.read()
    assert info.value.position >= MiB and "changed during the download" in str(info.value)


def test_multipart_upload_from_a_one_shot_stream_retries_only_the_failed_part(
    mcresolve_storage: StorageCluster, bucket: str, dc1: tuple[StorageNode, ...]
) -> None:
    name = unique("multi")
    payload = os.urandom(12 * MiB)
    reads = 0

    class FaultOnSecondPart(OneShotStream):
        def read(self, size: int = -1) -> bytes:
            nonlocal reads
            reads += 1
            data = super().read(size)
            if self.tell_hint() >= 5 * MiB and not injected.is_set():
                injected.set()
                for node in dc1:  # every node resets part uploads until one reset was seen
                    node.proxy.reset(methods={"PUT"})
            return data

        def tell_hint(self) -> int:
            return self._data.tell()

    injected = threading.Event()

    def heal_after_first_reset() -> None:
        until_sync(lambda: requests_seen(dc1, FaultMode.RESET) >= 1, what="a reset")
        for node in dc1:
            node.proxy.pass_through()

    healer = threading.Thread(target=heal_after_first_reset)
    with make_client(mcresolve_storage, static_target(mcresolve_storage)) as client:
        healer.start()
        result = client.put_object(
            bucket, name, FaultOnSecondPart(payload), -1, part_size=5 * MiB, num_parallel_uploads=1
        )
        healer.join(30)
        assert result.etag is not None and result.etag.endswith("-3")
        assert client.get_object(bucket, name).read() == payload
    assert requests_seen(dc1, FaultMode.RESET) >= 1


def test_upload_from_a_consumed_stream_says_it_may_not_have_happened(
    mcresolve_storage: StorageCluster, bucket: str, dc1: tuple[StorageNode, ...]
) -> None:
    with make_client(
        mcresolve_storage,
        static_target(mcresolve_storage),
        call_policy=POLICY.with_overrides(deadline=2.0),
    ) as client:
        for node in dc1:
            node.proxy.reset()
        with pytest.raises(UploadNotRetryable) as info:
            client.append_object(bucket, unique("append"), OneShotStream(b"abc"), 3)
    message = str(info.value)
    assert "not seekable" in message and "append_object" in message


def test_single_part_upload_from_a_one_shot_stream_survives_a_reset(
    mcresolve_storage: StorageCluster, bucket: str, dc1: tuple[StorageNode, ...]
) -> None:
    name = unique("oneshot")
    payload = os.urandom(1000)
    dc1[0].proxy.reset(methods={"PUT"})
    with make_client(mcresolve_storage, static_target(mcresolve_storage)) as client:
        for i in range(6):  # P2C: the resetting node is picked at least once, then ejected
            client.put_object(bucket, f"{name}-{i}", OneShotStream(payload), len(payload))
        for i in range(6):
            assert client.get_object(bucket, f"{name}-{i}").read() == payload
    assert dc1[0].proxy.stats.requests[FaultMode.RESET] <= 1


def test_presigned_urls_name_the_external_host_and_send_nothing(
    mcresolve_storage: StorageCluster, bucket: str, dc1: tuple[StorageNode, ...]
) -> None:
    external = ExternalEndpoint("files.example.com", 443, True)
    with make_client(
        mcresolve_storage, static_target(mcresolve_storage), external=external
    ) as client:
        for node in dc1:
            node.proxy.reset_stats()
        get_url = client.presigned_get_object(bucket, "a/b.png")
        put_url = client.presigned_put_object(bucket, "a/b.png")
        public = client.public_url(bucket, "a/b.png")
    assert get_url.startswith(f"https://files.example.com/{bucket}/a/b.png?")
    assert "X-Amz-Signature=" in get_url and "X-Amz-Signature=" in put_url
    assert public == f"https://files.example.com/{bucket}/a/b.png"
    assert requests_seen(dc1, FaultMode.PASS) == 0


def test_presigned_url_without_external_host_works_against_a_node(
    mcresolve_storage: StorageCluster, bucket: str
) -> None:
    import urllib.request

    name = unique("presign")
    with make_client(mcresolve_storage, static_target(mcresolve_storage)) as client:
        client.put_object(bucket, name, io.BytesIO(b"signed"), 6)
        url = client.presigned_get_object(bucket, name)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"signed"


def test_policy_view_shares_connections_and_overrides_the_deadline(
    client: ResilientMinio,
) -> None:
    view = client.with_policy(deadline=3.0)
    assert view.call_policy is not None and view.call_policy.deadline == 3.0
    assert view.pool is client.pool and view._clients is client._clients
    view.close()  # a view does not close the pool
    assert client.bucket_exists(unique("nobucket")) is False
