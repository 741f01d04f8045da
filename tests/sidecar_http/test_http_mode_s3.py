"""A plain ``minio.Minio`` client (no mcresolve in it) through the http mode to the real
SeaweedFS cluster: signed requests stay valid, and killing a node fails no call."""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid

import minio
import urllib3

from mcresolve.balancer.picker import PickStrategy
from mcresolve.pool import EndpointPool, PoolPolicy
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.sidecar.http_mode import ENDPOINT_HEADER, HttpListener
from mcresolve.testing.storage import StorageCluster

POOL = PoolPolicy(
    call=CallPolicy(attempt_timeout=10.0, deadline=60.0, max_attempts=8),
    # round robin: the killed node's turn comes within one round, whatever the latencies
    strategy=PickStrategy.ROUND_ROBIN,
)


def _plain_client(port: int, cluster: StorageCluster) -> minio.Minio:
    """A client as an unmodified application builds it, pointed at the sidecar; urllib3's
    retries off, so any failure the sidecar lets through fails the call."""
    return minio.Minio(
        f"127.0.0.1:{port}",
        access_key=cluster.access_key,
        secret_key=cluster.secret_key,
        secure=False,
        region="us-east-1",
        http_client=urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(30, 60)),
    )


async def test_signed_requests_through_the_sidecar_survive_a_killed_node(
    mcresolve_storage: StorageCluster,
) -> None:
    nodes = mcresolve_storage.nodes
    pool = EndpointPool("static://" + ",".join(f"{n.address}:{n.port}" for n in nodes), policy=POOL)
    await pool.start()
    listener = HttpListener(("127.0.0.1", 0), pool)
    await listener.start()
    client = _plain_client(listener.address[1], mcresolve_storage)
    bucket = f"sidecar-{uuid.uuid4().hex[:8]}"
    payloads = {f"obj-{i}": bytes([i]) * (300_000 + i) for i in range(12)}
    etags: dict[str, str] = {}

    def put(name: str) -> None:
        data = payloads[name]
        result = client.put_object(bucket, name, io.BytesIO(data), len(data))
        etags[name] = result.etag

    def check(name: str) -> None:
        response = client.get_object(bucket, name)
        try:
            assert response.read() == payloads[name]
        finally:
            response.close()
            response.release_conn()
        stat = client.stat_object(bucket, name)
        assert stat.etag == etags[name] == hashlib.md5(payloads[name]).hexdigest()

    try:
        await asyncio.to_thread(client.make_bucket, bucket)
        names = list(payloads)
        for name in names[:6]:
            await asyncio.to_thread(put, name)
        # one node dies while calls go on: none may fail
        await asyncio.to_thread(mcresolve_storage.run, nodes[0].kill())
        dead = f"{nodes[0].address}:{nodes[0].port}"

        def ejected() -> bool:
            return dead in {e.host_port for e in pool.snapshot().by_state("ejected")}

        for name in names[6:]:
            await asyncio.to_thread(put, name)
        extra = 0
        while not ejected() and extra < 200:
            # until the sidecar has tried the dead node and ejected it: the request it tried
            # there must have been retried on a live one
            await asyncio.to_thread(check, names[extra % len(names)])
            extra += 1
        assert ejected()
        assert listener.stats().retried_total >= 1
        for name in names:
            await asyncio.to_thread(check, name)
        listed = await asyncio.to_thread(
            lambda: [o.object_name for o in client.list_objects(bucket)]
        )
        assert sorted(listed) == sorted(names)
        assert listener.stats().failed_total == 0
    finally:
        await listener.aclose()
        await pool.aclose()


async def test_endpoint_header_names_a_live_node(mcresolve_storage: StorageCluster) -> None:
    nodes = mcresolve_storage.nodes
    pool = EndpointPool("static://" + ",".join(f"{n.address}:{n.port}" for n in nodes), policy=POOL)
    await pool.start()
    listener = HttpListener(("127.0.0.1", 0), pool)
    await listener.start()
    client = _plain_client(listener.address[1], mcresolve_storage)
    try:
        response = await asyncio.to_thread(
            client._url_open,  # a signed request with an extra header, as any SDK could send
            "GET",
            "us-east-1",
            headers={ENDPOINT_HEADER: "1"},
        )
        assert response.status == 200
        assert response.headers[ENDPOINT_HEADER] in {f"{n.address}:{n.port}" for n in nodes}
    finally:
        await listener.aclose()
        await pool.aclose()
