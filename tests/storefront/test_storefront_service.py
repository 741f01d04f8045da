"""The storefront as a service: ``python -m storefront`` and ``python -m storefront.seed`` as real
processes, and registration in (emulated) Consul with an HTTP check that Consul really runs."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from typing import Any

import aiohttp
from storefront.sample import SAMPLE_PRODUCTS
from storefront_testing import (
    STOREFRONT_ROOT,
    SeededStore,
    env_for_subprocess,
    running_storefront,
    storefront_process,
)

from mcresolve.testing.consul.emulator import ConsulEmulator
from mcresolve.testing.storage import StorageCluster
from support import until


def storefront_env(seeded: SeededStore, **extra: str) -> dict[str, str]:
    return env_for_subprocess(
        {
            "MINIO_HOST": seeded.node.address,
            "MINIO_PORT": str(seeded.node.port),
            "MINIO_ACCESS_KEY": seeded.cluster.access_key,
            "MINIO_SECRET_KEY": seeded.cluster.secret_key,
            "PORT": "0",
            "STOREFRONT_BIND": "127.0.0.1",
            **extra,
        }
    )


async def run_command(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        env=env,
        cwd=STOREFRONT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode or 0, output.decode()


async def agent_services(http: aiohttp.ClientSession, consul: str) -> dict[str, Any]:
    async with http.get(consul + "/v1/agent/services") as response:
        assert response.status == 200
        services: dict[str, Any] = await response.json()
        return services


async def passing_instances(http: aiohttp.ClientSession, consul: str, name: str) -> list[str]:
    async with http.get(f"{consul}/v1/health/service/{name}?passing") as response:
        assert response.status == 200
        return [entry["Service"]["ID"] for entry in await response.json()]


async def test_seed_then_serve_register_and_deregister_as_processes(seeded: SeededStore) -> None:
    bucket = f"seed-test-{uuid.uuid4().hex[:8]}"
    async with ConsulEmulator(["dc1"]) as consul:
        consul_url = consul.dc("dc1").http_url
        env = storefront_env(
            seeded,
            STOREFRONT_BUCKET=bucket,
            CONSUL_HTTP_ADDR=consul_url,
            STOREFRONT_SERVICE_NAME="storefront",
            STOREFRONT_CHECK_INTERVAL="1s",
        )
        code, output = await run_command(env, "-m", "storefront.seed", "--wait", "10")
        assert code == 0, output
        assert f"created bucket '{bucket}'" in output and "7 uploaded, 0 unchanged" in output
        code, output = await run_command(env, "-m", "storefront.seed")
        assert code == 0, output
        assert "existing bucket" in output and "0 uploaded, 7 unchanged" in output

        async with storefront_process(env) as (url, process), aiohttp.ClientSession() as http:
            async with http.get(url + "/") as page:
                assert page.status == 200
                text = await page.text()
            for product in SAMPLE_PRODUCTS:
                assert product.name in text and f"{product.price} EUR" in text

            services = await agent_services(http, consul_url)
            (service_id,) = [sid for sid, svc in services.items() if svc["Service"] == "storefront"]
            port = int(url.rsplit(":", 1)[1])
            assert services[service_id]["Port"] == port
            assert services[service_id]["Address"] == "127.0.0.1"

            async def consul_sees_it_passing() -> bool:
                return service_id in await passing_instances(http, consul_url, "storefront")

            await until(consul_sees_it_passing, within=15, what="HTTP check passing")

            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), timeout=20) == 0
            assert service_id not in await agent_services(http, consul_url)


async def test_consul_takes_the_instance_out_when_storage_is_lost(
    seeded: SeededStore, mcresolve_storage: StorageCluster
) -> None:
    async with ConsulEmulator(["dc1"]) as consul:
        consul_url = consul.dc("dc1").http_url
        settings = seeded.settings(
            CONSUL_HTTP_ADDR=consul_url,
            STOREFRONT_SERVICE_ID="storefront-under-test",
            STOREFRONT_CHECK_INTERVAL="1s",
            STOREFRONT_HEALTH_GRACE="1",
            STOREFRONT_STORAGE_TIMEOUT="1",
        )
        async with running_storefront(settings), aiohttp.ClientSession() as http:

            async def passing() -> bool:
                return "storefront-under-test" in await passing_instances(
                    http, consul_url, "storefront"
                )

            await until(passing, within=15, what="HTTP check passing")
            await seeded.node.kill()

            async def gone() -> bool:
                return not await passing()

            await until(gone, within=20, what="instance critical in Consul")
        assert "storefront-under-test" not in await _services(consul_url)


async def _services(consul_url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        return await agent_services(http, consul_url)


async def test_bad_configuration_exits_2_with_every_problem_named() -> None:
    env = env_for_subprocess(
        {"PORT": "http", "STOREFRONT_IMAGES": "carrier-pigeon", "MINIO_HOST": "minio.bogus.consul"}
    )
    env.pop("MINIO_ACCESS_KEY", None)
    code, output = await run_command(env, "-m", "storefront")
    assert code == 2
    for name in ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "PORT", "STOREFRONT_IMAGES", "MINIO_HOST"):
        assert name in output
    assert "expected a Consul name" in output
