"""The README's quick start, run as written against the emulated Consul and real storage.

The README promises that switching stages is configuration only and that the Consul agent is found
through ``CONSUL_HTTP_ADDR`` like the consul CLI finds it. This test runs its three snippets with
nothing but that environment variable (and the storage credentials) pointing at the test bed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mcresolve import Endpoint, EndpointPool
from mcresolve.minio import AsyncResilientMinio, ResilientMinio
from mcresolve.testing.topology import MultiCloudTopology

BUCKET = "readme-quickstart"


async def test_readme_quick_start_runs_as_written(
    mcresolve_topology: MultiCloudTopology, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in mcresolve_topology.consul_env("dc1").items():
        monkeypatch.setenv(name, value)
    access_key = mcresolve_topology.storage.access_key
    secret_key = mcresolve_topology.storage.secret_key
    image = tmp_path / "shoe.png"
    image.write_bytes(b"\x89PNG not really")

    def synchronous_drop_in() -> None:
        client = ResilientMinio(
            "consul+query://storage-object-minio",
            access_key=access_key,
            secret_key=secret_key,
            secure=False,
        )
        try:
            if not client.bucket_exists(BUCKET):
                client.make_bucket(BUCKET)
            client.fput_object(BUCKET, "shoe.png", str(image))
        finally:
            client.close()

    await asyncio.to_thread(synchronous_drop_in)

    async with AsyncResilientMinio(
        "consul://storage-object-minio?tag=minio",
        access_key=access_key,
        secret_key=secret_key,
        secure=False,
    ) as aclient:
        names = [obj.object_name for obj in await aclient.list_objects(BUCKET)]
        assert names == ["shoe.png"]
        assert await aclient.read_object(BUCKET, "shoe.png") == image.read_bytes()

    local = {(node.address, node.port) for node in mcresolve_topology.nodes_in("dc1")}
    async with EndpointPool("storage-object-minio.query.consul") as pool:
        await pool.wait_ready(10)

        async def fetch(endpoint: Endpoint) -> tuple[str, int]:
            return endpoint.key

        assert await pool.call(fetch) in local
