"""A storefront configured the article's way, ``MINIO_HOST=storage-object-minio.query.consul``,
on the multi-cloud test bed (``mcresolve_topology``): its own client (mcresolve's
``AsyncResilientMinio`` on the stage-3 prepared query, Consul from ``CONSUL_HTTP_ADDR``) fails
over when the storage node it reads from is SIGKILLed, and the shop answers 503 (never 500) when
no storage is left.

The storefront runs as ``python -m storefront``, configured only by its environment.
"""

from __future__ import annotations

import time

import aiohttp
from storefront.keys import is_servable_key, quote_key
from storefront.storage import CALL_DEADLINE_FACTOR
from storefront_testing import (
    BUCKET,
    SeededStore,
    env_for_subprocess,
    storefront_process,
)

from mcresolve.testing.faultproxy import FaultMode
from mcresolve.testing.storage import StorageNode
from mcresolve.testing.topology import STORAGE_SERVICE, MultiCloudTopology
from support import until

DATACENTER = "dc1"
STORAGE_TIMEOUT_S = 1.0


def consul_name_env(seeded: SeededStore, topology: MultiCloudTopology) -> dict[str, str]:
    """The article's configuration: a plain Consul name (stage 3) and the local agent."""
    first = topology.storage.nodes_in(DATACENTER)[0]
    return env_for_subprocess(
        {
            "MINIO_HOST": f"{STORAGE_SERVICE}.query.consul",
            "MINIO_PORT": str(first.port),
            "MINIO_ACCESS_KEY": seeded.cluster.access_key,
            "MINIO_SECRET_KEY": seeded.cluster.secret_key,
            "CONSUL_HTTP_ADDR": topology.dc(DATACENTER).http_url,
            "PORT": "0",
            "STOREFRONT_BIND": "127.0.0.1",
            "STOREFRONT_BUCKET": BUCKET,
            "STOREFRONT_STORAGE_TIMEOUT": f"{STORAGE_TIMEOUT_S:g}",
            "STOREFRONT_LOG_LEVEL": "WARNING",
        }
    )


def served(node: StorageNode) -> int:
    return node.proxy.stats.requests.get(FaultMode.PASS, 0)


async def assert_every_image_served(
    http: aiohttp.ClientSession, url: str, seeded: SeededStore, when: str
) -> None:
    """The shop page lists every product and each image comes back byte-identical."""
    async with http.get(url + "/") as page:
        assert page.status == 200, f"{when}: the shop answered {page.status}"
        text = await page.text()
    for key, item in seeded.all_products.items():
        if not is_servable_key(key):
            continue
        path = f"/images/{quote_key(key)}"
        assert path in text, f"{when}: no card for {key!r}"
        async with http.get(url + path) as image:
            assert image.status == 200, f"{when}: {key!r} answered {image.status}"
            assert await image.read() == item.data, f"{when}: {key!r} is not byte-identical"


async def test_images_keep_coming_when_the_storage_node_in_use_is_killed(
    seeded: SeededStore, mcresolve_topology: MultiCloudTopology
) -> None:
    nodes = mcresolve_topology.storage.nodes_in(DATACENTER)
    env = consul_name_env(seeded, mcresolve_topology)
    async with storefront_process(env) as (url, _), aiohttp.ClientSession() as http:
        async with http.get(url + "/about") as about:
            assert "consul+query://storage-object-minio" in await about.text()
        for node in mcresolve_topology.storage.nodes:
            node.proxy.reset_stats()
        await assert_every_image_served(http, url, seeded, "before the kill")
        used = {node.name: served(node) for node in mcresolve_topology.storage.nodes}
        victim = max(nodes, key=served)
        assert served(victim) > 0, f"no {DATACENTER} node served the storefront: {used}"

        await mcresolve_topology.kill_storage_node(
            DATACENTER, victim.index
        )  # SIGKILL, nothing waited for
        survivors = [node for node in mcresolve_topology.storage.nodes if node is not victim]
        for node in survivors:
            node.proxy.reset_stats()
        await assert_every_image_served(http, url, seeded, f"right after killing {victim.name}")
        assert sum(served(node) for node in survivors) >= len(seeded.all_products)

        async with http.get(url + "/health") as health:
            assert health.status == 200
            assert (await health.json())["status"] == "pass"


async def test_all_storage_gone_is_a_503_page_and_the_shop_comes_back(
    seeded: SeededStore, mcresolve_topology: MultiCloudTopology
) -> None:
    env = consul_name_env(seeded, mcresolve_topology)
    async with storefront_process(env) as (url, _), aiohttp.ClientSession() as http:
        async with http.get(url + "/") as page:
            assert page.status == 200
        for datacenter in mcresolve_topology.datacenters:
            await mcresolve_topology.kill_datacenter_storage(datacenter)

        for path in ("/", "/images/red-circle-mug.png"):
            started = time.monotonic()
            async with http.get(url + path) as page:
                elapsed = time.monotonic() - started
                assert page.status == 503, f"{path}: {page.status}"
                assert page.content_type == "text/html"
                assert page.headers["Retry-After"].isdigit()
                text = await page.text()
            assert "cannot be reached" in text and "Traceback" not in text
            # Bounded by the client's call deadline, not by minio's minutes-long defaults.
            assert elapsed < STORAGE_TIMEOUT_S * CALL_DEADLINE_FACTOR + 3.0, (path, elapsed)

        for datacenter in mcresolve_topology.datacenters:
            await mcresolve_topology.restart_datacenter_storage(datacenter)

        async def shop_back() -> bool:
            async with http.get(url + "/") as page:
                return page.status == 200

        await until(shop_back, within=30, what="the shop serving again")
        await assert_every_image_served(http, url, seeded, "after storage came back")
