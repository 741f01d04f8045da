"""A plain ``minio.Minio`` client (as an unmodified application has it) through the sidecar's
tcp mode to the real SeaweedFS cluster keeps working when a storage node is killed."""

from __future__ import annotations

import asyncio
import io
import threading
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import minio
import urllib3

from mcresolve.sidecar import ListenSpec, Sidecar
from mcresolve.testing.storage import StorageCluster
from support import until_sync

T = TypeVar("T")
BUCKET = "sidecar-tcp"


class SidecarThread:
    """A :class:`Sidecar` on its own event-loop thread (the storage fixtures are synchronous)."""

    def __init__(self, specs: list[ListenSpec]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.sidecar = Sidecar(specs)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def __enter__(self) -> Sidecar:
        self.thread.start()
        self.run(self.sidecar.start())
        return self.sidecar

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.sidecar.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@contextmanager
def sidecar_for(cluster: StorageCluster) -> Iterator[tuple[Sidecar, str]]:
    target = "static://" + ",".join(node.endpoint for node in cluster.nodes_in("dc1"))
    with SidecarThread([ListenSpec(("127.0.0.1", 0), target)]) as sidecar:
        host, port = sidecar.listeners[0].address
        yield sidecar, f"{host}:{port}"


def plain_client(cluster: StorageCluster, endpoint: str, **kwargs: Any) -> minio.Minio:
    return minio.Minio(
        endpoint,
        access_key=cluster.access_key,
        secret_key=cluster.secret_key,
        secure=False,
        region="us-east-1",
        **kwargs,
    )


def round_trip(client: minio.Minio, name: str) -> None:
    payload = name.encode() * 100
    client.put_object(BUCKET, name, io.BytesIO(payload), len(payload))
    response = client.get_object(BUCKET, name)
    try:
        assert response.read() == payload
    finally:
        response.close()
        response.release_conn()


def test_a_plain_minio_client_through_the_sidecar_survives_a_killed_node(
    mcresolve_storage: StorageCluster,
) -> None:
    prefix = uuid.uuid4().hex[:8]
    with sidecar_for(mcresolve_storage) as (sidecar, endpoint):
        app = plain_client(mcresolve_storage, endpoint)  # the default urllib3 client
        if not app.bucket_exists(BUCKET):
            app.make_bucket(BUCKET)
        for i in range(10):
            round_trip(app, f"{prefix}/before-{i}")
        victim = mcresolve_storage.node("dc1", 0)
        mcresolve_storage.run(victim.kill())
        for i in range(10):
            round_trip(app, f"{prefix}/after-{i}")

        # New connections, no client-side retries at all: each one the sidecar sends to the
        # dead node is refused and moved to the live one, until the pool ejects the dead node.
        strict = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10))
        pool = next(iter(sidecar.pools.values()))
        count = 0

        def one_fresh_connection_then_ejected() -> bool:
            nonlocal count
            strict.clear()
            round_trip(
                plain_client(mcresolve_storage, endpoint, http_client=strict), f"{prefix}/s{count}"
            )
            count += 1
            return victim.endpoint in {e.host_port for e in pool.snapshot().by_state("ejected")}

        until_sync(one_fresh_connection_then_ejected, what="dead node ejected", within=60)
        stats = sidecar.listeners[0].stats()
    assert stats.retried_total >= 1
    assert stats.failed_total == 0
