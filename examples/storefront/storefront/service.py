"""The storefront's lifecycle: bind, register in Consul, serve until stopped, drain, deregister.

:func:`serve` is what ``python -m storefront`` runs; tests and the demo can run it in-process with
their own stop event and client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web

from . import __version__
from .app import STOREFRONT, create_app
from .config import Settings
from .registration import ServiceRegistration, deregister_from_consul, register_in_consul
from .storage import ObjectClient, build_catalog_storage, build_object_client

log = logging.getLogger(__name__)

#: How long registration is retried at start-up before the instance serves unregistered.
REGISTRATION_DEADLINE_S = 10.0
#: Upper bound on a Consul call during start-up or shutdown.
CONSUL_CALL_TIMEOUT_S = 3.0


def service_id_for(settings: Settings, port: int) -> str:
    """The Consul service ID: ``STOREFRONT_SERVICE_ID`` or ``<name>-<address>-<port>``."""
    return settings.service_id or f"{settings.service_name}-{settings.registration_address}-{port}"


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    *,
    client: ObjectClient | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until ``stop`` is set, then deregister from Consul and close.

    ``on_ready`` receives the base URL once the socket is bound (and registration attempted).
    """
    client = client or build_object_client(settings)
    app = create_app(settings, build_catalog_storage(settings, client))
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    registration: ServiceRegistration | None = None
    session: aiohttp.ClientSession | None = None
    try:
        site = web.TCPSite(runner, settings.bind, settings.port)
        await site.start()
        port = _bound_port(runner)
        storefront = app[STOREFRONT]
        storefront.instance_id = service_id_for(settings, port)
        if settings.consul_http_addr:
            session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=CONSUL_CALL_TIMEOUT_S)
            )
            registration = ServiceRegistration(
                service_id=storefront.instance_id,
                name=settings.service_name,
                address=settings.registration_address,
                port=port,
                meta={"version": __version__, "instance": settings.instance_label},
                check_interval=settings.consul_check_interval,
                check_timeout=settings.consul_check_timeout,
            )
            if not await _register(session, settings, registration, stop):
                registration = None
        base_url = f"http://{settings.registration_address}:{port}"
        log.info("storefront %s serving on %s", storefront.instance_id, base_url)
        if on_ready is not None:
            on_ready(base_url)
        await stop.wait()
        storefront.health.draining = True
        if registration is not None and session is not None:
            try:
                await deregister_from_consul(
                    session,
                    settings.consul_http_addr or "",
                    registration.service_id,
                    token=settings.consul_token,
                )
                log.info("deregistered %s from Consul", registration.service_id)
            except (aiohttp.ClientError, TimeoutError, RuntimeError) as error:
                log.warning("could not deregister %s: %s", registration.service_id, error)
    finally:
        if session is not None:
            await session.close()
        await runner.cleanup()
        close = getattr(client, "close", None)
        if callable(close):
            result = close()
            if asyncio.iscoroutine(result):
                await result


async def _register(
    session: aiohttp.ClientSession,
    settings: Settings,
    registration: ServiceRegistration,
    stop: asyncio.Event,
) -> bool:
    """Register, retrying for :data:`REGISTRATION_DEADLINE_S`; ``False`` if it never worked."""
    deadline = time.monotonic() + REGISTRATION_DEADLINE_S
    delay = 0.1
    while True:
        try:
            await register_in_consul(
                session,
                settings.consul_http_addr or "",
                registration,
                token=settings.consul_token,
            )
            log.info(
                "registered %s in Consul (check %s)",
                registration.service_id,
                registration.health_url,
            )
            return True
        except (aiohttp.ClientError, TimeoutError, RuntimeError) as error:
            if time.monotonic() + delay >= deadline or stop.is_set():
                log.error("serving without Consul registration: %s", error)
                return False
            log.warning("Consul registration failed (%s), retrying", error)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()
        delay = min(delay * 2, 2.0)


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError(f"no TCP address bound: {runner.addresses!r}")
