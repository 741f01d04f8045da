"""The storefront on a real port against a real SeaweedFS S3 gateway: pages, images, escaping."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from urllib.parse import quote, unquote, urlsplit

import aiohttp
import pytest
import yarl
from storefront_testing import BUCKET, SECRET_OBJECT, SeededStore, running_storefront


class _Cards(HTMLParser):
    """Collects product cards: data-key, image src, name, and every <script> tag."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict[str, str | None]] = []
        self.scripts = 0
        self._in_name = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "li" and attributes.get("class") == "product":
            self.cards.append({"key": attributes.get("data-key"), "src": None, "name": ""})
        if tag == "img" and self.cards and "product-image" in (attributes.get("class") or ""):
            self.cards[-1]["src"] = attributes.get("src")
        if tag == "h2" and self.cards:
            self._in_name = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_name = False

    def handle_data(self, data: str) -> None:
        if self._in_name:
            self.cards[-1]["name"] = (self.cards[-1]["name"] or "") + data


def parse_cards(page: str) -> _Cards:
    parser = _Cards()
    parser.feed(page)
    return parser


async def test_listing_renders_every_product_escaped(seeded: SeededStore) -> None:
    async with (
        running_storefront(seeded.settings()) as url,
        aiohttp.ClientSession() as http,
        http.get(url + "/") as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    parsed = parse_cards(page)
    assert parsed.scripts == 0, "an object name injected a <script> element"
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;.png" in page
    assert {card["key"] for card in parsed.cards} == set(seeded.all_products)
    names = {card["key"]: card["name"] for card in parsed.cards}
    assert names["red-circle-mug.png"] == "Red circle mug"  # from the sidecar
    assert names["nested/dir/ünïcödé café.png"] == "Ünïcödé café"  # derived from the key
    assert "12.50 EUR" in page
    assert "catalog.json" not in {card["key"] for card in parsed.cards}


async def test_images_through_the_app_are_byte_identical(seeded: SeededStore) -> None:
    async with (
        running_storefront(seeded.settings()) as url,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(url + "/") as response:
            cards = parse_cards(await response.text()).cards
        for card in cards:
            key, src = card["key"], card["src"]
            assert key is not None and src is not None
            assert src == "/images/" + quote(key, safe=""), src
            async with http.get(url + src) as image:
                assert image.status == 200, key
                body = await image.read()
                assert body == seeded.all_products[key].data, key
                assert image.headers["X-Content-Type-Options"] == "nosniff"
                expected = "image/png" if key.endswith(".png") else "application/octet-stream"
                assert image.content_type == expected, key


async def test_head_of_an_image_sends_headers_only(seeded: SeededStore) -> None:
    expected = seeded.sample["red-circle-mug.png"].data
    connector = aiohttp.TCPConnector(limit=1)  # the GET reuses the HEAD's connection
    async with (
        running_storefront(seeded.settings()) as url,
        aiohttp.ClientSession(connector=connector) as http,
    ):
        async with http.head(url + "/images/red-circle-mug.png") as head:
            assert head.status == 200
            assert head.content_length == len(expected)
        async with http.get(url + "/images/red-circle-mug.png") as image:
            assert image.status == 200
            assert await image.read() == expected


async def test_html_object_is_never_served_as_html(seeded: SeededStore) -> None:
    async with (
        running_storefront(seeded.settings()) as url,
        aiohttp.ClientSession() as http,
        http.get(url + "/images/page.html") as image,
    ):
        assert image.status == 200
        assert image.content_type == "application/octet-stream"
        assert "sandbox" in image.headers["Content-Security-Policy"]
        assert await image.read() == seeded.hostile["page.html"].data


@pytest.mark.parametrize(
    "path",
    [
        "/no-such-page",
        "/images/no-such-product.png",
        "/images/catalog.json",
        # Traversal out of the bucket, every spelling: encoded, double-encoded, dot segments.
        "/images/..%2F" + "secret-bucket%2Fsecret.png",
        "/images/%2E%2E%2Fsecret-bucket%2Fsecret.png",
        "/images/a%2F..%2F..%2Fsecret-bucket%2Fsecret.png",
        "/images/..",
        "/images/%00evil.png",
    ],
)
async def test_not_found_pages(seeded: SeededStore, path: str) -> None:
    async with (
        running_storefront(seeded.settings()) as url,
        aiohttp.ClientSession() as http,
        http.get(yarl.URL(url + path, encoded=True)) as response,
    ):
        assert response.status == 404, path
        assert response.content_type == "text/html"
        body = await response.read()
    assert b"404" in body and b"Back to the products" in body
    assert SECRET_OBJECT.data not in body


async def test_literal_percent_key_stays_in_its_bucket(seeded: SeededStore) -> None:
    key = next(k for k in seeded.hostile if k.startswith("..%2F"))
    async with (
        running_storefront(seeded.settings()) as url,
        aiohttp.ClientSession() as http,
        http.get(url + "/images/" + quote(key, safe="")) as response,
    ):
        assert response.status == 200
        assert await response.read() == seeded.hostile[key].data


async def test_presigned_urls_point_at_the_external_host(seeded: SeededStore) -> None:
    settings = seeded.settings(
        STOREFRONT_IMAGES="presigned",
        MINIO_EXTERNAL_HOST="shop-assets.example.test",
        MINIO_EXTERNAL_PORT="9443",
        MINIO_EXTERNAL_SECURE="true",
    )
    async with (
        running_storefront(settings) as url,
        aiohttp.ClientSession() as http,
        http.get(url + "/") as response,
    ):
        page = await response.text()
        csp = response.headers["Content-Security-Policy"]
    cards = parse_cards(page).cards
    assert {card["key"] for card in cards} == set(seeded.all_products)
    for card in cards:
        src = card["src"]
        assert src is not None
        parts = urlsplit(src)
        assert (parts.scheme, parts.netloc) == ("https", "shop-assets.example.test:9443")
        assert unquote(parts.path) == f"/{BUCKET}/{card['key']}"
        assert "X-Amz-Signature=" in parts.query
    assert "https://shop-assets.example.test:9443" in csp


async def test_presigned_urls_fetch_the_seeded_bytes(seeded: SeededStore) -> None:
    port = str(seeded.node.port)
    settings = seeded.settings(
        STOREFRONT_IMAGES="presigned", MINIO_EXTERNAL_HOST="127.0.0.1", MINIO_EXTERNAL_PORT=port
    )
    async with running_storefront(settings) as url, aiohttp.ClientSession() as http:
        async with http.get(url + "/") as response:
            cards = parse_cards(await response.text()).cards
        for card in cards[:3]:
            assert card["src"] is not None
            async with http.get(card["src"]) as image:
                assert image.status == 200
                assert await image.read() == seeded.all_products[str(card["key"])].data


async def test_external_urls_are_plain_bucket_urls(seeded: SeededStore) -> None:
    settings = seeded.settings(
        STOREFRONT_IMAGES="external",
        MINIO_EXTERNAL_HOST="cdn.example.test",
        MINIO_EXTERNAL_PORT="80",
    )
    async with (
        running_storefront(settings) as url,
        aiohttp.ClientSession() as http,
        http.get(url + "/") as response,
    ):
        cards = parse_cards(await response.text()).cards
    by_key = {card["key"]: card["src"] for card in cards}
    assert by_key["red-circle-mug.png"] == f"http://cdn.example.test:80/{BUCKET}/red-circle-mug.png"
    hostile = '<script>alert("pwned")</script>.png'
    assert by_key[hostile] == f"http://cdn.example.test:80/{BUCKET}/" + quote(hostile)


async def test_about_page_static_assets_and_security_headers(seeded: SeededStore) -> None:
    settings = seeded.settings()
    async with running_storefront(settings) as url, aiohttp.ClientSession() as http:
        async with http.get(url + "/about") as response:
            assert response.status == 200
            page = await response.text()
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
            assert response.headers["X-Frame-Options"] == "DENY"
        assert BUCKET in page
        stylesheets = re.findall(r'href="(/static/style\.css[^"]*)"', page)
        assert stylesheets
        async with http.get(url + html.unescape(stylesheets[0])) as css:
            assert css.status == 200
            assert css.content_type == "text/css"
            text = await css.text()
        assert "http" not in text, "the stylesheet must not load anything from elsewhere"
        escape_url = yarl.URL(url + "/static/../storefront/app.py", encoded=True)
        async with http.get(escape_url) as escape:
            assert escape.status == 404
        async with http.post(url + "/about") as wrong_method:
            assert wrong_method.status == 405
            assert wrong_method.content_type == "text/html"
            assert "GET" in wrong_method.headers["Allow"]
