"""The storefront's view of object storage: a small adapter over an async MinIO client.

:class:`CatalogStorage` is what the web app uses (``list_products``, ``open_image``, ``image_url``,
``probe``). It talks to storage only through :class:`ObjectClient`, the handful of
``minio.Minio`` methods it needs, as coroutines: exactly the shape of mcresolve's asyncio
``ResilientMinio`` facade, which replaces :class:`ThreadedMinio` (a plain ``minio.Minio`` run in
threads, one endpoint, no failover) in :func:`build_object_client`.

Storage errors are translated into three exceptions the app can render: :class:`ObjectMissing`
(404), :class:`BucketMissing` (an empty shop) and :class:`StorageUnavailable` (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, BinaryIO, Protocol, Self, cast
from urllib.parse import quote

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from .catalog import SIDECAR_KEY, Product, Sidecar, StoredObject, build_products, parse_sidecar
from .config import ImageMode, Settings
from .keys import is_servable_key

#: Bytes read from storage per chunk when streaming an image to the browser.
CHUNK_SIZE = 64 * 1024

_MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "NoSuchObject", "NoSuchVersion"})
_MISSING_BUCKET_CODES = frozenset({"NoSuchBucket"})


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
    """The methods of ``minio.Minio`` the storefront uses, as coroutines.

    ``list_objects`` may return a list, any iterable or an async iterable of
    ``minio.datatypes.Object``-like values (``object_name``, ``size``, ``last_modified``).
    """

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
            except (urllib3.exceptions.HTTPError, OSError) as error:
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
        try:
            async with asyncio.timeout(self.deadline_s):
                yield
        except TimeoutError as error:
            raise StorageUnavailable(f"{doing}: no answer within {self.deadline_s:g} s") from error
        except S3Error as error:
            if error.code in _MISSING_OBJECT_CODES:
                raise ObjectMissing(doing) from error
            if error.code in _MISSING_BUCKET_CODES:
                raise BucketMissing(self.bucket) from error
            raise StorageUnavailable(f"{doing}: {error.code}: {error.message}") from error
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as error:
            raise StorageUnavailable(f"{doing}: {error}") from error


async def _collect(listing: Any) -> list[Any]:
    """Materialise what ``list_objects`` returned (iterable or async iterable)."""
    if inspect.isawaitable(listing):
        listing = await listing
    if hasattr(listing, "__aiter__"):
        return [item async for item in listing]
    return list(cast(Iterable[Any], listing))


class ThreadedMinio:
    """A plain ``minio.Minio`` on one endpoint, its blocking calls run in worker threads.

    It is the stand-in for mcresolve's async ``ResilientMinio`` (same method names, as coroutines)
    and has none of its failover: every call goes to ``endpoint``. Its HTTP client has short
    timeouts and no urllib3 retries (``minio.Minio``'s defaults take minutes to fail, see
    DESIGN.md). Presigned URLs are signed for ``external_endpoint`` by a second, offline client
    (the region is given, so signing needs no network round trip).
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        secure: bool = False,
        region: str = "us-east-1",
        timeout_s: float = 3.0,
        external_endpoint: str | None = None,
        external_secure: bool | None = None,
        pool_size: int = 10,
    ) -> None:
        self._http = urllib3.PoolManager(
            num_pools=4,
            maxsize=pool_size,
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
            retries=False,
        )
        self._minio = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=self._http,
        )
        self._presigner = Minio(
            external_endpoint or endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure if external_secure is None else external_secure,
            region=region,
            http_client=self._http,
        )

    async def bucket_exists(self, bucket_name: str) -> bool:
        """``Minio.bucket_exists`` in a worker thread."""
        return cast(bool, await asyncio.to_thread(self._minio.bucket_exists, bucket_name))

    async def make_bucket(self, bucket_name: str) -> None:
        """``Minio.make_bucket`` in a worker thread."""
        await asyncio.to_thread(self._minio.make_bucket, bucket_name)

    async def list_objects(
        self, bucket_name: str, prefix: str | None = None, recursive: bool = False
    ) -> list[Any]:
        """``Minio.list_objects``, fully materialised in a worker thread."""

        def listing() -> list[Any]:
            return list(self._minio.list_objects(bucket_name, prefix=prefix, recursive=recursive))

        return await asyncio.to_thread(listing)

    async def stat_object(self, bucket_name: str, object_name: str) -> Any:
        """``Minio.stat_object`` in a worker thread."""
        return await asyncio.to_thread(self._minio.stat_object, bucket_name, object_name)

    async def get_object(self, bucket_name: str, object_name: str) -> ObjectBody:
        """``Minio.get_object`` in a worker thread (headers received, body not read yet)."""
        response = await asyncio.to_thread(self._minio.get_object, bucket_name, object_name)
        return cast(ObjectBody, response)

    async def presigned_get_object(
        self, bucket_name: str, object_name: str, expires: timedelta = timedelta(days=7)
    ) -> str:
        """``Minio.presigned_get_object`` signed for the external endpoint."""
        return cast(
            str,
            await asyncio.to_thread(
                self._presigner.presigned_get_object, bucket_name, object_name, expires=expires
            ),
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
        """``Minio.put_object`` in a worker thread."""
        return await asyncio.to_thread(
            self._minio.put_object,
            bucket_name,
            object_name,
            data,
            length,
            content_type=content_type,
            metadata=cast(Any, metadata),
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.clear()


def build_object_client(settings: Settings) -> ObjectClient:
    """The storage client for ``settings``.

    LEAD: replace with mcresolve's asyncio ResilientMinio once it lands, built from
    ``settings.minio_host`` as an mcresolve target (``storage-object-minio.query.consul`` switches
    to stage 3) with presigned URLs for ``settings.external_endpoint``. Only the methods of
    :class:`ObjectClient` are used.
    """
    return ThreadedMinio(
        settings.minio_endpoint,
        settings.access_key,
        settings.secret_key,
        secure=settings.minio_secure,
        region=settings.region,
        timeout_s=settings.storage_timeout_s,
        external_endpoint=settings.external_endpoint,
        external_secure=settings.external_secure,
    )


def build_catalog_storage(settings: Settings, client: ObjectClient) -> CatalogStorage:
    """The adapter the app uses, configured from ``settings``."""
    return CatalogStorage(
        client,
        settings.bucket,
        image_mode=settings.image_mode,
        external_base_url=settings.external_base_url,
        presign_expiry=timedelta(seconds=settings.presign_expiry_s),
        # One attempt's connect and read, plus slack for a failover to a second endpoint.
        deadline_s=settings.storage_timeout_s * 3,
    )
