"""Errors raised by :class:`~mcresolve.minio.ResilientMinio` (besides minio's own answers).

* ``minio.error.S3Error`` / ``ServerError`` — an answer (``NoSuchKey``, ``AccessDenied``, other
  4xx): raised at once, as the plain ``minio.Minio`` does, never retried.
* :class:`~mcresolve.minio.classify.StorageClusterDegraded` — the cluster as a whole cannot serve
  (quorum lost, throttling, the same 5xx from every node) and waiting within the deadline did not
  help; ``.affects`` / ``.reads_affected`` / ``.writes_affected`` say what is affected.
* :class:`~mcresolve.errors.CallFailed` subclasses (``DeadlineExceeded``, ``AttemptsExhausted``,
  ``RetryBudgetExhausted``) — node failures everywhere (every node unreachable) until the deadline;
  ``.attempts`` lists each attempt.
* :class:`WriteOutcomeUnknown` / :class:`UploadNotRetryable` — a write failed after an attempt
  that may have executed it (its answer was lost), so the object may be stored or not; or it
  was not sent again because that would be unsafe. :class:`ClusterDegradedWriteOutcomeUnknown`
  is both this and :class:`StorageClusterDegraded`.

* :class:`ObjectChangedDuringRead` — a download broke mid-body and the object changed before it
  could be resumed.
* :class:`~mcresolve.minio.classify.MalformedAnswer` — only after every retry: a node answered
  something minio could not make sense of.

:func:`failure_of_call` is the one decision which of these a failed call raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from minio.error import S3Error

from mcresolve.endpoint import Endpoint
from mcresolve.errors import CallFailed, ClusterUnavailable, McResolveError
from mcresolve.minio.classify import (
    READ_METHODS,
    Affects,
    StorageClusterDegraded,
    Verdict,
)
from mcresolve.pool.planner import Fault

__all__ = [
    "Affects",
    "ClusterDegradedWriteOutcomeUnknown",
    "ObjectChangedDuringRead",
    "ResilientMinioError",
    "StorageClusterDegraded",
    "TriedAttempt",
    "UploadNotRetryable",
    "WriteOutcomeUnknown",
    "failure_of_call",
]


class ResilientMinioError(McResolveError):
    """Base of the wrapper's own errors."""


@dataclass(frozen=True, slots=True)
class TriedAttempt:
    """One failed attempt of a call, as the wrapper's classifier saw it."""

    endpoint: Endpoint
    error: BaseException
    verdict: Verdict

    def describe(self) -> str:
        """``host:port -> what happened`` (for messages)."""
        return f"{self.endpoint.host_port} -> {self.verdict.reason}"


class WriteOutcomeUnknown(ResilientMinioError):
    """A write failed after it may have been executed: an attempt reached a node and its answer
    was lost (connection reset, read timeout, a 5xx other than a 503 with one of MinIO's
    refusal codes such as ``SlowDown`` or ``XMinioWriteQuorum``), and no later attempt
    succeeded. The object may be stored — or not. Check with ``stat_object`` and compare its
    ETag with :attr:`expected_etag` (when known), or write again (a PUT is idempotent).

    :attr:`tried` lists every failed attempt (endpoint, error, verdict); :attr:`endpoint` is
    the last one that may have executed; :attr:`cause` is the failure the call ended with
    (the pool's ``AttemptsExhausted``/``DeadlineExceeded``/``ClusterUnavailable``, or the
    attempt's own error when replaying it was unsafe)."""

    def __init__(
        self,
        operation: str,
        reason: str,
        *,
        endpoint: Endpoint | None = None,
        may_have_executed: bool = True,
        why_not_retried: str = "",
        bucket_name: str | None = None,
        object_name: str | None = None,
        tried: Sequence[TriedAttempt] = (),
        expected_etag: str | None = None,
        cause: BaseException | None = None,
    ) -> None:
        self.operation = operation
        self.reason = reason
        self.endpoint = endpoint
        self.may_have_executed = may_have_executed
        self.why_not_retried = why_not_retried
        self.bucket_name = bucket_name
        self.object_name = object_name
        self.tried: tuple[TriedAttempt, ...] = tuple(tried)
        self.expected_etag = expected_etag
        self.cause = cause
        subject = f" of {bucket_name}/{object_name}" if bucket_name and object_name else ""
        where = f" on {endpoint.host_port}" if endpoint is not None else ""
        happened = "may or may not have happened" if may_have_executed else "did not happen"
        message = f"{operation}{subject}{where} failed ({reason}): the write {happened}"
        if why_not_retried:
            message += f"; not retried because {why_not_retried}"
        if self.tried:
            shown = "; ".join(t.describe() for t in self.tried[-5:])
            more = f" (last 5 of {len(self.tried)})" if len(self.tried) > 5 else ""
            message += f"; attempts: {shown}{more}"
        if may_have_executed and subject:
            compare = f" and compare its ETag with {expected_etag}" if expected_etag else ""
            message += f"; to find out, stat_object({bucket_name!r}, {object_name!r}){compare}"
        # Not super(): in ClusterDegradedWriteOutcomeUnknown the next class is
        # StorageClusterDegraded, whose attributes that class sets itself.
        Exception.__init__(self, message)


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


class ClusterDegradedWriteOutcomeUnknown(WriteOutcomeUnknown, StorageClusterDegraded):
    """A write failed with the cluster degraded *and* an attempt that may have executed it
    (MinIO with write quorum lost hangs PUTs, then answers 500): catchable as either type.
    :attr:`degraded` is the :class:`StorageClusterDegraded` it also is."""

    def __init__(self, degraded: StorageClusterDegraded, unknown: WriteOutcomeUnknown) -> None:
        self.degraded = degraded
        self.affects = degraded.affects
        self.code = degraded.code
        self.status = degraded.status
        self.retry_after = degraded.retry_after
        self.attempts = degraded.attempts
        WriteOutcomeUnknown.__init__(
            self,
            unknown.operation,
            unknown.reason,
            endpoint=unknown.endpoint,
            may_have_executed=unknown.may_have_executed,
            why_not_retried=unknown.why_not_retried,
            bucket_name=unknown.bucket_name,
            object_name=unknown.object_name,
            tried=unknown.tried,
            expected_etag=unknown.expected_etag,
            cause=unknown.cause,
        )
        self.args = (f"{self.args[0]}; {degraded}",)


def _status_of(error: BaseException | None) -> int | None:
    if isinstance(error, S3Error):
        status = getattr(error.response, "status", None)
    else:
        status = getattr(error, "status_code", None)
    return status if isinstance(status, int) else None


def _degraded(
    failure: BaseException, tried: Sequence[TriedAttempt], http_method: str
) -> StorageClusterDegraded | None:
    """The cluster condition a failed call met, if any: the pool gave up with
    ``ClusterUnavailable``, or a confirmed CLUSTER verdict came back during the call."""
    cluster = [t for t in tried if t.verdict.error_class is Fault.CLUSTER]
    confirmed = [t for t in cluster if t.verdict.confirmed]
    if not confirmed and not isinstance(failure, ClusterUnavailable):
        return None
    chosen = confirmed or cluster
    last = chosen[-1] if chosen else None
    verdict = last.verdict if last is not None else None
    if verdict is None and isinstance(failure, ClusterUnavailable):
        candidate = failure.verdict
        verdict = candidate if isinstance(candidate, Verdict) else None
    affects = verdict.affects if verdict is not None else None
    if affects is None:
        affects = Affects.READS if http_method.upper() in READ_METHODS else Affects.WRITES
    error = last.error if last is not None else None
    if error is None and isinstance(failure, CallFailed):
        error = failure.last_error
    reason = verdict.reason if verdict is not None else str(failure)
    return StorageClusterDegraded(
        affects,
        reason,
        code=error.code if isinstance(error, S3Error) else None,
        status=_status_of(error),
        retry_after=verdict.retry_after if verdict is not None else None,
        attempts=len(failure.attempts) if isinstance(failure, CallFailed) else len(tried),
    )


@dataclass(frozen=True, slots=True)
class _OutcomeUnknown:
    """What every :class:`WriteOutcomeUnknown` of one failed call carries."""

    operation: str
    reason: str
    failure: BaseException
    tried: tuple[TriedAttempt, ...]
    bucket_name: str | None
    object_name: str | None
    expected_etag: str | None

    def error(
        self, kind: type[WriteOutcomeUnknown], at: TriedAttempt | None, happened: bool, why: str
    ) -> WriteOutcomeUnknown:
        """``kind`` for the attempt ``at`` (``happened``: it may have executed; ``why``: why
        it was not sent again)."""
        return kind(
            self.operation,
            self.reason,
            endpoint=at.endpoint if at is not None else None,
            may_have_executed=happened,
            why_not_retried=why,
            bucket_name=self.bucket_name,
            object_name=self.object_name,
            tried=self.tried,
            expected_etag=self.expected_etag,
            cause=self.failure,
        )


def failure_of_call(
    failure: BaseException,
    tried: Sequence[TriedAttempt],
    *,
    operation: str,
    http_method: str,
    bucket_name: str | None = None,
    object_name: str | None = None,
    expected_etag: str | None = None,
    body_replayable: bool = True,
    outcome_matters: bool = True,
) -> BaseException:
    """What a failed call raises (pure): ``failure`` is what the pool raised (a
    :class:`~mcresolve.errors.CallFailed`, or the attempt's own error when it was an answer or
    unsafe to replay), ``tried`` every failed attempt with its verdict, in order.

    1. An answer (no verdict, or the last verdict CLIENT): ``failure`` itself, as minio raises it.
    2. A write (not GET/HEAD; ``outcome_matters``: not an intermediate step such as one part of a
       multipart upload) with an attempt that may have executed: :class:`WriteOutcomeUnknown`
       (:class:`UploadNotRetryable` when its data cannot be sent again;
       :class:`ClusterDegradedWriteOutcomeUnknown` when rule 3 holds as well).
    3. The pool gave up with ``ClusterUnavailable``, or a confirmed CLUSTER verdict came back:
       :class:`StorageClusterDegraded` — whatever the number of endpoints and whichever limit
       (deadline, attempts, the wait) ended the call.
    4. A storage failure that was not retried because replaying it was unsafe:
       :class:`WriteOutcomeUnknown` (it did not happen) / :class:`UploadNotRetryable`.
    5. Otherwise ``failure`` (``AttemptsExhausted``, ``DeadlineExceeded``, ...).
    """
    last = tried[-1] if tried else None
    if not isinstance(failure, CallFailed) and (
        last is None or last.error is not failure or last.verdict.error_class is Fault.CLIENT
    ):
        return failure
    write = http_method.upper() not in READ_METHODS
    executed = [t for t in tried if t.verdict.may_have_executed]
    degraded = _degraded(failure, tried, http_method)
    reason = last.verdict.reason if last is not None else str(failure)

    unknown = _OutcomeUnknown(
        operation, reason, failure, tuple(tried), bucket_name, object_name, expected_etag
    ).error

    not_idempotent = f"{operation} is not idempotent"
    if write and outcome_matters and executed:
        if not body_replayable:
            return unknown(UploadNotRetryable, executed[-1], True, _NOT_REPLAYABLE)
        why = "" if isinstance(failure, CallFailed) else not_idempotent
        error = unknown(WriteOutcomeUnknown, executed[-1], True, why)
        if degraded is not None:
            return ClusterDegradedWriteOutcomeUnknown(degraded, error)
        return error
    if degraded is not None:
        return degraded
    if isinstance(failure, CallFailed):
        return failure
    # Not retried because replaying was unsafe, and nothing may have executed (or the result
    # does not matter): say why it was not sent again.
    if not body_replayable:
        return unknown(UploadNotRetryable, last, False, _NOT_REPLAYABLE)
    return unknown(WriteOutcomeUnknown, last, False, not_idempotent)


_NOT_REPLAYABLE = (
    "its data came from a stream that is not seekable and was already consumed (pass bytes, "
    "io.BytesIO or a seekable file to make it retryable)"
)
