"""The storefront in a real browser, through the loss of a storage node (issue 5, "Done means").

Debian's headless chromium (install it with ``scripts/install-debian-tools.sh chromium``) loads
the storefront and checks that every seeded product image is rendered; then the storage node the
storefront was reading from is SIGKILLed, the page is reloaded (cache bypassed) and must show every
image again; a screenshot goes to ``test-output/browser/storefront.png``.

Stage: the storefront reads storage through its own client, mcresolve's ``AsyncResilientMinio``
built by ``build_object_client`` from ``MINIO_HOST``: here the stage-3 target of the multi-cloud
test bed (the prepared query ``storage-object-minio`` seen from the aws datacenter, with
``NearestN: 1`` failover), so losing one node is survivable.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from headless_chromium import (
    CHROMIUM,
    INSTALL_HINT,
    Page,
    chromium_installed,
    headless_chromium,
    live_group_members,
)
from PIL import Image

from mcresolve.minio import AsyncResilientMinio
from mcresolve.testing.faultproxy import FaultMode
from mcresolve.testing.storage import StorageNode
from mcresolve.testing.topology import MultiCloudTopology

REPO = Path(__file__).resolve().parents[2]
STOREFRONT_ROOT = REPO / "examples" / "storefront"
if str(STOREFRONT_ROOT) not in sys.path:
    sys.path.insert(0, str(STOREFRONT_ROOT))

from storefront.config import Settings  # noqa: E402
from storefront.sample import SAMPLE_PRODUCTS, sample_objects  # noqa: E402
from storefront.seed import seed_catalog  # noqa: E402
from storefront.service import serve  # noqa: E402
from storefront.storage import ObjectClient, build_object_client  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.storage]

BUCKET = "storefront-browser"
DATACENTER = "dc1"
SCREENSHOT = REPO / "test-output" / "browser" / "storefront.png"

# Every product card, with its image's state (after every image has settled).
CARDS_JS = """
(async () => {
  const cards = [...document.querySelectorAll("li.product")];
  await Promise.all(cards.map((card) => {
    const img = card.querySelector("img.product-image");
    return img ? img.decode().catch(() => null) : null;
  }));
  return {
    status: performance.getEntriesByType("navigation")[0]?.responseStatus ?? null,
    title: document.title,
    cards: cards.map((card) => {
      const img = card.querySelector("img.product-image");
      return {
        key: card.dataset.key,
        name: card.querySelector(".product-name")?.textContent.trim() ?? null,
        src: img ? img.currentSrc : null,
        complete: img ? img.complete : false,
        naturalWidth: img ? img.naturalWidth : 0,
      };
    }),
  };
})()
"""


def seeded_products() -> dict[str, str]:
    """Key -> display name of every seeded product (the sidecar ``catalog.json`` is not one)."""
    return {product.key: product.name for product in SAMPLE_PRODUCTS}


def storefront_settings(topology: MultiCloudTopology) -> Settings:
    cluster = topology.storage
    node = cluster.node(DATACENTER, 0)
    return Settings.from_env(
        {
            "MINIO_HOST": topology.target("query", dc=DATACENTER),
            "MINIO_PORT": str(node.port),
            "MINIO_ACCESS_KEY": cluster.access_key,
            "MINIO_SECRET_KEY": cluster.secret_key,
            "PORT": "0",
            "STOREFRONT_BIND": "127.0.0.1",
            "STOREFRONT_BUCKET": BUCKET,
            "STOREFRONT_IMAGES": "proxy",
            "STOREFRONT_STORAGE_TIMEOUT": "2",
            "STOREFRONT_INSTANCE_LABEL": "aws (browser test)",
        }
    )


@contextlib.asynccontextmanager
async def running_storefront(settings: Settings, client: ObjectClient) -> AsyncIterator[str]:
    """Serve the storefront in-process on a loopback port (``serve`` starts and closes
    ``client``); yields its base URL."""
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(settings, stop, client=client, on_ready=lambda url: ready.set_result(url))
    )
    try:
        started: set[asyncio.Future[Any]] = {ready, task}
        done, _ = await asyncio.wait(started, timeout=30, return_when="FIRST_COMPLETED")
        if task in done:
            task.result()
        assert ready in done, "the storefront did not start within 30 s"
        yield ready.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def rendered_cards(page: Page, expected: dict[str, str], when: str) -> list[dict[str, Any]]:
    """Assert the page shows one card per seeded product, each with its image rendered."""
    state = await page.evaluate(CARDS_JS)
    cards = state["cards"]
    assert state["status"] == 200, f"{when}: the storefront answered {state['status']}"
    assert sorted(card["key"] for card in cards) == sorted(expected), (
        f"{when}: product cards {[c['key'] for c in cards]} != seeded {sorted(expected)}"
    )
    broken = [card for card in cards if not (card["complete"] and card["naturalWidth"] > 0)]
    assert not broken, f"{when}: images not rendered: {broken}"
    assert all("/images/" in card["src"] for card in cards), f"{when}: not proxied: {cards}"
    names = {card["key"]: card["name"] for card in cards}
    assert names == expected, f"{when}: product names {names} != {expected}"
    return list(cards)


def served_requests(node: StorageNode) -> int:
    return node.proxy.stats.requests.get(FaultMode.PASS, 0)


async def test_every_product_image_renders_before_and_after_a_storage_node_is_killed(
    mcresolve_topology: MultiCloudTopology,
) -> None:
    if not chromium_installed():
        pytest.fail(f"{CHROMIUM} is missing: {INSTALL_HINT}", pytrace=False)
    products = seeded_products()
    settings = storefront_settings(mcresolve_topology)
    client = build_object_client(settings)  # the storefront's own client
    assert isinstance(client, AsyncResilientMinio)
    nodes = mcresolve_topology.storage.nodes_in(DATACENTER)
    async with running_storefront(settings, client) as url, headless_chromium() as browser:
        report = await seed_catalog(client, BUCKET, sample_objects())
        assert sorted(report.uploaded + report.unchanged) == sorted(
            item.key for item in sample_objects()
        )
        page = await browser.new_page()
        for node in nodes:
            node.proxy.reset_stats()

        await page.navigate(url + "/")
        await rendered_cards(page, products, "before the kill")

        # Kill the node that served the most of this page: the one the storefront relies on.
        before = {node.name: served_requests(node) for node in nodes}
        victim = max(nodes, key=served_requests)
        assert before[victim.name] > 0, f"no storage node of {DATACENTER} served: {before}"
        await mcresolve_topology.kill_storage_node(DATACENTER, victim.index)
        survivors = [node for node in nodes if node is not victim]
        for node in survivors:
            node.proxy.reset_stats()

        await page.reload()
        await rendered_cards(page, products, f"after killing {victim.name}")
        after = sum(served_requests(node) for node in survivors)
        assert after >= len(products), (
            f"the reload fetched only {after} objects from the surviving nodes "
            f"(expected every image: {len(products)})"
        )

        data = await page.screenshot(SCREENSHOT)
        browser_group = browser.process.pid
    assert live_group_members(browser_group) == [], "chromium processes outlived the browser"
    with Image.open(io.BytesIO(data)) as shot:
        assert shot.format == "PNG"
        assert shot.width >= 800 and shot.height >= 400, shot.size
        colours = shot.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 50, "the screenshot is (nearly) blank"
