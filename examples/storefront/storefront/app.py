"""The web application: product listing, about page, images, ``/health``, error pages.

:func:`create_app` builds an ``aiohttp`` application around a :class:`~storefront.storage.
CatalogStorage`; it does not bind sockets nor talk to Consul (see :mod:`storefront.service`).
Every page is rendered by jinja2 with autoescaping on, object keys are percent-encoded as one path
segment in links, and image responses carry only image content types (anything else is sent as
``application/octet-stream``) with ``nosniff`` and a sandboxing CSP, so an object can neither inject
markup into a page nor be served as one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web

from . import __version__
from .catalog import Product
from .config import ImageMode, Settings
from .health import HealthPolicy, StorageHealth
from .keys import is_servable_key, quote_key
from .storage import CatalogStorage, ObjectMissing, StorageUnavailable

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"

#: Content types an image response may carry; anything else is sent as a download.
IMAGE_CONTENT_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp"}
)
#: Seconds a browser should wait before retrying when storage is unavailable.
RETRY_AFTER_S = 5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Storefront:
    """Everything the handlers share."""

    settings: Settings
    storage: CatalogStorage
    health: StorageHealth
    templates: jinja2.Environment
    clock: Callable[[], float] = time.monotonic
    #: The instance's name in the footer and in ``/health`` (the Consul service ID once bound).
    instance_id: str = ""
    _probe: asyncio.Task[None] | None = field(default=None, repr=False)

    def render(self, request: web.Request, template: str, **context: Any) -> str:
        """Render ``template`` with the context every page gets."""
        return self.templates.get_template(template).render(
            static=lambda name: str(request.app.router["static"].url_for(filename=name)),
            instance_id=self.instance_id,
            instance_label=self.settings.instance_label,
            version=__version__,
            **context,
        )

    async def record(self, operation: Awaitable[Any]) -> Any:
        """Await a storage ``operation``, feeding its outcome to the health state."""
        started = self.clock()
        try:
            result = await operation
        except StorageUnavailable as error:
            self.health.record_failure(started, self.clock(), str(error))
            raise
        self.health.record_success(started, self.clock())
        return result

    async def probe_storage(self) -> None:
        """Probe storage once, sharing a probe already in flight."""
        if self._probe is None:
            self._probe = asyncio.create_task(self._run_probe())
        await asyncio.shield(self._probe)

    async def _run_probe(self) -> None:
        started = self.clock()
        try:
            exists = await self.storage.probe()
        except Exception as error:  # any failure to answer means "not reachable"
            if not isinstance(error, StorageUnavailable):
                log.warning("storage probe failed unexpectedly", exc_info=True)
            self.health.record_failure(started, self.clock(), f"{type(error).__name__}: {error}")
        else:
            self.health.record_success(started, self.clock(), bucket_exists=exists)
        finally:
            self._probe = None

    async def close(self) -> None:
        """Cancel a probe still in flight."""
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe


STOREFRONT = web.AppKey("storefront", Storefront)


def create_app(
    settings: Settings,
    storage: CatalogStorage,
    *,
    clock: Callable[[], float] = time.monotonic,
    health_policy: HealthPolicy | None = None,
) -> web.Application:
    """The storefront's ``aiohttp`` application."""
    policy = health_policy or HealthPolicy(grace_s=settings.health_grace_s)
    storefront = Storefront(
        settings=settings,
        storage=storage,
        health=StorageHealth(policy),
        templates=jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        ),
        clock=clock,
        instance_id=settings.service_id or settings.service_name,
    )
    app = web.Application(middlewares=[_error_pages])
    app[STOREFRONT] = storefront
    app.router.add_get("/", _index, name="index")
    app.router.add_get("/about", _about, name="about")
    app.router.add_get("/health", _health, name="health")
    app.router.add_get("/images/{key:.+}", _image, name="image")
    app.router.add_static("/static/", STATIC_DIR, name="static", append_version=True)
    app.on_response_prepare.append(_security_headers)

    async def close_storefront(_: web.Application) -> None:
        await storefront.close()

    app.on_cleanup.append(close_storefront)
    return app


async def _index(request: web.Request) -> web.Response:
    storefront = request.app[STOREFRONT]
    listing = await storefront.record(storefront.storage.list_products())
    storefront.health.bucket_exists = listing.bucket_exists
    cards = [await _card(storefront, product) for product in listing.products]
    html = storefront.render(
        request,
        "index.html",
        cards=cards,
        bucket=storefront.settings.bucket,
        bucket_exists=listing.bucket_exists,
    )
    return web.Response(text=html, content_type="text/html")


@dataclass(frozen=True)
class _Card:
    product: Product
    image_src: str | None


async def _card(storefront: Storefront, product: Product) -> _Card:
    if storefront.settings.image_mode is ImageMode.PROXY:
        src = f"/images/{quote_key(product.key)}" if is_servable_key(product.key) else None
    else:
        src = await storefront.storage.image_url(product.key)
    return _Card(product=product, image_src=src)


async def _about(request: web.Request) -> web.Response:
    storefront = request.app[STOREFRONT]
    settings = storefront.settings
    html = storefront.render(
        request,
        "about.html",
        bucket=settings.bucket,
        storage_target=settings.storage_target,
        image_mode=settings.image_mode.value,
    )
    return web.Response(text=html, content_type="text/html")


async def _image(request: web.Request) -> web.StreamResponse:
    storefront = request.app[STOREFRONT]
    key = request.match_info["key"]
    image = await storefront.record(storefront.storage.open_image(key))
    async with image:
        content_type = image.content_type.split(";")[0].strip().lower()
        response = web.StreamResponse(
            headers={
                "Content-Type": content_type
                if content_type in IMAGE_CONTENT_TYPES
                else "application/octet-stream",
                "Content-Disposition": f"inline; filename*=UTF-8''{quote(key, safe='')}",
                "Content-Security-Policy": "default-src 'none'; sandbox",
                "Cache-Control": "public, max-age=60",
            }
        )
        if image.content_length is not None:
            response.content_length = image.content_length
        if image.etag:
            response.headers["ETag"] = image.etag
        await response.prepare(request)
        if request.method == "HEAD":
            return response  # aiohttp would send whatever is written, even for HEAD
        try:
            async for chunk in image.chunks():
                await response.write(chunk)
        except StorageUnavailable as error:
            # Headers are gone already: the only honest signal left is a cut connection.
            log.warning("image %r broke mid-stream: %s", key, error)
            storefront.health.record_failure(storefront.clock(), storefront.clock(), str(error))
            if request.transport is not None:
                request.transport.close()
            return response
        except ConnectionResetError:
            return response  # the browser went away; the body is closed on the way out
        await response.write_eof()
    return response


async def _health(request: web.Request) -> web.Response:
    storefront = request.app[STOREFRONT]
    health = storefront.health
    if not health.draining and health.needs_probe(storefront.clock()):
        try:
            async with asyncio.timeout(health.policy.answer_within_s):
                await storefront.probe_storage()
        except TimeoutError:
            pass  # the probe goes on; answer from what is known now
    report = health.assess(storefront.clock())
    settings = storefront.settings
    body = {
        "status": report.status.value,
        "service": settings.service_name,
        "id": storefront.instance_id,
        "instance": settings.instance_label,
        "version": __version__,
        **report.body,
    }
    body["storage"] = {
        "target": settings.storage_target,
        "bucket": settings.bucket,
        **body.get("storage", {}),
    }
    return web.json_response(body, status=report.http_status, headers={"Cache-Control": "no-store"})


@web.middleware
async def _error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn failures into HTML pages with the right status (never a traceback)."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _error_page(request, error.status, error.reason, headers=error.headers)
    except ObjectMissing:
        return _error_page(request, 404, "Not Found")
    except StorageUnavailable as error:
        log.warning("storage unavailable for %s: %s", request.path, error)
        return _error_page(
            request,
            503,
            "Service Unavailable",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    except Exception:
        log.exception("unhandled error serving %s", request.path)
        return _error_page(request, 500, "Internal Server Error")


_ERROR_MESSAGES = {
    404: "There is no such page or product here.",
    405: "This page cannot be used that way.",
    500: "Something went wrong on our side. It has been logged; please try again later.",
    503: (
        "The product storage cannot be reached right now. Nothing is lost: "
        "please try again in a few seconds."
    ),
}


def _error_page(
    request: web.Request, status: int, reason: str, *, headers: Any = None
) -> web.Response:
    storefront = request.app[STOREFRONT]
    html = storefront.render(
        request,
        "error.html",
        status=status,
        reason=reason,
        message=_ERROR_MESSAGES.get(status, reason),
    )
    kept = {}
    if headers:
        kept = {name: value for name, value in headers.items() if name in ("Allow", "Retry-After")}
    return web.Response(text=html, status=status, content_type="text/html", headers=kept)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if response.content_type == "text/html":
        storefront = request.app[STOREFRONT]
        response.headers.setdefault("Content-Security-Policy", _page_csp(storefront.settings))


def _page_csp(settings: Settings) -> str:
    image_sources = "'self'"
    if settings.image_mode is not ImageMode.PROXY:
        external = urlsplit(settings.external_base_url)
        image_sources += f" {external.scheme}://{external.netloc}"
    return (
        "default-src 'none'; "
        f"img-src {image_sources}; "
        "style-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
