"""Helpers for the storefront tests: the seeded test bucket on mcresolve's real SeaweedFS harness
(:mod:`mcresolve.testing.storage`), and storefronts served on real loopback ports.

The storefront's own tests use the bucket ``storefront-tests`` (the sample catalog plus objects
with hostile names), so that the shared session cluster's ``minio-store`` stays pristine for
other tests and the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcresolve.minio import AsyncResilientMinio, HttpPolicy
from mcresolve.testing.storage import StorageCluster, StorageNode

REPO = Path(__file__).resolve().parents[2]
STOREFRONT_ROOT = REPO / "examples" / "storefront"
if str(STOREFRONT_ROOT) not in sys.path:
    sys.path.insert(0, str(STOREFRONT_ROOT))

from storefront.config import Settings  # noqa: E402
from storefront.sample import SeedObject, sample_objects  # noqa: E402
from storefront.seed import seed_catalog  # noqa: E402
from storefront.service import serve  # noqa: E402
from storefront.storage import ObjectClient  # noqa: E402

BUCKET = "storefront-tests"
SECRET_BUCKET = "storefront-secret"

# A tiny valid PNG (1x1) for objects with hostile names.
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a8d6b3c70000000049454e44ae426082"
)
HOSTILE_OBJECTS = (
    SeedObject('<script>alert("pwned")</script>.png', PNG_1X1, "image/png"),
    SeedObject("quote\"apos'amp&lt<gt>.png", PNG_1X1 + b"2", "image/png"),
    SeedObject("..%2F..%2F" + SECRET_BUCKET + "%2Fsecret.png", PNG_1X1 + b"3", "image/png"),
    SeedObject("nested/dir/ünïcödé café.png", PNG_1X1 + b"4", "image/png"),
    SeedObject("page.html", b"<html><script>alert(1)</script></html>", "text/html"),
)
SECRET_OBJECT = SeedObject("secret.png", b"top secret bytes", "image/png")


def settings_for(cluster: StorageCluster, node: StorageNode, **overrides: str) -> Settings:
    """Settings for a storefront on ``node`` (through its fault proxy), serving ``BUCKET``."""
    env: dict[str, str] = {
        "MINIO_HOST": node.address,
        "MINIO_PORT": str(node.port),
        "MINIO_ACCESS_KEY": cluster.access_key,
        "MINIO_SECRET_KEY": cluster.secret_key,
        "PORT": "0",
        "STOREFRONT_BIND": "127.0.0.1",
        "STOREFRONT_BUCKET": BUCKET,
        "STOREFRONT_STORAGE_TIMEOUT": "2",
    }
    env.update(overrides)
    return Settings.from_env(env)


def client_for(
    cluster: StorageCluster, node: StorageNode, timeout_s: float = 2.0, **kwargs: Any
) -> AsyncResilientMinio:
    """mcresolve's client on ``node`` alone (a ``static://`` target: one endpoint, no failover).
    Not started: use ``async with`` (or hand it to ``serve``, which starts and closes it)."""
    return AsyncResilientMinio(
        f"static://{node.endpoint}",
        access_key=cluster.access_key,
        secret_key=cluster.secret_key,
        secure=False,
        region="us-east-1",
        workers=4,
        http=HttpPolicy(connect_timeout=1.0, read_timeout=timeout_s),
        **kwargs,
    )


async def put_objects(client: ObjectClient, bucket: str, objects: tuple[SeedObject, ...]) -> None:
    if not await client.bucket_exists(bucket):
        await client.make_bucket(bucket)
    for item in objects:
        await client.put_object(
            bucket, item.key, io.BytesIO(item.data), len(item.data), content_type=item.content_type
        )


@dataclass(frozen=True)
class SeededStore:
    cluster: StorageCluster
    sample: dict[str, SeedObject]
    hostile: dict[str, SeedObject]

    @property
    def node(self) -> StorageNode:
        return self.cluster.node("dc1", 0)

    def settings(self, **overrides: str) -> Settings:
        return settings_for(self.cluster, self.node, **overrides)

    @property
    def all_products(self) -> dict[str, SeedObject]:
        products = {**self.sample, **self.hostile}
        products.pop("catalog.json", None)
        return products


@pytest.fixture(scope="session")
def seeded(mcresolve_storage_cluster: StorageCluster) -> SeededStore:
    """The test bucket, seeded once per session (sample catalog + hostile names)."""

    async def seed() -> None:
        node = mcresolve_storage_cluster.node("dc1", 0)
        async with client_for(mcresolve_storage_cluster, node, timeout_s=10) as client:
            await seed_catalog(client, BUCKET, sample_objects())
            await put_objects(client, BUCKET, HOSTILE_OBJECTS)
            await put_objects(client, SECRET_BUCKET, (SECRET_OBJECT,))

    asyncio.run(seed())
    return SeededStore(
        mcresolve_storage_cluster,
        sample={item.key: item for item in sample_objects()},
        hostile={item.key: item for item in HOSTILE_OBJECTS},
    )


@contextlib.asynccontextmanager
async def running_storefront(
    settings: Settings, client: ObjectClient | None = None
) -> AsyncIterator[str]:
    """Serve a storefront in-process on a real loopback port; yields its base URL."""
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(settings, stop, client=client, on_ready=lambda url: ready.set_result(url))
    )
    try:
        done, _ = await asyncio.wait({ready, task}, timeout=30, return_when="FIRST_COMPLETED")
        if task in done:
            task.result()  # raises the start-up error
        assert ready in done, "storefront did not start"
        yield ready.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def env_for_subprocess(settings_env: Mapping[str, str]) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MINIO_", "STOREFRONT_", "CONSUL_"))
    }
    env.update(settings_env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(STOREFRONT_ROOT), env.get("PYTHONPATH")]))
    return env


@contextlib.asynccontextmanager
async def storefront_process(env: dict[str, str]) -> AsyncIterator[tuple[str, Any]]:
    """``python -m storefront`` in its own process; yields (base URL, process)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "storefront",
        env=env,
        cwd=STOREFRONT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        prefix = "storefront: serving on "
        assert line.decode().startswith(prefix), line
        yield line.decode()[len(prefix) :].strip(), process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
