"""The storefront's view of object storage: a small adapter over mcresolve's resilient client.

:class:`CatalogStorage` is what the web app uses (``list_products``, ``open_image``, ``image_url``,
``probe``). It talks to storage only through :class:`ObjectClient`, the handful of
``minio.Minio`` methods it needs, as coroutines: the shape of mcresolve's
:class:`~mcresolve.minio.AsyncResilientMinio`, which :func:`build_object_client` builds from
``MINIO_HOST`` as an mcresolve target, so every storage call fails over across storage nodes.

Storage errors are translated into three exceptions the app can render: :class:`ObjectMissing`
(404), :class:`BucketMissing` (an empty shop) and :class:`StorageUnavailable` (503): a storage
answer other than "missing", a transport failure, and every typed error of mcresolve (no
endpoint, every attempt failed, deadline passed, cluster degraded, write outcome unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, BinaryIO, Final, Protocol, Self, cast
from urllib.parse import quote

import minio
import urllib3
from minio.error import MinioException, S3Error

from mcresolve.consul import ConsulConfig
from mcresolve.errors import McResolveError, NoEndpointAvailable
from mcresolve.minio import (
    AsyncResilientMinio,
    ExternalEndpoint,
    HttpPolicy,
    StorageClusterDegraded,
)
from mcresolve.pool.call_policy import CallPolicy

from .catalog import SIDECAR_KEY, Product, Sidecar, StoredObject, build_products, parse_sidecar
from .config import ImageMode, Settings
from .keys import is_servable_key

#: Bytes read from storage per chunk when streaming an image to the browser.
CHUNK_SIZE = 64 * 1024

_MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "NoSuchObject", "NoSuchVersion"})
_MISSING_BUCKET_CODES = frozenset({"NoSuchBucket"})

#: A storage call (every attempt on every endpoint, and the waits between) is bounded by this
#: many ``STOREFRONT_STORAGE_TIMEOUT``: room for one attempt that times out and one on another
#: node.
CALL_DEADLINE_FACTOR: Final = 2
#: A page's storage operation as a whole (a listing plus the sidecar, opening an image) is
#: bounded by this many ``STOREFRONT_STORAGE_TIMEOUT``.
OPERATION_DEADLINE_FACTOR: Final = 3

#: Failures that mean "storage cannot answer now" (503), besides storage's own error answers:
#: transport errors, and mcresolve's typed errors (``CallFailed`` and its subclasses
#: ``AttemptsExhausted``, ``DeadlineExceeded``, ``ClusterUnavailable``; ``WriteOutcomeUnknown``,
#: ``ObjectChangedDuringRead``, ``PoolClosed``; ``StorageClusterDegraded``;
#: ``NoEndpointAvailable``).
UNAVAILABLE_ERRORS: Final[tuple[type[BaseException], ...]] = (
    MinioException,
    urllib3.exceptions.HTTPError,
    OSError,
    McResolveError,
    StorageClusterDegraded,
    NoEndpointAvailable,
)


class StorageError(Exception):
    """Base class of the errors :class:`CatalogStorage` raises."""


class ObjectMissing(StorageError):
    """The object does not exist (or its key can never be served)."""


class BucketMissing(StorageError):
    """The bucket does not exist (nothing seeded yet)."""


class StorageUnavailable(StorageError):
    """Storage could not answer: unreachable, timed out, or failing server-side."""


class ObjectBody(Protocol):
    """The body of a ``get_object`` answer (a urllib3 response): read in worker threads."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    def read(self, amt: int | None = None) -> bytes: ...

    def close(self) -> None: ...

    def release_conn(self) -> None: ...


class ObjectClient(Protocol):
    """The methods of ``minio.Minio`` the storefront uses, as coroutines, and the client's
    lifecycle (``start`` before the first call, ``aclose`` at the end): what
    :class:`~mcresolve.minio.AsyncResilientMinio` offers.

    ``list_objects`` may return a list, any iterable or an async iterable of
    ``minio.datatypes.Object``-like values (``object_name``, ``size``, ``last_modified``), or an
    awaitable of one.
    """

    async def start(self) -> object: ...

    async def aclose(self) -> None: ...

    async def bucket_exists(self, bucket_name: str) -> bool: ...

    async def make_bucket(self, bucket_name: str) -> None: ...

    async def list_objects(
        self, bucket_name: str, prefix: str | None = None, recursive: bool = False
    ) -> Any: ...

    async def stat_object(self, bucket_name: str, object_name: str) -> Any: ...

    async def get_object(self, bucket_name: str, object_name: str) -> ObjectBody: ...

    async def presigned_get_object(
        self, bucket_name: str, object_name: str, expires: timedelta = ...
    ) -> str: ...

    async def put_object(
        self,
        bucket_name: str,
        object_name: str,
        data: BinaryIO,
        length: int,
        content_type: str = ...,
        metadata: dict[str, str] | None = None,
    ) -> Any: ...


class ImageStream:
    """An open image: its headers and its body as an async iterator of chunks.

    Use as ``async with``; the underlying connection is released when the block ends, even when
    the body was not read to the end.
    """

    def __init__(self, body: ObjectBody, key: str) -> None:
        self._body = body
        self.key = key
        headers = body.headers
        self.content_type: str = headers.get("Content-Type") or "application/octet-stream"
        length = headers.get("Content-Length")
        self.content_length: int | None = int(length) if length and length.isdigit() else None
        self.etag: str | None = headers.get("ETag")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, :data:`CHUNK_SIZE` bytes at a time (storage failures become
        :class:`StorageUnavailable`)."""
        while True:
            try:
                chunk = await asyncio.to_thread(self._body.read, CHUNK_SIZE)
            except UNAVAILABLE_ERRORS as error:
                raise StorageUnavailable(f"reading {self.key!r} failed: {error}") from error
            if not chunk:
                return
            yield chunk

    async def aclose(self) -> None:
        """Close the body and give its connection back to the pool."""
        body = self._body

        def close() -> None:
            body.close()
            body.release_conn()

        await asyncio.to_thread(close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


@dataclass(frozen=True)
class CatalogListing:
    """One listing of the shop: its products, and whether the bucket exists at all."""

    products: list[Product]
    bucket_exists: bool = True


class CatalogStorage:
    """The storefront's storage adapter over an :class:`ObjectClient`.

    ``deadline_s`` bounds each operation as a whole (listing plus sidecar, opening an image), on
    top of whatever per-attempt timeouts the client applies.
    """

    def __init__(
        self,
        client: ObjectClient,
        bucket: str,
        *,
        image_mode: ImageMode = ImageMode.PROXY,
        external_base_url: str = "",
        presign_expiry: timedelta = timedelta(hours=1),
        deadline_s: float = 10.0,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.image_mode = image_mode
        self.external_base_url = external_base_url.rstrip("/")
        self.presign_expiry = presign_expiry
        self.deadline_s = deadline_s

    async def list_products(self) -> CatalogListing:
        """Every product of the bucket, described by the sidecar when there is one."""
        async with self._translated("listing the catalog"):
            try:
                listing = await self.client.list_objects(self.bucket, recursive=True)
                objects = [
                    StoredObject(
                        key=item.object_name,
                        size=int(item.size or 0),
                        last_modified=item.last_modified,
                    )
                    for item in await _collect(listing)
                ]
            except S3Error as error:
                if error.code in _MISSING_BUCKET_CODES:
                    return CatalogListing(products=[], bucket_exists=False)
                raise
            sidecar = Sidecar()
            if any(stored.key == SIDECAR_KEY for stored in objects):
                sidecar = await self._read_sidecar()
        return CatalogListing(products=build_products(objects, sidecar))

    async def open_image(self, key: str) -> ImageStream:
        """Open ``key`` for streaming; raises :class:`ObjectMissing` for unknown or unservable
        keys (``..`` segments, control characters) without asking storage."""
        if not is_servable_key(key) or key == SIDECAR_KEY:
            raise ObjectMissing(key)
        async with self._translated(f"reading {key!r}"):
            body = await self.client.get_object(self.bucket, key)
        return ImageStream(body, key)

    async def image_url(self, key: str) -> str | None:
        """The URL a browser should load ``key`` from, for :attr:`ImageMode.PRESIGNED` (a
        presigned GET for the external host) and :attr:`ImageMode.EXTERNAL` (a plain URL on the
        external host); ``None`` in proxy mode or for a key that can never be served."""
        if not is_servable_key(key) or self.image_mode is ImageMode.PROXY:
            return None
        if self.image_mode is ImageMode.EXTERNAL:
            return f"{self.external_base_url}/{quote(self.bucket)}/{quote(key, safe='/')}"
        async with self._translated(f"presigning {key!r}"):
            return await self.client.presigned_get_object(
                self.bucket, key, expires=self.presign_expiry
            )

    async def probe(self) -> bool:
        """One cheap round trip to storage (does the bucket exist?), for ``/health``.

        Raises :class:`StorageUnavailable` when storage cannot answer."""
        async with self._translated("probing storage"):
            return await self.client.bucket_exists(self.bucket)

    async def _read_sidecar(self) -> Sidecar:
        try:
            body = await self.client.get_object(self.bucket, SIDECAR_KEY)
        except S3Error as error:
            if error.code in _MISSING_OBJECT_CODES:
                return Sidecar()
            raise

        def read_all() -> bytes:
            try:
                return body.read()
            finally:
                body.close()
                body.release_conn()

        return parse_sidecar(await asyncio.to_thread(read_all))

    @contextlib.asynccontextmanager
    async def _translated(self, doing: str) -> AsyncIterator[None]:
        """Bound the block by :attr:`deadline_s` and translate storage errors."""
        deadline = asyncio.timeout(self.deadline_s)
        try:
            async with deadline:
                yield
        except S3Error as error:
            if error.code in _MISSING_OBJECT_CODES:
                raise ObjectMissing(doing) from error
            if error.code in _MISSING_BUCKET_CODES:
                raise BucketMissing(self.bucket) from error
            raise StorageUnavailable(f"{doing}: {error.code}: {error.message}") from error
        except UNAVAILABLE_ERRORS as error:
            if deadline.expired():
                raise StorageUnavailable(
                    f"{doing}: no answer within {self.deadline_s:g} s"
                ) from error
            raise StorageUnavailable(f"{doing}: {type(error).__name__}: {error}") from error


async def _collect(listing: Any) -> list[Any]:
    """Materialise what ``list_objects`` returned (iterable or async iterable)."""
    if inspect.isawaitable(listing):
        listing = await listing
    if hasattr(listing, "__aiter__"):
        return [item async for item in listing]
    return list(cast(Iterable[Any], listing))


class PlainMinioClient:
    """``minio.Minio`` as an application that knows nothing of mcresolve has it
    (``STOREFRONT_STORAGE_CLIENT=plain``): one endpoint, ``MINIO_HOST:MINIO_PORT``, urllib3's
    own retries (minio's defaults: 5, backoff 0.2 s, on 500/502/503/504) and the storefront's
    timeouts; each call on a worker thread. In front of it, ``mcresolve sidecar`` provides the
    failover."""

    def __init__(self, settings: Settings) -> None:
        timeout = settings.storage_timeout_s
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout, 1.0), read=timeout),
            maxsize=10,
            retries=urllib3.Retry(
                total=5, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )
        self._client = minio.Minio(
            f"{_bracketed(settings.minio_host)}:{settings.minio_port}",
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.minio_secure,
            region=settings.region,
            http_client=self._http,
        )

    async def start(self) -> object:
        return None

    async def aclose(self) -> None:
        self._http.clear()

    async def bucket_exists(self, bucket_name: str) -> bool:
        return await asyncio.to_thread(self._client.bucket_exists, bucket_name)

    async def make_bucket(self, bucket_name: str) -> None:
        await asyncio.to_thread(self._client.make_bucket, bucket_name)

    async def list_objects(
        self, bucket_name: str, prefix: str | None = None, recursive: bool = False
    ) -> Any:
        def listing() -> list[Any]:
            return list(self._client.list_objects(bucket_name, prefix, recursive))

        return await asyncio.to_thread(listing)

    async def stat_object(self, bucket_name: str, object_name: str) -> Any:
        return await asyncio.to_thread(self._client.stat_object, bucket_name, object_name)

    async def get_object(self, bucket_name: str, object_name: str) -> ObjectBody:
        return await asyncio.to_thread(self._client.get_object, bucket_name, object_name)

    async def presigned_get_object(
        self, bucket_name: str, object_name: str, expires: timedelta = timedelta(days=7)
    ) -> str:
        return await asyncio.to_thread(
            self._client.presigned_get_object, bucket_name, object_name, expires
        )

    async def put_object(
        self,
        bucket_name: str,
        object_name: str,
        data: BinaryIO,
        length: int,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> Any:
        return await asyncio.to_thread(
            self._client.put_object,
            bucket_name,
            object_name,
            data,
            length,
            content_type=content_type,
            metadata=cast(Any, metadata),
        )


def build_object_client(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> AsyncResilientMinio | PlainMinioClient:
    """mcresolve's resilient storage client for ``settings`` (not started yet: ``serve`` and
    the seeding command ``await client.start()`` and ``await client.aclose()``).

    * Endpoints come from :attr:`Settings.storage_target` (``MINIO_HOST``/``MINIO_PORT`` as an
      mcresolve target), Consul from ``CONSUL_HTTP_*`` in ``environ`` (default ``os.environ``).
    * Short HTTP timeouts: connecting takes at most 1 s (never more than
      ``STOREFRONT_STORAGE_TIMEOUT``), each read at most ``STOREFRONT_STORAGE_TIMEOUT``; one
      attempt at most that long too, and one call (every attempt, on every endpoint, and the
      waits between) at most twice that, so a page never waits long for a failover.
    * Start-up does not wait for an endpoint: a storefront whose storage is not there yet
      serves 503 pages (and says so in ``/health``) instead of failing to start.
    * Presigned and external URLs name ``MINIO_EXTERNAL_HOST:MINIO_EXTERNAL_PORT``, whichever
      node serves.
    """
    if settings.storage_client == "plain":
        return PlainMinioClient(settings)
    timeout = settings.storage_timeout_s
    external = (
        ExternalEndpoint(
            _bracketed(settings.external_host),
            settings.external_port,
            secure=settings.external_secure,
        )
        if settings.external_host
        else None
    )
    return AsyncResilientMinio(
        settings.storage_target,
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        secure=settings.minio_secure,
        region=settings.region,
        consul=ConsulConfig.from_env(os.environ if environ is None else environ),
        ready_timeout=None,
        http=HttpPolicy(connect_timeout=min(timeout, 1.0), read_timeout=timeout),
        call_policy=CallPolicy(deadline=timeout * CALL_DEADLINE_FACTOR, attempt_timeout=timeout),
        external=external,
    )


def _bracketed(host: str) -> str:
    """A bare IPv6 address in brackets, so that ``host:port`` stays unambiguous."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def build_catalog_storage(settings: Settings, client: ObjectClient) -> CatalogStorage:
    """The adapter the app uses, configured from ``settings``."""
    return CatalogStorage(
        client,
        settings.bucket,
        image_mode=settings.image_mode,
        external_base_url=settings.external_base_url,
        presign_expiry=timedelta(seconds=settings.presign_expiry_s),
        # The client's own call deadline plus slack for a listing and its sidecar (two calls).
        deadline_s=settings.storage_timeout_s * OPERATION_DEADLINE_FACTOR,
    )
