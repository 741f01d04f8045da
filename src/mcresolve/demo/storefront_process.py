"""``python -m mcresolve.demo.storefront_process``: run the example storefront (configured by the
environment, exactly like ``python -m storefront``) with mcresolve's storage client.

The example's own ``build_object_client`` is the seam where mcresolve's ``AsyncResilientMinio``
belongs. While it still returns its single-endpoint stand-in (``ThreadedMinio``), this launcher
builds an :class:`~mcresolve.minio.AsyncResilientMinio` from ``MINIO_HOST`` as an mcresolve target
(``storage-object-minio.query.consul`` is stage 3, ``.service.consul`` stage 2) and hands it to
the storefront; once the example builds a resilient client itself, its client is used as is.
``examples/storefront`` must be importable (the demo puts it on ``PYTHONPATH``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import sys
from typing import Any

from mcresolve.call_policy import CallPolicy
from mcresolve.consul import ConsulConfig
from mcresolve.minio import AsyncResilientMinio, ExternalEndpoint, HttpPolicy


def _build_client(settings: Any, storage: Any) -> Any:
    client = storage.build_object_client(settings)
    if type(client).__name__ != "ThreadedMinio":
        return client
    client.close()
    timeout = float(settings.storage_timeout_s)
    return AsyncResilientMinio(
        settings.minio_host,
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        secure=settings.minio_secure,
        region=settings.region,
        consul=ConsulConfig.from_env(os.environ),
        http=HttpPolicy(connect_timeout=min(timeout, 1.0), read_timeout=timeout),
        # A page must not wait for storage longer than the storefront's own storage deadline.
        call_policy=CallPolicy(deadline=timeout * 2, attempt_timeout=timeout),
        external=ExternalEndpoint(
            settings.external_host, settings.external_port, secure=settings.external_secure
        ),
    )


async def _serve(settings: Any, service: Any, storage: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    client = _build_client(settings, storage)
    start = getattr(client, "start", None)
    if start is not None:
        await start()

    def announce(url: str) -> None:
        print(f"storefront: serving on {url}", flush=True)

    await service.serve(settings, stop, client=client, on_ready=announce)


def main() -> int:
    """Serve until SIGTERM/SIGINT; exit 2 on bad configuration."""
    logging.basicConfig(
        level=(os.environ.get("STOREFRONT_LOG_LEVEL") or "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = importlib.import_module("storefront.config")
    service = importlib.import_module("storefront.service")
    storage = importlib.import_module("storefront.storage")
    try:
        settings = config.Settings.from_env(os.environ)
    except config.ConfigError as error:
        print(f"storefront: bad configuration: {error}", file=sys.stderr)
        return 2
    asyncio.run(_serve(settings, service, storage))
    return 0


if __name__ == "__main__":
    sys.exit(main())
