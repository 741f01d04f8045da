"""Storage failures as shoppers and Consul see them: error pages, ``/health`` semantics."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from storefront_testing import SeededStore, running_storefront

from mcresolve.minio import AsyncResilientMinio
from mcresolve.testing.storage import StorageCluster
from support import until


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def test_storage_loss_gives_error_pages_and_health_turns_critical_after_grace(
    seeded: SeededStore, mcresolve_storage: StorageCluster
) -> None:
    node = seeded.node
    settings = seeded.settings(STOREFRONT_HEALTH_GRACE="1.5", STOREFRONT_STORAGE_TIMEOUT="1")
    async with running_storefront(settings) as url, aiohttp.ClientSession() as http:
        status, health = await get_json(http, url + "/health")
        assert (status, health["status"]) == (200, "pass"), health
        assert health["storage"]["reachable"] is True
        assert health["storage"]["bucket_exists"] is True
        assert health["storage"]["target"] == f"static://{node.endpoint}"

        await node.kill()  # the only storage node this storefront knows
        killed_at = time.monotonic()

        async with http.get(url + "/") as page:
            assert page.status == 503
            assert page.content_type == "text/html"
            assert page.headers["Retry-After"].isdigit()
            text = await page.text()
        assert "cannot be reached" in text and "Traceback" not in text
        async with http.get(url + "/images/red-circle-mug.png") as image:
            assert image.status == 503
            assert image.content_type == "text/html"

        # Within the grace period the instance stays in Consul (200, degraded) ...
        status, health = await get_json(http, url + "/health")
        if time.monotonic() - killed_at < 1.0:
            assert (status, health["status"]) == (200, "degraded"), health
        assert health["storage"]["reachable"] is False
        assert health["storage"]["last_error"]

        # ... and leaves it once storage has been unreachable for longer (503, fail).
        async def critical() -> bool:
            status, health = await get_json(http, url + "/health")
            return status == 503 and health["status"] == "fail"

        await until(critical, within=15, what="/health critical")
        assert time.monotonic() - killed_at >= 1.5  # a time (the grace period); load only adds

        # Storage back: healthy again, pages served.
        await node.restart()

        async def passing() -> bool:
            status, health = await get_json(http, url + "/health")
            return status == 200 and health["status"] == "pass"

        await until(passing, within=15, what="/health passing again")
        async with http.get(url + "/") as page:
            assert page.status == 200


async def test_a_degraded_storage_cluster_gives_503_pages_not_500(
    seeded: SeededStore, mcresolve_storage: StorageCluster
) -> None:
    settings = seeded.settings(STOREFRONT_STORAGE_TIMEOUT="1")
    async with running_storefront(settings) as url, aiohttp.ClientSession() as http:
        async with http.get(url + "/") as page:
            assert page.status == 200
        # MinIO's quorum answer (503, Retry-After: 120 s: longer than any call deadline), which
        # mcresolve's client turns into its typed StorageClusterDegraded error.
        seeded.node.proxy.answer_error("XMinioReadQuorum")
        for path in ("/", "/images/red-circle-mug.png"):
            async with http.get(url + path) as page:
                assert page.status == 503, f"{path}: {page.status}"
                assert page.headers["Retry-After"].isdigit()
                text = await page.text()
            assert "cannot be reached" in text and "Traceback" not in text
        status, health = await get_json(http, url + "/health")
        assert status == 200 and health["status"] == "degraded", health
        assert "StorageClusterDegraded" in health["storage"]["last_error"]


async def test_a_dead_volume_server_changes_nothing_for_shoppers(
    seeded: SeededStore, mcresolve_storage: StorageCluster
) -> None:
    await mcresolve_storage.volume_servers[
        0
    ].kill()  # replication 001: every object has a second copy
    async with running_storefront(seeded.settings()) as url, aiohttp.ClientSession() as http:
        status, health = await get_json(http, url + "/health")
        assert (status, health["status"]) == (200, "pass"), health
        for key, item in seeded.sample.items():
            if key.endswith(".png"):
                async with http.get(f"{url}/images/{key}") as image:
                    assert image.status == 200
                    assert await image.read() == item.data


async def test_health_answers_quickly_when_storage_hangs(
    seeded: SeededStore, mcresolve_storage: StorageCluster
) -> None:
    seeded.node.proxy.blackhole()
    settings = seeded.settings(STOREFRONT_STORAGE_TIMEOUT="3", STOREFRONT_HEALTH_GRACE="30")
    async with running_storefront(settings) as url, aiohttp.ClientSession() as http:
        started = time.monotonic()
        status, health = await get_json(http, url + "/health")
        elapsed = time.monotonic() - started
    # A time by nature: below Consul's default 1 s check timeout (what the health endpoint must
    # meet), although storage would take 3 s to time out; 0.5 s of slack for a loaded machine.
    assert elapsed < 1.0 + 0.5, elapsed
    assert status == 200 and health["status"] == "degraded", health


class CountingClient(AsyncResilientMinio):
    """A real client that counts the probes it sends."""

    probes = 0

    async def bucket_exists(self, bucket_name: str) -> bool:
        CountingClient.probes += 1
        result: bool = await super().bucket_exists(bucket_name)
        return result


async def test_concurrent_health_checks_share_one_probe(seeded: SeededStore) -> None:
    cluster = seeded.cluster
    client = CountingClient(
        f"static://{seeded.node.endpoint}",
        access_key=cluster.access_key,
        secret_key=cluster.secret_key,
        secure=False,
        region="us-east-1",
    )
    CountingClient.probes = 0
    settings = seeded.settings()
    async with running_storefront(settings, client) as url, aiohttp.ClientSession() as http:
        answers = await asyncio.gather(*(get_json(http, url + "/health") for _ in range(20)))
    assert all(status == 200 for status, _ in answers)
    assert CountingClient.probes == 1


class BrokenClient(AsyncResilientMinio):
    """A client with a bug: listing raises something that is not a storage error."""

    def list_objects(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug: secret internals in the message")


async def test_unexpected_errors_give_a_500_page_without_details(seeded: SeededStore) -> None:
    cluster = seeded.cluster
    client = BrokenClient(
        f"static://{seeded.node.endpoint}",
        access_key=cluster.access_key,
        secret_key=cluster.secret_key,
        secure=False,
        region="us-east-1",
    )
    async with (
        running_storefront(seeded.settings(), client) as url,
        aiohttp.ClientSession() as http,
        http.get(url + "/") as page,
    ):
        assert page.status == 500
        assert page.content_type == "text/html"
        text = await page.text()
    assert "500" in text and "secret internals" not in text and "Traceback" not in text


async def test_missing_bucket_is_an_empty_shop_not_an_error(seeded: SeededStore) -> None:
    settings = seeded.settings(STOREFRONT_BUCKET="never-seeded")
    async with (
        running_storefront(settings) as url,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(url + "/") as page:
            assert page.status == 200
            assert "does not exist yet" in await page.text()
        status, health = await get_json(http, url + "/health")
        assert status == 200 and health["storage"]["bucket_exists"] is False
