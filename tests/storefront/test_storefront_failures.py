"""Storage failures as shoppers and Consul see them: error pages, ``/health`` semantics."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from storefront.storage import ThreadedMinio
from storefront_testing import (
    ACCESS_KEY,
    SECRET_KEY,
    SeededStore,
    extra_gateway,
    running_storefront,
    settings_for,
)


async def poll_until(condition: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    """Await ``condition`` until true; returns the time it took (fails after ``within`` s)."""
    started = time.monotonic()
    while not await condition():
        assert time.monotonic() - started < within, f"not within {within} s: {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def test_storage_loss_gives_error_pages_and_health_turns_critical_after_grace(
    seeded: SeededStore,
) -> None:
    async with extra_gateway(seeded.seaweed) as (port, gateway):
        settings = settings_for(port, STOREFRONT_HEALTH_GRACE="1.5", STOREFRONT_STORAGE_TIMEOUT="1")
        async with running_storefront(settings) as url, aiohttp.ClientSession() as http:
            status, health = await get_json(http, url + "/health")
            assert (status, health["status"]) == (200, "pass"), health
            assert health["storage"]["reachable"] is True
            assert health["storage"]["bucket_exists"] is True
            assert health["storage"]["target"] == f"127.0.0.1:{port}"

            gateway.send_signal(signal.SIGKILL)
            await asyncio.to_thread(gateway.wait)
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

            await poll_until(critical, within=15, what="/health critical")
            assert time.monotonic() - killed_at >= 1.5

            # Storage back (a new gateway on the same port): healthy again, pages served.
            async with extra_gateway(seeded.seaweed, port=port):

                async def passing() -> bool:
                    status, health = await get_json(http, url + "/health")
                    return status == 200 and health["status"] == "pass"

                await poll_until(passing, within=15, what="/health passing again")
                async with http.get(url + "/") as page:
                    assert page.status == 200


@contextlib.asynccontextmanager
async def blackhole() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_health_answers_quickly_when_storage_hangs() -> None:
    async with blackhole() as port:
        settings = settings_for(port, STOREFRONT_STORAGE_TIMEOUT="5", STOREFRONT_HEALTH_GRACE="30")
        async with running_storefront(settings) as url, aiohttp.ClientSession() as http:
            started = time.monotonic()
            status, health = await get_json(http, url + "/health")
            elapsed = time.monotonic() - started
    # Below Consul's default 1 s check timeout, although storage would take 5 s to time out.
    assert elapsed < 1.0 + 0.5, elapsed
    assert status == 200 and health["status"] == "degraded", health


class CountingClient(ThreadedMinio):
    """A real client that counts the probes it sends."""

    probes = 0

    async def bucket_exists(self, bucket_name: str) -> bool:
        CountingClient.probes += 1
        return await super().bucket_exists(bucket_name)


async def test_concurrent_health_checks_share_one_probe(seeded: SeededStore) -> None:
    client = CountingClient(f"127.0.0.1:{seeded.seaweed.s3_port}", ACCESS_KEY, SECRET_KEY)
    CountingClient.probes = 0
    settings = seeded.seaweed.settings()
    async with running_storefront(settings, client) as url, aiohttp.ClientSession() as http:
        answers = await asyncio.gather(*(get_json(http, url + "/health") for _ in range(20)))
    assert all(status == 200 for status, _ in answers)
    assert CountingClient.probes == 1


class BrokenClient(ThreadedMinio):
    """A client with a bug: listing raises something that is not a storage error."""

    async def list_objects(self, *args: Any, **kwargs: Any) -> list[Any]:
        raise RuntimeError("bug: secret internals in the message")


async def test_unexpected_errors_give_a_500_page_without_details(seeded: SeededStore) -> None:
    client = BrokenClient(f"127.0.0.1:{seeded.seaweed.s3_port}", ACCESS_KEY, SECRET_KEY)
    async with (
        running_storefront(seeded.seaweed.settings(), client) as url,
        aiohttp.ClientSession() as http,
        http.get(url + "/") as page,
    ):
        assert page.status == 500
        assert page.content_type == "text/html"
        text = await page.text()
    assert "500" in text and "secret internals" not in text and "Traceback" not in text


async def test_missing_bucket_is_an_empty_shop_not_an_error(seeded: SeededStore) -> None:
    settings = seeded.seaweed.settings(STOREFRONT_BUCKET="never-seeded")
    async with (
        running_storefront(settings) as url,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(url + "/") as page:
            assert page.status == 200
            assert "does not exist yet" in await page.text()
        status, health = await get_json(http, url + "/health")
        assert status == 200 and health["storage"]["bucket_exists"] is False
