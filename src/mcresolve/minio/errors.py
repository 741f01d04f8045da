"""Errors raised by :class:`~mcresolve.minio.ResilientMinio` (besides minio's own answers).

* ``minio.error.S3Error`` / ``ServerError`` — an answer (``NoSuchKey``, ``AccessDenied``, other
  4xx): raised at once, as the plain ``minio.Minio`` does, never retried.
* :class:`~mcresolve.minio_errors.StorageClusterDegraded` — the cluster as a whole cannot serve
  (quorum lost, throttling, the same 5xx from every node) and waiting within the deadline did not
  help; ``.affects`` / ``.reads_affected`` / ``.writes_affected`` say what is affected.
* :class:`~mcresolve.errors.CallFailed` subclasses (``DeadlineExceeded``, ``AttemptsExhausted``,
  ``RetryBudgetExhausted``) — node failures everywhere (every node unreachable) until the deadline;
  ``.attempts`` lists each attempt.
* :class:`WriteOutcomeUnknown` / :class:`UploadNotRetryable` — a write failed in a way that may or
  may not have executed it, and it was not sent again because that would be unsafe.
* :class:`ObjectChangedDuringRead` — a download broke mid-body and the object changed before it
  could be resumed.
"""

from __future__ import annotations

from mcresolve.endpoint import Endpoint
from mcresolve.errors import McResolveError
from mcresolve.minio_errors import Affects, StorageClusterDegraded

__all__ = [
    "Affects",
    "ObjectChangedDuringRead",
    "ResilientMinioError",
    "StorageClusterDegraded",
    "UploadNotRetryable",
    "WriteOutcomeUnknown",
]


class ResilientMinioError(McResolveError):
    """Base of the wrapper's own errors."""


class WriteOutcomeUnknown(ResilientMinioError):
    """A write failed after it may have been executed (connection reset, read timeout) and is not
    idempotent, so it was not sent again: the caller must check (``stat_object``) or decide."""

    def __init__(
        self,
        operation: str,
        reason: str,
        *,
        endpoint: Endpoint | None = None,
        may_have_executed: bool = True,
        why_not_retried: str = "",
    ) -> None:
        self.operation = operation
        self.reason = reason
        self.endpoint = endpoint
        self.may_have_executed = may_have_executed
        self.why_not_retried = why_not_retried
        where = f" on {endpoint.host_port}" if endpoint is not None else ""
        happened = "may or may not have happened" if may_have_executed else "did not happen"
        message = f"{operation}{where} failed ({reason}): the write {happened}"
        if why_not_retried:
            message += f"; not retried because {why_not_retried}"
        super().__init__(message)


class UploadNotRetryable(WriteOutcomeUnknown):
    """An upload failed and its data cannot be sent again: it came from a stream that is not
    seekable and was already consumed. Pass ``bytes``/``io.BytesIO`` or a seekable file."""


class ObjectChangedDuringRead(ResilientMinioError):
    """A ``get_object`` body broke mid-way and, when resuming with a Range request, the object's
    ETag was no longer the one the download started with (it was overwritten meanwhile). The bytes
    already read belong to the old version; read the object again from the start."""

    def __init__(
        self, bucket: str, object_name: str, etag: str | None, new_etag: str | None, position: int
    ) -> None:
        self.bucket = bucket
        self.object_name = object_name
        self.etag = etag
        self.new_etag = new_etag
        self.position = position
        super().__init__(
            f"{bucket}/{object_name} changed during the download (ETag {etag} -> {new_etag}) "
            f"after {position} byte(s): cannot resume, read it again from the start"
        )
