"""Live traffic against the demo: shoppers that find the storefront through Consul, a probe of the
stage-2 (local-only) storefront, and a writer that uploads objects through the prepared query.
Every visit or write becomes a :class:`~mcresolve.demo.measure.Sample`.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from mcresolve.endpoint import Endpoint
from mcresolve.errors import McResolveError
from mcresolve.minio import AsyncResilientMinio, StorageClusterDegraded
from mcresolve.pool import EndpointPool

from .measure import LOCAL_ONLY, SHOPPERS, SIDECAR, WRITES, Sample

_IMG_SRC = re.compile(r'<img[^>]*\ssrc="([^"]+)"')


class VisitFailed(Exception):
    """A page or image answered with an error or was incomplete (the storefront answered, so
    the shopper's pool must not fail over: a browser would show the error)."""


def image_sources(page: str) -> list[str]:
    """The ``src`` of every ``<img>`` of a storefront page, unescaped."""
    return [html.unescape(src) for src in _IMG_SRC.findall(page)]


@dataclass(frozen=True)
class TrafficSettings:
    """Shape of the traffic (small: the machine has two cores and runs everything).

    ``visit_timeout`` is how long a shopper (or the probe) waits for each answer, like a
    browser's limit; it must stay above the storefront's own limit for a page (see
    :func:`mcresolve.demo.runner.storefront_page_limit`), so that a failing storefront's error
    page, what its users see, is what the demo counts, not the demo giving up first.
    ``writes``: uploads the writer makes at most (``None``: until stopped).
    """

    shoppers_per_dc: int = 2
    local_only_probes: int = 2
    sidecar_probes: int = 1
    think_time: float = 0.15
    visit_timeout: float = 8.0
    write_interval: float = 0.25
    write_deadline: float = 3.0
    writes: int | None = None


async def visit(session: aiohttp.ClientSession, base_url: str, min_images: int) -> int:
    """Load the page and every image on it like a browser; the number of images loaded.

    Raises :class:`VisitFailed` (an answer) or aiohttp/OS errors (no answer)."""
    async with session.get(base_url + "/") as response:
        body = await response.text()
        if response.status != 200:
            raise VisitFailed(f"page {response.status}")
    sources = image_sources(body)
    if len(sources) < min_images:
        raise VisitFailed(f"{len(sources)} images on the page, expected {min_images}")
    for src in sources:
        url = src if src.startswith("http") else base_url + src
        async with session.get(url) as image:
            data = await image.read()
            if image.status != 200 or not data:
                raise VisitFailed(f"image {image.status}")
    return len(sources)


def _reason(error: BaseException) -> str:
    if isinstance(error, VisitFailed):
        return str(error)
    if isinstance(error, StorageClusterDegraded):
        return (
            f"StorageClusterDegraded({error.affects.value}, {error.code or error.status}, "
            f"{error.attempts} attempts)"
        )
    if isinstance(error, McResolveError) and error.__cause__ is not None:
        return _reason(error.__cause__)
    code = getattr(error, "code", None)
    if isinstance(code, str) and code:
        return code
    return type(error).__name__


class TrafficGenerator:
    """Runs every traffic class until :meth:`stop`; samples go to :attr:`samples`.

    ``shopper_pools`` maps a datacenter to the pool its shoppers resolve the storefront with
    (``consul+query://storefront`` through that datacenter's agent); ``local_only_url`` is the
    stage-2 storefront; ``sidecar`` (datacenter, URL) the storefront with a plain MinIO client
    behind ``mcresolve sidecar``; ``writer`` uploads to ``write_bucket``.
    """

    def __init__(
        self,
        *,
        shopper_pools: dict[str, EndpointPool],
        local_only: tuple[str, str],
        writer: AsyncResilientMinio,
        sidecar: tuple[str, str] | None = None,
        write_bucket: str,
        min_images: int,
        settings: TrafficSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings if settings is not None else TrafficSettings()
        self._pools = shopper_pools
        self._local_only_dc, self._local_only_url = local_only
        self._sidecar = sidecar
        self._writer = writer
        self._bucket = write_bucket
        self.min_images = min_images
        self._clock = clock
        self.samples: list[Sample] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._writes = 0

    def _begin(self) -> float:
        return self._clock()

    def _record(self, started: float, traffic: str, ok: bool, by: str, error: str) -> None:
        self.samples.append(
            Sample(traffic, started, self._clock() - started, ok, by if ok else "", error)
        )

    async def start(self) -> None:
        """Start every worker."""
        timeout = aiohttp.ClientTimeout(total=self.settings.visit_timeout, connect=1.0)
        self._session = aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=0, force_close=False)
        )
        for dc, pool in self._pools.items():
            for _ in range(self.settings.shoppers_per_dc):
                self._tasks.append(asyncio.create_task(self._shopper(pool, dc)))
        for _ in range(self.settings.local_only_probes):
            self._tasks.append(asyncio.create_task(self._probe(LOCAL_ONLY, *self._local_only())))
        if self._sidecar is not None:
            for _ in range(self.settings.sidecar_probes):
                self._tasks.append(asyncio.create_task(self._probe(SIDECAR, *self._sidecar)))
        self._tasks.append(asyncio.create_task(self._write_loop()))

    async def stop(self) -> None:
        """Stop every worker and close the HTTP session."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _shopper(self, pool: EndpointPool, home_dc: str) -> None:
        assert self._session is not None
        session = self._session

        async def attempt(endpoint: Endpoint) -> str:
            await visit(session, f"http://{endpoint.host_port}", self.min_images)
            return endpoint.datacenter or home_dc

        while not self._stopping.is_set():
            ticket = self._begin()
            try:
                served_by = await pool.call(attempt, deadline=self.settings.visit_timeout)
            except Exception as error:  # every failure is a failed visit, whatever its type
                self._record(ticket, SHOPPERS, False, "", _reason(error))
            else:
                self._record(ticket, SHOPPERS, True, served_by, "")
            await self._pause(self.settings.think_time)

    def _local_only(self) -> tuple[str, str]:
        return self._local_only_dc, self._local_only_url

    async def _probe(self, traffic: str, dc: str, url: str) -> None:
        """Visits to one storefront, straight to its URL (no Consul in between)."""
        assert self._session is not None
        while not self._stopping.is_set():
            ticket = self._begin()
            try:
                await visit(self._session, url, self.min_images)
            except Exception as error:
                self._record(ticket, traffic, False, "", _reason(error))
            else:
                self._record(ticket, traffic, True, dc, "")
            await self._pause(self.settings.think_time)

    @property
    def writes(self) -> int:
        """Uploads attempted so far."""
        return self._writes

    async def _write_loop(self) -> None:
        limit = self.settings.writes
        while not self._stopping.is_set() and (limit is None or self._writes < limit):
            ticket = self._begin()
            self._writes += 1
            data = f"write {self._writes} at {ticket:.3f}\n".encode()
            try:
                async with asyncio.timeout(self.settings.write_deadline + 1.0):
                    await self._writer.put_object(
                        self._bucket, f"w/{self._writes:06d}", io.BytesIO(data), len(data)
                    )
            except Exception as error:
                self._record(ticket, WRITES, False, "", _reason(error))
            else:
                self._record(ticket, WRITES, True, "", "")
            await self._pause(self.settings.write_interval)
