"""How ``CatalogStorage`` translates what the storage client raises: every typed error of mcresolve
(and of its MinIO client) means "storage unavailable" (a 503 page), "missing" answers mean 404 or
an empty shop, and anything else is a bug (a 500 page).

The client here raises a given exception from every call: most of these errors need a storage
cluster in a state this machine cannot produce on demand (a write whose outcome is unknown, an
object overwritten mid-download). The real ones that can be produced are exercised against the
SeaweedFS cluster in ``test_storefront_failures.py`` and ``test_storefront_failover.py``.
"""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import pytest
from minio.error import S3Error
from storefront.config import ImageMode
from storefront.storage import (
    BucketMissing,
    CatalogStorage,
    ImageStream,
    ObjectMissing,
    StorageUnavailable,
)

from mcresolve.endpoint import Endpoint
from mcresolve.errors import (
    AttemptsExhausted,
    CallFailed,
    DeadlineExceeded,
    NoEndpointAvailable,
    PoolClosed,
    RetryBudgetExhausted,
)
from mcresolve.minio import (
    Affects,
    ObjectChangedDuringRead,
    StorageClusterDegraded,
    UploadNotRetryable,
    WriteOutcomeUnknown,
)


class RaisingClient:
    """Every storage call raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def start(self) -> object:
        return self

    async def aclose(self) -> None:
        pass

    async def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    bucket_exists = make_bucket = list_objects = stat_object = get_object = _fail
    presigned_get_object = put_object = _fail


def s3_error(code: str) -> S3Error:
    """An error answer as minio raises it (no HTTP response kept here)."""
    no_response: Any = None
    return S3Error(no_response, code, f"{code} message", "/bucket/key", "request", "host")


ENDPOINT = Endpoint("127.0.0.1", 9000)

UNAVAILABLE = [
    StorageClusterDegraded(Affects.READS, "read quorum lost", code="XMinioReadQuorum", status=503),
    StorageClusterDegraded(Affects.READS_AND_WRITES, "throttled", code="SlowDown", retry_after=120),
    NoEndpointAvailable("no endpoint"),
    CallFailed("failed"),
    AttemptsExhausted("every endpoint refused"),
    RetryBudgetExhausted("retry budget spent"),
    DeadlineExceeded("deadline passed"),
    PoolClosed("pool closed"),
    WriteOutcomeUnknown("put_object", "connection reset", endpoint=ENDPOINT),
    UploadNotRetryable("put_object", "reset", why_not_retried="stream consumed"),
    ObjectChangedDuringRead("bucket", "key", '"a"', '"b"', 10),
    s3_error("InternalError"),
    s3_error("AccessDenied"),
    ConnectionRefusedError("refused"),
    TimeoutError("timed out"),
]


def storage(error: BaseException) -> CatalogStorage:
    return CatalogStorage(
        RaisingClient(error), "bucket", image_mode=ImageMode.PRESIGNED, deadline_s=5.0
    )


@pytest.mark.parametrize("error", UNAVAILABLE, ids=lambda e: type(e).__name__)
async def test_typed_storage_errors_mean_storage_unavailable(error: BaseException) -> None:
    catalog = storage(error)
    operations = (
        catalog.list_products,
        lambda: catalog.open_image("a.png"),
        lambda: catalog.image_url("a.png"),
        catalog.probe,
    )
    for operation in operations:
        with pytest.raises(StorageUnavailable) as raised:
            await operation()
        assert raised.value.__cause__ is error
        assert type(error).__name__ in str(raised.value) or isinstance(error, S3Error)


async def test_missing_answers_are_404_or_an_empty_shop() -> None:
    with pytest.raises(ObjectMissing):
        await storage(s3_error("NoSuchKey")).open_image("a.png")
    with pytest.raises(BucketMissing):
        await storage(s3_error("NoSuchBucket")).open_image("a.png")
    listing = await storage(s3_error("NoSuchBucket")).list_products()
    assert listing.products == [] and listing.bucket_exists is False


async def test_a_bug_is_not_disguised_as_unavailable_storage() -> None:
    with pytest.raises(RuntimeError):
        await storage(RuntimeError("bug")).list_products()


class BreakingBody:
    """A body that delivers one chunk and then raises ``error`` (a download that broke and
    could not be resumed)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.data = io.BytesIO(b"first chunk")
        self.headers = {"Content-Type": "image/png", "Content-Length": "100"}
        self.released = False

    def read(self, amt: int | None = None) -> bytes:
        chunk = self.data.read(amt)
        if chunk:
            return chunk
        raise self.error

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        self.released = True


@pytest.mark.parametrize(
    "error",
    [
        ObjectChangedDuringRead("bucket", "key", '"a"', '"b"', 11),
        AttemptsExhausted("resume failed everywhere"),
        StorageClusterDegraded(Affects.READS, "read quorum lost"),
        ConnectionResetError("reset"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_body_breaking_mid_stream_is_storage_unavailable(error: BaseException) -> None:
    body = BreakingBody(error)
    chunks = []
    async with ImageStream(body, "a.png") as image:
        with pytest.raises(StorageUnavailable):
            async for chunk in image.chunks():
                chunks.append(chunk)
    assert chunks == [b"first chunk"]
    assert body.released


class HangingClient(RaisingClient):
    """Every storage call hangs (a client without any deadline of its own)."""

    async def _fail(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.Event().wait()

    bucket_exists = list_objects = get_object = _fail


async def test_an_operation_is_bounded_by_the_storefront_deadline() -> None:
    catalog = CatalogStorage(HangingClient(RuntimeError()), "bucket", deadline_s=0.2)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match=r"no answer within 0\.2 s"):
        await catalog.list_products()
    assert time.monotonic() - started < 2.0  # a time (the 0.2 s deadline), generous bound
