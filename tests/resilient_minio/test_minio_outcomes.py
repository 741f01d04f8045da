"""What a failed ResilientMinio call tells its caller, on the real SeaweedFS cluster behind fault
proxies: a write whose answer was lost says its outcome is unknown; a quorum answer from one
node's own view is confirmed on another node before a read fails; a cluster condition raises
the same type whatever the pool's size."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import socket
from typing import Any

import pytest
from hostile_s3 import Answer, HostileS3
from resilient_minio_bed import (
    FAST_HTTP,
    POLICY,
    READ_TIMEOUT,
    make_client,
    unique,
)

from mcresolve.balancer.picker import PickStrategy
from mcresolve.errors import McResolveError
from mcresolve.minio import (
    AsyncResilientMinio,
    StorageClusterDegraded,
    WriteOutcomeUnknown,
)
from mcresolve.pool import PoolPolicy
from mcresolve.testing.faultproxy import MINIO_ERRORS, FaultMode, render_s3_error
from mcresolve.testing.storage import StorageCluster, StorageNode
from support import until_sync

#: Round robin puts a first attempt on every node within len(nodes) calls.
ROUND_ROBIN = PoolPolicy(strategy=PickStrategy.ROUND_ROBIN)
#: A PUT delayed this long by the proxy is relayed (and executed) after the client gave up on it.
LOST_ANSWER_DELAY = 2 * READ_TIMEOUT + 1.0


def target_of(nodes: tuple[StorageNode, ...] | list[StorageNode]) -> str:
    return "static://" + ",".join(node.endpoint for node in nodes)


def _stored(node: StorageNode, bucket: str, name: str) -> bool:
    try:
        node.client().stat_object(bucket, name)
    except Exception:
        return False
    return True


# --- a write whose answer was lost ----------------------------------------------------------


def _lose_put_answers(storage: StorageCluster) -> tuple[StorageNode, StorageNode]:
    """dc1's first node relays PUTs only after the client's read timeout (executed, answer
    lost); the only other node is down."""
    executes, down = storage.nodes_in("dc1")[:2]
    executes.proxy.delay(LOST_ANSWER_DELAY, methods={"PUT"})
    down.proxy.refuse()
    return executes, down


def _check_outcome_unknown(
    error: WriteOutcomeUnknown, bucket: str, name: str, payload: bytes, node: StorageNode
) -> None:
    assert isinstance(error, McResolveError)
    assert error.bucket_name == bucket and error.object_name == name
    assert error.may_have_executed
    assert error.expected_etag == hashlib.md5(payload).hexdigest()
    tried = {record.endpoint.port for record in error.tried}
    assert node.port in tried  # the attempt that may have executed is named...
    assert node.endpoint in str(error) and name in str(error)  # ...also in the message
    # The write did happen: once the delayed request reached the node, the object is there,
    # byte-identical, with the ETag the error told the caller to compare.
    until_sync(lambda: _stored(node, bucket, name), within=30.0, what="the delayed PUT to execute")
    reader = node.client()
    assert reader.stat_object(bucket, name).etag == error.expected_etag
    response = reader.get_object(bucket, name)
    try:
        assert response.read() == payload
    finally:
        response.close()
        response.release_conn()


def test_put_executed_with_its_answer_lost_raises_write_outcome_unknown(
    mcresolve_storage: StorageCluster, bucket: str
) -> None:
    executes, down = _lose_put_answers(mcresolve_storage)
    name = unique("lost-answer")
    payload = os.urandom(5000)
    policy = POLICY.with_overrides(deadline=2 * READ_TIMEOUT + 1.0, max_attempts=3)
    with (
        make_client(mcresolve_storage, target_of([executes, down]), call_policy=policy) as client,
        pytest.raises(WriteOutcomeUnknown) as info,
    ):
        client.put_object(bucket, name, io.BytesIO(payload), len(payload))
    assert executes.proxy.stats.requests[FaultMode.DELAY] >= 1
    _check_outcome_unknown(info.value, bucket, name, payload, executes)
    assert info.value.cause is not None  # what the pool gave up with
    # The other node was down, not the cluster degraded: a refused node says nothing about it.
    assert not isinstance(info.value, StorageClusterDegraded)


def test_async_put_executed_with_its_answer_lost_raises_write_outcome_unknown(
    mcresolve_storage: StorageCluster, bucket: str
) -> None:
    executes, down = _lose_put_answers(mcresolve_storage)
    name = unique("lost-answer-async")
    payload = os.urandom(3000)
    policy = POLICY.with_overrides(deadline=2 * READ_TIMEOUT + 1.0, max_attempts=3)

    async def put() -> Any:
        async with AsyncResilientMinio(
            target_of([executes, down]),
            access_key=mcresolve_storage.access_key,
            secret_key=mcresolve_storage.secret_key,
            secure=False,
            region="us-east-1",
            http=FAST_HTTP,
            call_policy=policy,
        ) as client:
            return await client.put_object(bucket, name, io.BytesIO(payload), len(payload))

    with pytest.raises(WriteOutcomeUnknown) as info:
        asyncio.run(put())
    _check_outcome_unknown(info.value, bucket, name, payload, executes)


#: What a proxy or gateway in front of a node answers when its upstream connection broke after
#: the request was sent (Envoy, nginx, HAProxy): 503, an HTML body, no S3 error code.
PROXY_503_BODY = b"<html><body>upstream connect error or disconnect/reset</body></html>"
PROXY_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\n"
    + f"Content-Length: {len(PROXY_503_BODY)}\r\nConnection: close\r\n\r\n".encode()
    + PROXY_503_BODY
)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # bound, never listening: refused once closed


def test_put_executed_then_answered_503_without_a_code_raises_write_outcome_unknown(
    mcresolve_storage: StorageCluster, bucket: str
) -> None:
    """A relay in front of the node sends the PUT on (the node stores the object) and answers
    a proxy's 503 with no S3 code: unlike MinIO's refusal codes, nothing says the write did
    not happen, so the caller is told its outcome is unknown, with the ETag to compare."""
    node = mcresolve_storage.nodes_in("dc1")[0]
    hostile = HostileS3((node.address, node.s3_port)).start()
    name = unique("proxy-503")
    payload = os.urandom(4000)
    policy = POLICY.with_overrides(deadline=3.0, max_attempts=2)
    try:
        hostile.script([Answer(relay=True, forged=PROXY_503)] * 20)
        with (
            make_client(
                mcresolve_storage,
                f"static://{hostile.endpoint},127.0.0.1:{_closed_port()}",
                call_policy=policy,
            ) as client,
            pytest.raises(WriteOutcomeUnknown) as info,
        ):
            client.put_object(bucket, name, io.BytesIO(payload), len(payload))
        relayed = [line for line, answer in hostile.requests if line.startswith(b"PUT ")]
    finally:
        hostile.close()
    assert relayed  # the node did execute it
    error = info.value
    assert error.may_have_executed and error.endpoint is not None
    assert error.endpoint.port == hostile.port
    assert "503" in str(error) and name in str(error)
    assert node.client().stat_object(bucket, name).etag == error.expected_etag


def test_put_refused_with_minios_slowdown_is_not_reported_as_unknown(
    mcresolve_storage: StorageCluster, bucket: str
) -> None:
    """MinIO's ``503 SlowDown`` is sent before executing: the write did not happen and is
    not reported as unknown (the same relay, now answering without sending the PUT on)."""
    node = mcresolve_storage.nodes_in("dc1")[0]
    hostile = HostileS3((node.address, node.s3_port)).start()
    name = unique("slowdown")
    policy = POLICY.with_overrides(deadline=3.0, max_attempts=2)
    slowdown = render_s3_error(
        MINIO_ERRORS["SlowDown"],
        method="PUT",
        target=f"/{bucket}/{name}",
        host_id="hostile",
        keep_alive=False,
    )
    try:
        hostile.script([Answer(relay=False, forged=slowdown)] * 20)
        with (
            make_client(
                mcresolve_storage,
                f"static://{hostile.endpoint},127.0.0.1:{_closed_port()}",
                call_policy=policy,
            ) as client,
            pytest.raises(McResolveError) as info,
        ):
            client.put_object(bucket, name, io.BytesIO(b"x"), 1)
    finally:
        hostile.close()
    assert not isinstance(info.value, WriteOutcomeUnknown)
    assert not _stored(node, bucket, name)


def test_put_that_cannot_have_executed_is_not_reported_as_unknown(
    mcresolve_storage: StorageCluster, bucket: str
) -> None:
    """Every node refusing: nothing was sent, so the failure is a plain pool failure."""
    nodes = mcresolve_storage.nodes_in("dc1")[:2]
    for node in nodes:
        node.proxy.refuse()
    policy = POLICY.with_overrides(deadline=1.0)
    with (
        make_client(mcresolve_storage, target_of(nodes), call_policy=policy) as client,
        pytest.raises(McResolveError) as info,
    ):
        client.put_object(bucket, unique("refused"), io.BytesIO(b"x"), 1)
    assert not isinstance(info.value, WriteOutcomeUnknown)


# --- a quorum answer from one node's own view -----------------------------------------------


def test_read_quorum_answer_from_one_node_is_confirmed_elsewhere_and_every_read_succeeds(
    mcresolve_storage: StorageCluster, bucket: str
) -> None:
    """A restarted node answers 503 XMinioReadQuorum (Retry-After 120) from its own view while
    the other node serves: every read must succeed."""
    restarted, serving = mcresolve_storage.nodes_in("dc1")[:2]
    name = unique("quorum-view")
    payload = os.urandom(2000)
    serving.client().put_object(bucket, name, io.BytesIO(payload), len(payload))
    restarted.proxy.answer_error("XMinioReadQuorum", methods={"GET", "HEAD"})
    restarted.proxy.reset_stats()
    reads = 200
    failed: list[BaseException] = []
    with make_client(
        mcresolve_storage, target_of([restarted, serving]), pool_policy=ROUND_ROBIN
    ) as client:
        for _ in range(reads):
            try:
                response = client.get_object(bucket, name)
                assert response.read() == payload
                response.close()
            except StorageClusterDegraded as exc:
                failed.append(exc)
    assert restarted.proxy.stats.errors["XMinioReadQuorum"] >= 1  # the node did answer so
    assert failed == [], f"{len(failed)} of {reads} reads failed: {failed[0]}"


def test_read_quorum_answer_from_every_node_fails_fast_without_ejecting(
    mcresolve_storage: StorageCluster, bucket: str
) -> None:
    """Confirmed by the second node: the cluster condition, raised after one attempt per node
    (Retry-After 120 s exceeds the deadline), and no node is held against."""
    nodes = mcresolve_storage.nodes_in("dc1")[:2]
    for node in nodes:
        node.proxy.answer_error("XMinioReadQuorum")
        node.proxy.reset_stats()
    with (
        make_client(mcresolve_storage, target_of(nodes)) as client,
        pytest.raises(StorageClusterDegraded) as info,
    ):
        client.get_object(bucket, "anything")
        assert client.pool.snapshot().by_state("ejected") == ()
    assert info.value.reads_affected and info.value.code == "XMinioReadQuorum"
    assert [n.proxy.stats.errors["XMinioReadQuorum"] for n in nodes] == [1, 1]


# --- one condition, one exception -----------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3])
def test_write_quorum_lost_raises_storage_cluster_degraded_whatever_the_pool_size(
    mcresolve_storage: StorageCluster, bucket: str, size: int
) -> None:
    nodes = mcresolve_storage.nodes[:size]
    for node in nodes:
        node.proxy.answer_error("XMinioWriteQuorum", methods={"PUT", "POST", "DELETE"})
        node.proxy.reset_stats()
    with (
        make_client(mcresolve_storage, target_of(nodes)) as client,
        pytest.raises(StorageClusterDegraded) as info,
    ):
        client.put_object(bucket, unique("quorum"), io.BytesIO(b"data"), 4)
    error = info.value
    assert isinstance(error, McResolveError)
    assert error.writes_affected and error.code == "XMinioWriteQuorum"
    assert not isinstance(error, WriteOutcomeUnknown)  # a 503 rejects before executing
    asked = sum(n.proxy.stats.errors["XMinioWriteQuorum"] for n in nodes)
    assert 1 <= asked <= size  # confirmed at most once per node: no hammering


@pytest.mark.parametrize("size", [1, 2, 3])
def test_hung_writes_raise_storage_cluster_degraded_whatever_the_pool_size(
    mcresolve_storage: StorageCluster, bucket: str, size: int
) -> None:
    """MinIO 2019 with write quorum lost hangs PUTs: no node answers in time. The write may have
    executed, so the error is also a WriteOutcomeUnknown; either type catches it."""
    nodes = mcresolve_storage.nodes[:size]
    for node in nodes:
        node.proxy.blackhole(methods={"PUT"})
    policy = POLICY.with_overrides(deadline=4 * READ_TIMEOUT + 0.5, max_attempts=size + 2)
    with (
        make_client(mcresolve_storage, target_of(nodes), call_policy=policy) as client,
        pytest.raises(StorageClusterDegraded) as info,
    ):
        client.put_object(bucket, unique("hung"), io.BytesIO(b"data"), 4)
    assert info.value.writes_affected
    assert isinstance(info.value, WriteOutcomeUnknown)
