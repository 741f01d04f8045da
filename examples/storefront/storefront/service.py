"""The storefront's lifecycle: bind, register in Consul, serve until stopped, drain, deregister.

:func:`serve` is what ``python -m storefront`` runs; tests and the demo can run it in-process with
their own stop event and client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web

from mcresolve.consul import ConsulClient, ConsulError
from mcresolve.consul.registration import ConsulRegistration

from . import __version__
from .app import STOREFRONT, create_app
from .config import Settings
from .registration import ServiceRegistration, consul_config
from .storage import ObjectClient, build_catalog_storage, build_object_client

log = logging.getLogger(__name__)

#: How long start-up waits for the registration before serving unregistered (the registration
#: helper keeps retrying in the background and registers as soon as Consul answers).
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

    ``client`` (default: :func:`~storefront.storage.build_object_client`) is started here and
    closed on the way out, also when it was passed in. ``on_ready`` receives the base URL once
    the socket is bound (and registration attempted).
    """
    client = client or build_object_client(settings)
    await client.start()
    try:
        await _serve_with(settings, stop, client, on_ready)
    finally:
        await client.aclose()


async def _serve_with(
    settings: Settings,
    stop: asyncio.Event,
    client: ObjectClient,
    on_ready: Callable[[str], None] | None,
) -> None:
    app = create_app(settings, build_catalog_storage(settings, client))
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    consul: ConsulClient | None = None
    registration: ConsulRegistration | None = None
    try:
        site = web.TCPSite(runner, settings.bind, settings.port)
        await site.start()
        port = _bound_port(runner)
        storefront = app[STOREFRONT]
        storefront.instance_id = service_id_for(settings, port)
        if settings.consul_http_addr:
            consul = ConsulClient(
                consul_config(
                    settings.consul_http_addr,
                    settings.consul_token,
                    call_timeout=CONSUL_CALL_TIMEOUT_S,
                )
            )
            instance = ServiceRegistration(
                service_id=storefront.instance_id,
                name=settings.service_name,
                address=settings.registration_address,
                port=port,
                meta={"version": __version__, "instance": settings.instance_label},
                check_interval=settings.consul_check_interval,
                check_timeout=settings.consul_check_timeout,
            )
            registration = await _register(consul, instance, stop)
        base_url = f"http://{settings.registration_address}:{port}"
        log.info("storefront %s serving on %s", storefront.instance_id, base_url)
        if on_ready is not None:
            on_ready(base_url)
        await stop.wait()
        storefront.health.draining = True
        if registration is not None:
            await registration.aclose()  # deregisters (bounded, failures logged)
    finally:
        if registration is not None:
            await registration.aclose()
        if consul is not None:
            await consul.aclose()
        await runner.cleanup()


async def _register(
    consul: ConsulClient, instance: ServiceRegistration, stop: asyncio.Event
) -> ConsulRegistration | None:
    """Register with mcresolve's helper and wait up to :data:`REGISTRATION_DEADLINE_S` for it.

    Returns the running registration (it keeps retrying in the background if Consul was not
    reachable yet, and re-registers after an agent restart), or ``None`` when Consul rejected
    the definition (the instance then serves unregistered).
    """
    try:
        registration = ConsulRegistration(consul, instance.definition())
        await registration.start()
    except (ConsulError, ValueError) as error:
        log.error("serving without Consul registration: %s", error)
        return None
    if not registration.registered:
        registered = asyncio.ensure_future(registration.wait_registered())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait(
                {registered, stopped},
                timeout=REGISTRATION_DEADLINE_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in (registered, stopped):
                waiter.cancel()
    if registration.registered:
        log.info("registered %s in Consul (check %s)", instance.service_id, instance.health_url)
    else:
        log.error(
            "Consul not reachable for %.0f s, serving unregistered until it is: %s",
            REGISTRATION_DEADLINE_S,
            registration.last_error,
        )
    return registration


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError(f"no TCP address bound: {runner.addresses!r}")
