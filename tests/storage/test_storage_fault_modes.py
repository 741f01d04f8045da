"""Each fault-proxy mode as a real ``minio.Minio`` client sees it, in front of a real node."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
import xml.etree.ElementTree as ET

import minio
import pytest
import urllib3
from minio.error import S3Error, ServerError

from mcresolve.testing.faultproxy import MINIO_ERRORS, FaultMode
from mcresolve.testing.storage import StorageCluster, StorageNode

pytestmark = pytest.mark.storage

BUCKET = f"faults-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def node(mcresolve_storage: StorageCluster) -> StorageNode:
    """Node dc1-0 with bucket BUCKET holding object ``obj``; counters zeroed."""
    target = mcresolve_storage.node("dc1", 0)
    client = target.client(direct=True)
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
        client.put_object(BUCKET, "obj", io.BytesIO(b"payload"), 7)
    target.proxy.reset_stats()
    return target


def _client(node: StorageNode, read_timeout: float = 5.0) -> minio.Minio:
    return node.client(connect_timeout=1.0, read_timeout=read_timeout)


def _read(client: minio.Minio, key: str = "obj") -> bytes:
    response = client.get_object(BUCKET, key)
    try:
        return bytes(response.read())
    finally:
        response.close()
        response.release_conn()


async def test_pass_through_counts_connections_and_requests(node: StorageNode) -> None:
    client = _client(node)
    for _ in range(3):
        assert await asyncio.to_thread(_read, client) == b"payload"
    stats = node.proxy.stats
    assert stats.requests[FaultMode.PASS] == 3
    assert stats.connections[FaultMode.PASS] == 1  # urllib3 keeps the connection alive
    assert stats.total_requests == 3 and stats.upstream_failures == 0


async def test_refuse_fails_fast_with_connection_refused_then_recovers(node: StorageNode) -> None:
    client = _client(node, read_timeout=30.0)
    assert await asyncio.to_thread(_read, client) == b"payload"  # a pooled connection exists
    node.proxy.refuse()
    assert not node.proxy.listening
    # The pooled keep-alive connection may be reused (reset by the proxy) or found dropped by
    # urllib3 before reuse (then a new connect is refused): either way the call fails fast, by
    # a reset or a refusal, not by running into its (long) timeouts.
    with pytest.raises(urllib3.exceptions.HTTPError) as pooled:
        await asyncio.to_thread(_read, client)
    fast = (urllib3.exceptions.ProtocolError, urllib3.exceptions.NewConnectionError)
    assert isinstance(pooled.value, fast), repr(pooled.value)
    # A fresh connection attempt is refused by the kernel: nothing listens any more.
    with pytest.raises(urllib3.exceptions.HTTPError) as failure:
        await asyncio.to_thread(_read, _client(node, read_timeout=30.0))
    assert isinstance(failure.value, urllib3.exceptions.NewConnectionError)
    assert isinstance(failure.value.__cause__, ConnectionRefusedError)
    assert node.proxy.stats.connections[FaultMode.REFUSE] == 0

    node.proxy.pass_through()
    assert await asyncio.to_thread(_read, client) == b"payload"


async def test_reset_answers_requests_with_a_tcp_reset(node: StorageNode) -> None:
    node.proxy.reset()
    with pytest.raises(urllib3.exceptions.ProtocolError) as failure:
        await asyncio.to_thread(_read, _client(node))
    assert isinstance(failure.value.__cause__ or failure.value.__context__, ConnectionResetError)
    assert node.proxy.stats.requests[FaultMode.RESET] == 1


async def test_blackhole_costs_exactly_the_read_timeout(node: StorageNode) -> None:
    client = _client(node, read_timeout=0.5)
    assert await asyncio.to_thread(_read, client) == b"payload"
    node.proxy.blackhole()  # applies to the connection already in the client's pool too
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        await asyncio.to_thread(_read, client)
    elapsed = time.monotonic() - started
    # What is tested is a time, the client's read timeout (0.5 s) running out: the lower bound
    # cannot flake (load only adds), the upper one is generous for a loaded machine.
    assert 0.45 <= elapsed < 3.0
    stats = node.proxy.stats
    assert stats.requests[FaultMode.BLACKHOLE] == 1 and stats.connections[FaultMode.PASS] == 1


async def test_delay_adds_latency_and_still_answers(node: StorageNode) -> None:
    node.proxy.delay(0.3)
    client = _client(node)
    started = time.monotonic()
    assert await asyncio.to_thread(_read, client) == b"payload"
    assert time.monotonic() - started >= 0.3  # a time by nature (the delay); load only adds
    assert node.proxy.stats.requests[FaultMode.DELAY] == 1


async def test_server_not_initialized_is_an_s3_error_with_minio_fields(node: StorageNode) -> None:
    node.proxy.answer_error("XMinioServerNotInitialized")
    with pytest.raises(S3Error) as failure:
        await asyncio.to_thread(_read, _client(node))
    error = failure.value
    assert error.code == "XMinioServerNotInitialized"
    assert error.message == "Server not initialized, please try again."
    assert (error.bucket_name, error.object_name) == (BUCKET, "obj")
    assert error.resource == f"/{BUCKET}/obj"
    assert error.request_id and error.host_id == node.proxy.host_id
    assert error.response.status == 503
    assert error.response.headers["Retry-After"] == "120"
    assert error.response.headers["Server"] == "MinIO"
    root = ET.fromstring(error.response.data)
    assert [child.tag for child in root] == [
        "Code", "Message", "Key", "BucketName", "Resource", "RequestId", "HostId",
    ]  # fmt: skip
    assert node.proxy.stats.errors["XMinioServerNotInitialized"] == 1


async def test_head_gets_a_bodyless_503_and_minio_raises_server_error(node: StorageNode) -> None:
    node.proxy.answer_error("XMinioServerNotInitialized")
    with pytest.raises(ServerError) as failure:
        await asyncio.to_thread(_client(node).stat_object, BUCKET, "obj")
    assert failure.value.status_code == 503


@pytest.mark.parametrize("code", sorted(MINIO_ERRORS))
async def test_every_minio_error_code_reaches_the_client(node: StorageNode, code: str) -> None:
    spec = MINIO_ERRORS[code]
    node.proxy.answer_error(code)
    with pytest.raises(S3Error) as failure:
        await asyncio.to_thread(_read, _client(node))
    assert failure.value.code == code and failure.value.message == spec.message
    assert failure.value.response.status == spec.status
    retry_after = failure.value.response.headers.get("Retry-After")
    assert retry_after == (None if spec.retry_after is None else str(spec.retry_after))


async def test_write_quorum_loss_fails_writes_and_serves_reads(node: StorageNode) -> None:
    node.proxy.answer_error("XMinioWriteQuorum", methods={"PUT", "POST", "DELETE"})
    client = _client(node)
    with pytest.raises(S3Error) as failure:
        await asyncio.to_thread(client.put_object, BUCKET, "new", io.BytesIO(b"x" * 5000), 5000)
    assert failure.value.code == "XMinioWriteQuorum"
    assert await asyncio.to_thread(_read, client) == b"payload"  # same keep-alive connection
    listed = await asyncio.to_thread(lambda: [o.object_name for o in client.list_objects(BUCKET)])
    assert "new" not in listed
    stats = node.proxy.stats
    assert stats.requests[FaultMode.ERROR] == 1 and stats.requests[FaultMode.PASS] == 2
    assert stats.connections[FaultMode.ERROR] == 1  # the body was consumed: no reset


async def test_retry_after_override(node: StorageNode) -> None:
    node.proxy.answer_error("SlowDownWrite", retry_after=7)
    with pytest.raises(S3Error) as failure:
        await asyncio.to_thread(_read, _client(node))
    assert failure.value.response.headers["Retry-After"] == "7"
    node.proxy.answer_error("ServerBusy", retry_after=None)
    with pytest.raises(S3Error) as failure:
        await asyncio.to_thread(_read, _client(node))
    assert "Retry-After" not in failure.value.response.headers


async def test_killed_node_refuses_through_its_proxy(mcresolve_storage: StorageCluster) -> None:
    node = mcresolve_storage.node("dc2", 1)
    client = _client(node)
    assert await asyncio.to_thread(client.list_buckets)
    await node.kill()
    assert not node.proxy.listening
    with pytest.raises(urllib3.exceptions.NewConnectionError):
        await asyncio.to_thread(client.list_buckets)
    await node.restart()
    assert node.proxy.listening
    assert await asyncio.to_thread(client.list_buckets)


async def test_modes_apply_to_health_url(node: StorageNode) -> None:
    def status() -> int:
        http = urllib3.PoolManager(retries=False, timeout=2.0)
        return int(http.request("GET", node.health_url).status)

    assert await asyncio.to_thread(status) == 200
    node.proxy.answer_error("XMinioServerNotInitialized")
    assert await asyncio.to_thread(status) == 503
