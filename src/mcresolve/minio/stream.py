"""A ``get_object`` response whose body resumes on another node when it breaks mid-way.

:class:`ResumableResponse` is a ``urllib3.BaseHTTPResponse`` (what ``minio.Minio.get_object``
returns) wrapping the real response. When reading the body fails with a transport error (the
node died, the connection was reset, a read timed out), it asks its ``reopen`` callback for the
rest of the object — a Range request from the byte reached, sent through the pool to a healthy
endpoint with ``If-Match: <ETag>`` — checks that the ETag did not change
(:class:`~mcresolve.minio.errors.ObjectChangedDuringRead` otherwise) and carries on, so the
caller sees one uninterrupted body.

Responses with a ``Content-Encoding`` (the body is decoded, so byte offsets of what the caller
reads are not offsets in the object) and requests with the caller's own ``Range`` header are not
resumed: their failures propagate as they would from ``minio.Minio``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from urllib3.response import BaseHTTPResponse

from mcresolve.endpoint import Endpoint
from mcresolve.minio.classify import (
    MalformedAnswer,
    Transport,
    classify_exception,
    transport_of,
)
from mcresolve.minio.errors import ObjectChangedDuringRead
from mcresolve.pool.planner import Fault

__all__ = ["Reopen", "ReportFailure", "ResumableResponse"]

Reopen = Callable[[int, int, str | None], tuple[BaseHTTPResponse, Endpoint]]
"""``reopen(offset, length, etag)``: a new response for ``length`` bytes (0: to the end) from
``offset`` of the object, and the endpoint that serves it."""
ReportFailure = Callable[[Endpoint, BaseException], None]
"""Tell the pool that ``endpoint`` failed mid-body with this exception."""

_CHUNK = 64 * 1024
#: ``read()`` of a body of known length asks for the rest in reads of at most this size: a
#: small body in one read (as ``urllib3`` does), a large one in steps so that a break loses at
#: most one step's bytes (the resume starts from the last byte delivered by a completed read).
_READ_ALL_STEP = 1024 * 1024


def _content_length(response: BaseHTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _content_range(response: BaseHTTPResponse) -> tuple[int, int | None] | None:
    """``(first byte, object size or None)`` of a ``Content-Range: bytes a-b/size`` header."""
    value = response.headers.get("Content-Range")
    if not value:
        return None
    unit, _, spec = value.strip().partition(" ")
    span, _, size = spec.partition("/")
    start = span.partition("-")[0]
    if unit.lower() != "bytes" or not start.isascii() or not start.isdigit():
        return None
    total = int(size) if size.isascii() and size.isdigit() else None
    return int(start), total


def _etag(response: BaseHTTPResponse) -> str | None:
    value = response.headers.get("ETag")
    return value.strip() if value else None


class ResumableResponse(BaseHTTPResponse):
    """The body of one object, resumed across endpoints (see the module docstring).

    ``offset`` is where the first response starts in the object (the ``offset`` given to
    ``get_object``). :attr:`resumes` counts the Range requests made, :attr:`endpoints` the
    endpoints that served parts of the body, in order.
    """

    def __init__(
        self,
        first: BaseHTTPResponse,
        endpoint: Endpoint,
        *,
        bucket: str,
        object_name: str,
        offset: int,
        reopen: Reopen,
        report_failure: ReportFailure,
        resumable: bool = True,
        max_resumes: int = 10,
    ) -> None:
        super().__init__(
            headers=first.headers,
            status=first.status,
            version=first.version,
            version_string=first.version_string,
            reason=first.reason,
            decode_content=first.decode_content,
            request_url=first.url,
            retries=first.retries,
        )
        self._inner = first
        self._endpoint = endpoint
        self._bucket = bucket
        self._object_name = object_name
        self._offset = offset
        self._reopen = reopen
        self._report_failure = report_failure
        self._total = _content_length(first)
        self._etag_value = _etag(first)
        first_range = _content_range(first)
        # The object's size as the first answer states it (to check resumed answers against).
        self._object_size = (
            first_range[1]
            if first_range is not None
            else (self._total if first.status == 200 else None)
        )
        encoding = first.headers.get("Content-Encoding", "identity").strip().lower()
        self._identity = encoding in ("", "identity")
        self._resumable = resumable and self._identity
        self._max_resumes = max_resumes
        self._position = 0
        self._body: bytes | None = None
        self._closed = False
        self.resumes = 0
        self.endpoints: list[Endpoint] = [endpoint]
        self.length_remaining = self._total

    # --- state ------------------------------------------------------------------------------

    @property
    def position(self) -> int:
        """Bytes of the body delivered to the caller so far."""
        return self._position

    @property
    def inner(self) -> BaseHTTPResponse:
        """The response currently being read."""
        return self._inner

    @property
    def data(self) -> bytes:
        """The whole (remaining) body, read and cached."""
        if self._body is None:
            self._body = self.read()
        return self._body

    @property
    def url(self) -> str | None:
        """The URL of the response currently read."""
        return self._inner.url

    @url.setter
    def url(self, url: str | None) -> None:
        self._inner.url = url

    @property
    def connection(self) -> Any:
        """The connection of the response currently read."""
        return self._inner.connection

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called or the current response is closed."""
        return self._closed or self._inner.closed

    def readable(self) -> bool:
        """Always True (a body)."""
        return True

    # --- reading ----------------------------------------------------------------------------

    def read(
        self,
        amt: int | None = None,
        decode_content: bool | None = None,
        cache_content: bool = False,
    ) -> bytes:
        """Up to ``amt`` bytes (``None``: the rest of the body), resuming on failure."""
        if amt is None:
            return self._read_rest(decode_content)
        if amt == 0:
            return b""
        while True:
            try:
                data = self._inner.read(amt, decode_content=decode_content)
            except Exception as exc:
                if not self._may_resume(exc):
                    raise
                self._resume(exc)
                continue
            if not data and self._total is not None and self._position < self._total:
                # A body that ended early without urllib3 noticing (no length enforcement).
                short = ConnectionResetError(
                    f"body ended after {self._position} of {self._total} byte(s)"
                )
                if not self._may_resume(short):
                    raise short
                self._resume(short)
                continue
            self._position += len(data)
            if self._total is not None:
                self.length_remaining = self._total - self._position
            return data

    def _read_rest(self, decode_content: bool | None) -> bytes:
        """The rest of the body. With a known length and no content coding: exactly the bytes
        missing, in one read for a body up to ``_READ_ALL_STEP`` (no trailing read to find the
        end: ``http.client`` closes, and urllib3 releases, the connection at the last byte),
        each read resuming on a break as :meth:`read` does. Otherwise chunks until the end."""
        if self._total is None or not self._identity:
            return b"".join(iter(lambda: self.read(_CHUNK, decode_content), b""))
        parts: list[bytes] = []
        while (remaining := self._total - self._position) > 0:
            # Never empty: a body ending early resumes (or raises) inside read().
            parts.append(self.read(min(remaining, _READ_ALL_STEP), decode_content))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def read1(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        """Like :meth:`read` (one chunk at most)."""
        return self.read(_CHUNK if amt is None else amt, decode_content)

    def stream(
        self, amt: int | None = 2**16, decode_content: bool | None = None
    ) -> Iterator[bytes]:
        """Yield the body in chunks of up to ``amt`` bytes."""
        size = amt or _CHUNK
        while True:
            chunk = self.read(size, decode_content)
            if not chunk:
                return
            yield chunk

    def read_chunked(
        self, amt: int | None = None, decode_content: bool | None = None
    ) -> Iterator[bytes]:
        """Same as :meth:`stream` (chunk boundaries are not preserved across resumes)."""
        return self.stream(amt, decode_content)

    def __iter__(self) -> Iterator[bytes]:
        return self.stream()

    # --- resuming ---------------------------------------------------------------------------

    def _may_resume(self, exc: BaseException) -> bool:
        if not self._resumable or self._closed or self.resumes >= self._max_resumes:
            return False
        transport = transport_of(exc)
        if transport is None:
            return False
        return transport in (
            Transport.BROKEN_RESPONSE,
            Transport.RESET,
            Transport.READ_TIMEOUT,
            Transport.REFUSED,
        )

    def _resume(self, exc: BaseException) -> None:
        verdict = classify_exception(exc, method="GET")
        if verdict.error_class is Fault.NODE:
            self._report_failure(self._endpoint, exc)
        with contextlib.suppress(Exception):
            self._inner.close()
        with contextlib.suppress(Exception):
            self._inner.release_conn()
        self.resumes += 1
        remaining = 0 if self._total is None else self._total - self._position
        if self._total is not None and remaining <= 0:
            raise exc
        response, endpoint = self._reopen(
            self._offset + self._position, remaining, self._etag_value
        )
        new_etag = _etag(response)
        if self._etag_value is not None and new_etag != self._etag_value:
            with contextlib.suppress(Exception):
                response.close()
                response.release_conn()
            raise ObjectChangedDuringRead(
                self._bucket, self._object_name, self._etag_value, new_etag, self._position
            ) from exc
        mismatch = self._mismatch(response, self._offset + self._position)
        if mismatch:
            with contextlib.suppress(Exception):
                response.close()
                response.release_conn()
            # The first answer's framing was wrong (its head cut inside Content-Length), or the
            # node ignored the Range: appending would deliver bytes that are not the object's.
            raise MalformedAnswer(endpoint.host_port, ValueError(mismatch)) from exc
        self._inner = response
        self._endpoint = endpoint
        self.endpoints.append(endpoint)

    def _mismatch(self, response: BaseHTTPResponse, start: int) -> str:
        """Why a resumed answer does not continue the body ("" when it does)."""
        found = _content_range(response)
        if found is None:
            if response.status == 200 and start == 0:
                return ""
            return f"answer {response.status} to a Range request from byte {start} has no range"
        got, size = found
        if got != start:
            return f"asked for bytes from {start}, got a range from {got}"
        if size is not None and self._object_size is not None and size != self._object_size:
            return (
                f"the object has {size} byte(s) by the resumed answer, {self._object_size} by the "
                "first one"
            )
        return ""

    # --- connection handling ----------------------------------------------------------------

    def release_conn(self) -> None:
        """Release the current connection to its pool."""
        self._inner.release_conn()

    def drain_conn(self) -> None:
        """Read and discard the rest of the current response."""
        self._inner.drain_conn()

    def shutdown(self) -> None:
        """Shut the current connection down (urllib3 >= 2.3)."""
        shutdown = getattr(self._inner, "shutdown", None)
        if shutdown is not None:
            shutdown()

    def close(self) -> None:
        """Close the current response; no further resume."""
        self._closed = True
        self._inner.close()

    def getheaders(self) -> Any:
        """The first response's headers."""
        return self.headers

    def getheader(self, name: str, default: str | None = None) -> str | None:
        """One header of the first response."""
        return self.headers.get(name, default)

    def info(self) -> Any:
        """The first response's headers."""
        return self.headers

    def geturl(self) -> str | None:
        """The URL of the response currently read."""
        return self.url
