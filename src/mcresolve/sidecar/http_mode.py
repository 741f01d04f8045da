"""The sidecar's ``http`` mode: an HTTP/1.1 forwarding proxy in front of one endpoint pool.

Each request a client sends to the local port is carried to an endpoint the pool picks, and the
answer comes back on the client's connection. Unlike the ``tcp`` mode, which can only retry a
connection that never got a byte back, this mode sees requests one at a time, so it can retry
one on another endpoint after a node-local failure, the way the library's own clients do:

* the request and response are relayed byte for byte (request line, header fields in their
  order and case, ``Host`` included, bodies with their own framing), so a request signed with
  AWS Signature V4 arrives valid; only hop-by-hop fields are dropped (RFC 9110 §7.6.1);
* both sides keep their connections alive: idle upstream connections are reused per endpoint;
* bodies stream in both directions with backpressure; a request body is held in memory only up
  to :attr:`HttpProxyPolicy.replay_buffer` so that it can be sent again;
* every request goes through :meth:`EndpointPool.call
  <mcresolve.pool.aio.AsyncCalls.call>` (deadline, per-attempt timeout, retry budget,
  optional hedging), and each failed attempt is judged by the S3/MinIO classifier of
  :mod:`mcresolve.minio.classify` through the same call classifier
  :class:`~mcresolve.minio.ResilientMinio` uses: a replayable request is sent again on another
  endpoint after a node-local failure; a cluster-wide answer (confirmed quorum loss,
  throttling) and any other answer go to the client as the server gave them;
* once a response byte has been written to the client nothing is retried.

The rules and their precedents are on :class:`HttpProxyPolicy` and in ``docs/sidecar.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from minio.error import S3Error, ServerError

from mcresolve.arguments import check_instance, check_int_range, check_seconds
from mcresolve.endpoint import Endpoint, Key
from mcresolve.errors import CallFailed, McResolveError, NoEndpointAvailable
from mcresolve.http.failover import HttpFailoverPolicy, is_idempotent
from mcresolve.minio import TriedAttempt, call_classifier
from mcresolve.minio.classify import MalformedAnswer, Verdict
from mcresolve.pool import EndpointPool
from mcresolve.pool.planner import AttemptContext, Fault, VerdictLike
from mcresolve.sidecar.admission import reject_over_limit
from mcresolve.sidecar.listener import ListenerStats

__all__ = ["ENDPOINT_HEADER", "HttpListener", "HttpProxyPolicy", "ProxyRequestError"]

_log = logging.getLogger(__name__)

ENDPOINT_HEADER: Final = "X-Mcresolve-Endpoint"
"""Response field naming the endpoint (``address:port``) that answered. Sent when the request
carries a field of the same name (any value) or :attr:`HttpProxyPolicy.report_endpoint` is on.
The request field is forwarded as it is: a client may have signed it."""

_CHUNK: Final = 64 * 1024
_HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"upgrade",
    }
)
"""RFC 9110 §7.6.1 (and the obsolete ``Proxy-Connection``): fields for this connection only.
``Transfer-Encoding`` and ``Trailer`` are hop-by-hop too, but the proxy keeps the body's
framing as it is on both hops, so they stay true and are relayed."""
_TOKEN: Final = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FIELD_LINE: Final = (
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*"  # name (a token), optional whitespace
    rb"((?:[^\x00-\x20\x7f][^\x00-\x08\x0a-\x1f\x7f]*)?)\r\n"  # value: no CTL, starts visible
)
"""One field line. Unambiguous (the value cannot start with whitespace, nothing after it
matches ``\r``), so a failing line costs linear time: no catastrophic backtracking."""
_FIELD: Final = re.compile(_FIELD_LINE)
_BLOCK: Final = re.compile(
    rb"(?:" + _FIELD_LINE.replace(b"(", b"(?:").replace(b"(?:?:", b"(?:") + rb")*"
)
_BAD_VALUE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_CODE: Final = re.compile(rb"<Code>([^<]{1,128})</Code>")
_ANY_BODY_FAILOVER: Final = HttpFailoverPolicy()


@dataclass(frozen=True, slots=True)
class HttpProxyPolicy:
    """Limits and retry shape of the http mode (defaults cite their precedent)."""

    replay_buffer: int = 8 * 1024 * 1024
    """Largest request body held in memory so that the request can be sent again (bytes). A
    larger body streams to one endpoint once and is not retried after its first byte left.
    Envoy's retries likewise need the body buffered (``per_request_buffer_limit_bytes``);
    8 MiB holds a 5 MiB part, S3's minimum multipart part size, and minio-py's single PUTs up
    to its 5 MiB part size, so the uploads of the common S3 SDKs stay retryable."""
    error_body_limit: int = 64 * 1024
    """Largest 5xx body read to find its S3 error code (bytes). MinIO's error bodies are
    well under 1 KiB; a 5xx with a larger or unframed body is passed on as it is, unretried."""
    max_header_bytes: int = 60 * 1024
    """Largest request head (request line and fields); a larger one gets ``431``. Envoy's
    ``max_request_headers_kb`` default is 60 KiB."""
    header_timeout: float = 10.0
    """Time a client has to send a whole request head once it started one, and to start one
    after connecting (slowloris): then ``408`` and the connection is closed. HAProxy's
    ``timeout http-request`` of 10 s in its documentation's examples."""
    idle_timeout: float = 75.0
    """Time a kept-alive client connection may stay idle between requests (nginx
    ``keepalive_timeout`` 75 s)."""
    body_timeout: float = 60.0
    """Longest silence while a client sends a request body, and while a client does not
    accept response bytes: then the exchange is cut. nginx ``client_body_timeout`` and
    ``send_timeout`` (60 s)."""
    upstream_idle_per_endpoint: int = 32
    """Idle upstream connections kept per endpoint for reuse (nginx's ``keepalive 32`` upstream
    example)."""
    report_endpoint: bool = False
    """Add :data:`ENDPOINT_HEADER` to every response, not only when the request asks."""
    max_connections: int = 1024
    """Client connections served at once; one more is reset at once and counted as rejected
    (as the tcp mode; HAProxy's ``maxconn``, a common ``ulimit -n`` of 1024)."""

    def __post_init__(self) -> None:
        check_int_range("HttpProxyPolicy.replay_buffer", self.replay_buffer, 0)
        check_int_range("HttpProxyPolicy.error_body_limit", self.error_body_limit, 0)
        check_int_range("HttpProxyPolicy.max_header_bytes", self.max_header_bytes, 1024)
        check_seconds("HttpProxyPolicy.header_timeout", self.header_timeout, inf=True)
        check_seconds("HttpProxyPolicy.idle_timeout", self.idle_timeout, inf=True)
        check_seconds("HttpProxyPolicy.body_timeout", self.body_timeout, inf=True)
        check_int_range(
            "HttpProxyPolicy.upstream_idle_per_endpoint", self.upstream_idle_per_endpoint, 0
        )
        check_instance("HttpProxyPolicy.report_endpoint", self.report_endpoint, (bool,), "a bool")
        check_int_range("HttpProxyPolicy.max_connections", self.max_connections, 1)


class ProxyRequestError(McResolveError):
    """A client's request the proxy cannot relay (answered with :attr:`status`)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class _ClientFailed(McResolveError):
    """The client stalled or went away while the proxy read its request body: not the
    endpoint's fault (the classifier calls it CLIENT and the call stops at once)."""


# --- parsing ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Head:
    """A parsed request or response head; ``fields`` keep their bytes, order and case."""

    first: bytes
    fields: list[tuple[bytes, bytes]]
    version: bytes
    content_length: int | None
    chunked: bool
    close: bool

    def get(self, name: bytes) -> bytes | None:
        for key, value in self.fields:
            if key.lower() == name:
                return value
        return None


def _parse_fields(block: bytes) -> tuple[list[tuple[bytes, bytes]], int | None, bool, bool]:
    """The fields of a head's field block (each line ending in CRLF), checked against RFC 9110
    §5 (a token name, no control character in the value; obs-fold is rejected as malformed)."""
    if not _BLOCK.fullmatch(block):
        raise ProxyRequestError(400, "malformed header field")
    fields = [(name, value.rstrip(b" \t")) for name, value in _FIELD.findall(block)]
    length: int | None = None
    chunked = False
    close = False
    for name, value in fields:
        lowered = name.lower()
        if lowered == b"content-length":
            if not value.isdigit() or len(value) > 18:
                raise ProxyRequestError(400, "invalid Content-Length")
            if length is not None and length != int(value):
                raise ProxyRequestError(400, "conflicting Content-Length fields")
            length = int(value)
        elif lowered == b"transfer-encoding":
            codings = [c.strip().lower() for c in value.split(b",")]
            if codings[-1] != b"chunked" or chunked:
                raise ProxyRequestError(501, "unsupported Transfer-Encoding")
            chunked = True
        elif lowered == b"connection":
            close = close or b"close" in [t.strip().lower() for t in value.split(b",")]
    if chunked and length is not None:
        raise ProxyRequestError(400, "both Content-Length and Transfer-Encoding")
    return fields, length, chunked, close


def _split_head(raw: bytes) -> tuple[bytes, bytes]:
    """(first line, field block) of a head ending in CRLF CRLF."""
    end = raw.find(b"\r\n")
    return raw[:end], raw[end + 2 : -2]


def _parse_request(raw: bytes) -> tuple[bytes, bytes, _Head]:
    raw = raw.lstrip(b"\r\n")  # RFC 9112 §2.2: empty lines before a request are ignored
    if not raw.endswith(b"\r\n\r\n"):
        raise ProxyRequestError(400, "empty request")
    first, block = _split_head(raw)
    parts = first.split(b" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[1]:
        raise ProxyRequestError(400, "malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise ProxyRequestError(505, "HTTP version not supported")
    if _BAD_VALUE.search(target) or b" " in target or b"\t" in target:
        raise ProxyRequestError(400, "malformed request target")
    fields, length, chunked, close = _parse_fields(block)
    head = _Head(first, fields, version, length, chunked, close or version == b"HTTP/1.0")
    if version == b"HTTP/1.1" and head.get(b"host") is None:
        raise ProxyRequestError(400, "no Host field")
    if method == b"CONNECT":
        raise ProxyRequestError(405, "CONNECT is not relayed")
    if version == b"HTTP/1.0" and head.get(b"connection") is not None:
        tokens = [t.strip().lower() for t in (head.get(b"connection") or b"").split(b",")]
        head.close = b"keep-alive" not in tokens
    return method, target, head


def _parse_response(raw: bytes) -> tuple[int, _Head]:
    first, block = _split_head(raw)
    parts = first.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"malformed status line {first[:80]!r}")
    status = int(parts[1])
    if not 100 <= status <= 999:
        raise ValueError(f"status {status}")
    try:
        fields, length, chunked, close = _parse_fields(block)
    except ProxyRequestError as error:
        raise ValueError(error.reason) from None
    return status, _Head(first, fields, parts[0], length, chunked, close)


def _forwarded_fields(head: _Head) -> list[tuple[bytes, bytes]]:
    """``head``'s fields without the hop-by-hop ones (those named in ``Connection`` too)."""
    named = set(_HOP_BY_HOP)
    for key, value in head.fields:
        if key.lower() == b"connection":
            named.update(t.strip().lower() for t in value.split(b","))
    named.discard(b"transfer-encoding")
    named.discard(b"content-length")
    return [(k, v) for k, v in head.fields if k.lower() not in named]


def _render(first: bytes, fields: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join([first, b"\r\n", *(k + b": " + v + b"\r\n" for k, v in fields), b"\r\n"])


# --- bodies ---------------------------------------------------------------------------------


async def _read_chunked(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """A chunked body's bytes exactly as framed on the wire (re-sent unchanged)."""
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip()
        if (
            not size_text
            or len(size_text) > 16
            or not all(c in b"0123456789abcdefABCDEF" for c in size_text)
        ):
            raise ValueError("malformed chunk size")
        size = int(size_text, 16)
        yield line
        if size == 0:
            while True:
                trailer = await reader.readuntil(b"\r\n")
                yield trailer
                if trailer == b"\r\n":
                    return
        async for data in _read_length(reader, size):
            yield data
        end = await reader.readexactly(2)
        if end != b"\r\n":
            raise ValueError("malformed chunk end")
        yield end


async def _read_length(reader: asyncio.StreamReader, length: int) -> AsyncIterator[bytes]:
    left = length
    while left:
        data = await reader.read(min(left, _CHUNK))
        if not data:
            raise asyncio.IncompleteReadError(b"", left)
        left -= len(data)
        yield data


async def _read_to_eof(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while data := await reader.read(_CHUNK):
        yield data


def _request_body(reader: asyncio.StreamReader, head: _Head) -> AsyncIterator[bytes] | None:
    if head.chunked:
        return _read_chunked(reader)
    if head.content_length:
        return _read_length(reader, head.content_length)
    return None


def _response_body(
    reader: asyncio.StreamReader, method: bytes, status: int, head: _Head
) -> AsyncIterator[bytes] | None:
    """The response body's frames, or None for a response without one (RFC 9112 §6.3)."""
    if method == b"HEAD" or status in (204, 304) or 100 <= status < 200:
        return None
    if head.chunked:
        return _read_chunked(reader)
    if head.content_length is not None:
        return _read_length(reader, head.content_length) if head.content_length else None
    return _read_to_eof(reader)


async def _with_timeout(gen: AsyncIterator[bytes], seconds: float) -> AsyncIterator[bytes]:
    """``gen``'s items, each awaited at most ``seconds`` (TimeoutError otherwise)."""
    limit = None if math.isinf(seconds) else seconds
    while True:
        try:
            async with asyncio.timeout(limit):
                item = await anext(gen)
        except StopAsyncIteration:
            return
        yield item


# --- the upstream side --------------------------------------------------------------------


class _Upstream:
    """One connection to an endpoint."""

    __slots__ = ("key", "reader", "reused", "writer")

    def __init__(
        self, key: Key, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.key = key
        self.reader = reader
        self.writer = writer
        self.reused = False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _Response:
    """An answer from one endpoint: its head read, its body still on the connection (or read
    into :attr:`buffered` when it had to be classified)."""

    __slots__ = ("buffered", "endpoint", "head", "raw_head", "status", "upstream")

    def __init__(
        self,
        endpoint: Endpoint,
        upstream: _Upstream | None,
        status: int,
        head: _Head,
        buffered: bytes | None,
    ) -> None:
        self.endpoint = endpoint
        self.upstream = upstream
        self.status = status
        self.head = head
        self.buffered = buffered

    @property
    def headers(self) -> _HeadGetter:
        """What the minio classifier reads (``response.headers.get("Retry-After")``)."""
        return _HeadGetter(self.head)


class _S3Answer(S3Error, McResolveError):
    """A 5xx answer carrying an S3 error code (classified by the minio classifier)."""

    def __init__(self, answer: _Response, code: str) -> None:
        object.__setattr__(self, "answer", answer)
        super().__init__(answer, code, None, None, None, None)  # type: ignore[arg-type]


class _StatusAnswer(ServerError, McResolveError):
    """A 5xx answer without an S3 error code (a HEAD's, a gateway's)."""

    def __init__(self, answer: _Response) -> None:
        self.answer = answer
        super().__init__(f"HTTP {answer.status}", answer.status)


def _answer_of(exc: BaseException | None) -> _Response | None:
    answer = getattr(exc, "answer", None)
    return answer if isinstance(answer, _Response) else None


class _HeadGetter:
    """``headers.get(name)`` over a :class:`_Head` (what the classifier reads)."""

    __slots__ = ("_head",)

    def __init__(self, head: _Head) -> None:
        self._head = head

    def get(self, name: str) -> str | None:
        return _header_text(self._head, name)


def _header_text(head: _Head, name: str) -> str | None:
    value = head.get(name.lower().encode())
    return None if value is None else value.decode("latin-1")


# --- the listener -------------------------------------------------------------------------


class HttpListener:
    """An HTTP/1.1 proxy on ``listen`` (host, port; port 0 picks one) in front of ``pool``
    (see the module docstring). Implements :class:`~mcresolve.sidecar.listener.Listener`."""

    def __init__(
        self,
        listen: tuple[str, int],
        pool: EndpointPool,
        *,
        policy: HttpProxyPolicy | None = None,
    ) -> None:
        check_instance("policy", policy, (HttpProxyPolicy, type(None)), "an HttpProxyPolicy")
        self._listen = listen
        self._pool = pool
        self.policy = policy or HttpProxyPolicy()
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()
        self._idle: dict[Key, list[_Upstream]] = {}
        self._draining = False
        self._closed = False
        self._active = 0
        self._accepted = 0
        self._rejected = 0
        self._requests = 0
        self._retried = 0
        self._failed = 0
        self._bytes_in = 0
        self._bytes_out = 0
        self._buffered = 0
        self.peak_buffered = 0
        """Most request/error body bytes held in memory at once since start (bodies that
        stream are never held beyond one read of 64 KiB, which is not counted)."""
        self.upstream_connects = 0
        """Upstream connections opened (reuse keeps this below the number of requests)."""

    # --- Listener ---------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return "http"

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("HttpListener.address is known after start()")
        return self._address

    @property
    def pool(self) -> EndpointPool:
        """The pool requests go to."""
        return self._pool

    async def start(self) -> None:
        if self._server is not None:
            return
        host, port = self._listen
        self._server = await asyncio.start_server(
            self._accept, host, port, limit=self.policy.max_header_bytes
        )
        sockname = self._server.sockets[0].getsockname()
        self._address = (sockname[0], sockname[1])

    async def drain(self, grace: float) -> None:
        self._draining = True
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers - self._busy):
            task.cancel()
        if self._busy:
            await asyncio.wait(set(self._busy), timeout=grace)
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        self._draining = True
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        for idle in self._idle.values():
            for upstream in idle:
                upstream.close()
        self._idle.clear()

    def stats(self) -> ListenerStats:
        return ListenerStats(
            active_connections=self._active,
            accepted_total=self._accepted,
            requests_total=self._requests,
            retried_total=self._retried,
            failed_total=self._failed,
            bytes_in_total=self._bytes_in,
            bytes_out_total=self._bytes_out,
            rejected_total=self._rejected,
        )

    async def __aenter__(self) -> HttpListener:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- client connections --------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._draining:
            writer.close()
            return
        self._accepted += 1
        if self._active >= self.policy.max_connections:
            self._rejected += 1
            reject_over_limit(writer, self._address, self.policy.max_connections)
            return
        self._handlers.add(task)
        self._active += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await self._serve(reader, writer, task)
        except (asyncio.CancelledError, Exception) as exc:  # one client never affects others
            if not isinstance(exc, asyncio.CancelledError | ConnectionError):
                _log.debug("client connection ended: %r", exc)
        finally:
            self._active -= 1
            self._handlers.discard(task)
            self._busy.discard(task)
            writer.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, task: asyncio.Task[None]
    ) -> None:
        policy = self.policy
        first = True
        while not self._draining:
            lead = b""
            try:
                # one timer: the idle limit until a request starts, then the head's limit
                timer = asyncio.timeout(_finite(policy.header_timeout))
                async with timer:
                    if not first:
                        timer.reschedule(_deadline(policy.idle_timeout))
                        lead = await reader.read(1)
                        if not lead:
                            return
                        timer.reschedule(_deadline(policy.header_timeout))
                    raw = lead + await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                await self._refuse(writer, ProxyRequestError(431, "request header too large"))
                return
            except TimeoutError:
                if first or lead:
                    await self._refuse(writer, ProxyRequestError(408, "request head too slow"))
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            first = False
            self._bytes_in += len(raw)
            try:
                method, _target, head = _parse_request(raw)
            except ProxyRequestError as error:
                await self._refuse(writer, error)
                return
            self._busy.add(task)
            try:
                keep = await self._exchange(reader, writer, method, head)
            finally:
                self._busy.discard(task)
            if not keep or head.close:
                return

    async def _refuse(self, writer: asyncio.StreamWriter, error: ProxyRequestError) -> None:
        body = f"{error.reason}\n".encode()
        writer.write(_status_response(error.status, body))
        self._failed += 1
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await writer.drain()

    # --- one exchange -------------------------------------------------------------------

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: bytes,
        head: _Head,
    ) -> bool:
        """Relay one request and its answer; whether the client connection may be reused."""
        self._requests += 1
        policy = self.policy
        frames = _request_body(reader, head)
        if frames is not None:
            frames = _with_timeout(frames, policy.body_timeout)
        expect = (head.get(b"expect") or b"").lower() == b"100-continue"
        if expect and frames is not None and head.version == b"HTTP/1.1":
            # Envoy answers 100-continue itself too (``proxy_100_continue`` off); the Expect
            # field is still relayed, so a signature over it stays valid.
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = _Body(self, frames)
        try:
            await body.prefetch(policy.replay_buffer)
        except _ClientFailed:
            body.release()
            return False
        text_method = method.decode("latin-1")
        idempotent = is_idempotent(
            text_method, lambda name: _header_text(head, name), _ANY_BODY_FAILOVER
        )
        replayable = body.complete and idempotent
        tried: list[TriedAttempt] = []
        base = call_classifier(tried, text_method, idempotent, body.replayable)

        def classify(exc: BaseException, context: AttemptContext) -> VerdictLike:
            verdict = base(exc, context)
            if (
                isinstance(verdict, Verdict)
                and verdict.error_class is Fault.CLUSTER
                and verdict.confirmed
            ):
                # the cluster's own answer: the client gets it as the server gave it
                return dataclasses.replace(verdict, replay_safe=False)
            return verdict

        forwarded = _render(head.first, _forwarded_fields(head))
        attempts = 0

        async def attempt(endpoint: Endpoint) -> _Response:
            nonlocal attempts
            attempts += 1
            return await self._attempt(endpoint, method, forwarded, body, replayable)

        answer: _Response | None = None
        error: str | None = None
        status = 502
        try:
            if replayable:
                answer = await self._pool.call(attempt, idempotent=True, classify=classify)
            else:
                # A body that streams once: the pool's deadline would cut a long upload, so
                # the attempt bounds its connect and its wait for the answer itself.
                answer = await self._pool.call(
                    attempt,
                    idempotent=False,
                    classify=classify,
                    deadline=math.inf if not body.complete else None,
                    attempt_timeout=math.inf if not body.complete else None,
                )
        except _ClientFailed:
            self._failed += 1
            return False
        except CallFailed as failed:
            answer = _answer_of(failed.last_error)
            error = failed.reason
            status = 504 if isinstance(failed.last_error, TimeoutError) else 502
        except NoEndpointAvailable as failed:
            error, status = str(failed), 503
        except Exception as failed:  # the attempt's own error, final (not replayable)
            answer = _answer_of(failed)
            error = f"{type(failed).__name__}: {failed}"
            status = 504 if isinstance(failed, TimeoutError) else 502
        finally:
            self._retried += max(0, attempts - 1)
            body.release()
        if answer is None:
            self._failed += 1
            _log.info("request failed: %s %s", text_method, error)
            message = f"mcresolve sidecar: no endpoint answered ({error})\n".encode()
            writer.write(_status_response(status, message[:2048]))
            await writer.drain()
            return body.finished
        return await self._respond(writer, method, head, answer) and body.finished

    async def _attempt(
        self,
        endpoint: Endpoint,
        method: bytes,
        forwarded: bytes,
        body: _Body,
        replayable: bool,
    ) -> _Response:
        policy = self.policy
        call = self._pool.policy.call
        for _ in range(2):
            # A request that cannot be sent again never goes over a kept-alive connection: the
            # endpoint may have closed it meanwhile, and then whether it acted on the request
            # would be unknown (Go's net/http replays only idempotent requests in that case).
            upstream = await self._connect(endpoint, call.attempt_timeout, reuse=replayable)
            try:
                upstream.writer.write(forwarded)
                await body.send(upstream.writer)
                if body.complete:  # the pool's attempt timeout bounds the whole attempt
                    status, head, raw = await self._read_head(upstream)
                else:
                    async with asyncio.timeout(_finite(call.attempt_timeout)):
                        status, head, raw = await self._read_head(upstream)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                upstream.close()
                if upstream.reused:
                    continue  # a kept-alive connection the endpoint had closed: once more
                raise ConnectionResetError(f"upstream {endpoint.host_port}: {exc!r}") from exc
            except BaseException:
                upstream.close()
                raise
            break
        else:  # pragma: no cover - the loop either breaks or raises
            raise ConnectionResetError("unreachable")
        answer = _Response(endpoint, upstream, status, head, None)
        answer.buffered = raw
        if 500 <= status <= 599:
            await self._read_error_body(answer, method, policy.error_body_limit)
        return answer

    async def _connect(self, endpoint: Endpoint, within: float, *, reuse: bool) -> _Upstream:
        idle = self._idle.get(endpoint.key) if reuse else None
        while idle:
            upstream = idle.pop()
            if not upstream.reader.at_eof() and not upstream.writer.is_closing():
                upstream.reused = True
                return upstream
            upstream.close()
        async with asyncio.timeout(_finite(within)):
            reader, writer = await asyncio.open_connection(
                endpoint.address, endpoint.port, limit=self.policy.max_header_bytes
            )
        self.upstream_connects += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Upstream(endpoint.key, reader, writer)

    def _release(self, upstream: _Upstream) -> None:
        if self._closed or upstream.reader.at_eof():
            upstream.close()
            return
        idle = self._idle.setdefault(upstream.key, [])
        if len(idle) >= self.policy.upstream_idle_per_endpoint:
            upstream.close()
            return
        idle.append(upstream)

    async def _read_head(self, upstream: _Upstream) -> tuple[int, _Head, bytes]:
        while True:
            try:
                raw = await upstream.reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError as exc:
                raise MalformedAnswer("upstream", ValueError("response head too large")) from exc
            try:
                status, head = _parse_response(raw)
            except ValueError as exc:
                raise MalformedAnswer("upstream", exc) from exc
            if 100 <= status < 200 and status != 101:
                continue  # interim answers (the endpoint's own 100 Continue) are not relayed
            return status, head, raw

    async def _read_error_body(self, answer: _Response, method: bytes, limit: int) -> None:
        """Read a 5xx answer's body (when it fits ``limit``) and raise it as a failed attempt
        for the classifier; a larger or unframed one is returned as the answer."""
        head = answer.head
        upstream = answer.upstream
        assert upstream is not None
        if method == b"HEAD" or head.content_length == 0:
            data = b""
        elif head.content_length is not None and head.content_length <= limit:
            data = await upstream.reader.readexactly(head.content_length)
        else:
            return
        self._hold(len(data))
        try:
            answer.upstream = None
            if head.close:
                upstream.close()
            else:
                self._release(upstream)
            answer.buffered = (answer.buffered or b"") + data
            match = _CODE.search(data)
            if match:
                raise _S3Answer(answer, match.group(1).decode("latin-1"))
            raise _StatusAnswer(answer)
        finally:
            self._hold(-len(data))

    def _hold(self, size: int) -> None:
        self._buffered += size
        self.peak_buffered = max(self.peak_buffered, self._buffered)

    async def _respond(
        self, writer: asyncio.StreamWriter, method: bytes, request: _Head, answer: _Response
    ) -> bool:
        """Send ``answer`` to the client; whether the client connection may be reused."""
        head = answer.head
        fields = _forwarded_fields(head)
        if self.policy.report_endpoint or request.get(ENDPOINT_HEADER.lower().encode()) is not None:
            fields.append((ENDPOINT_HEADER.encode(), answer.endpoint.host_port.encode()))
        upstream = answer.upstream
        frames = (
            None
            if upstream is None
            else _response_body(upstream.reader, method, answer.status, head)
        )
        delimited_by_close = (
            upstream is not None
            and frames is not None
            and not head.chunked
            and head.content_length is None
        )
        keep = not (request.close or delimited_by_close or self._draining)
        if not keep:
            fields.append((b"Connection", b"close"))
        first = head.first if request.version == b"HTTP/1.1" else b"HTTP/1.0" + head.first[8:]
        rendered = _render(first, fields)
        if upstream is None:
            raw_head = answer.buffered or b""
            body = raw_head[raw_head.find(b"\r\n\r\n") + 4 :] if raw_head else b""
            writer.write(rendered + body)
            self._bytes_out += len(rendered) + len(body)
            await self._drain_client(writer)
            return keep
        length = head.content_length
        if frames is not None and length is not None and length <= _CHUNK and not head.chunked:
            # a small body: one read, one write (what _read_length would do, without the
            # async generator)
            ok = False
            try:
                data = await upstream.reader.readexactly(length)
                writer.write(rendered + data)
                self._bytes_out += len(rendered) + length
                await self._drain_client(writer)
                ok = True
            finally:
                if ok and not head.close:
                    self._release(upstream)
                else:
                    upstream.close()
                    if not ok:
                        self._failed += 1
            return keep
        self._bytes_out += len(rendered)
        pending: bytes | None = rendered  # sent with the first piece of the body: one write
        ok = False
        try:
            if frames is not None:
                async for data in frames:
                    self._bytes_out += len(data)
                    if pending is not None:
                        if len(data) <= 16 * 1024:
                            data = pending + data
                        else:
                            writer.write(pending)
                        pending = None
                    writer.write(data)
                    if writer.transport.get_write_buffer_size() > _CHUNK:
                        await self._drain_client(writer)
            if pending is not None:
                writer.write(pending)
            await self._drain_client(writer)
            ok = True
        finally:
            if ok and not head.close and not delimited_by_close:
                self._release(upstream)
            else:
                upstream.close()
                if not ok:
                    self._failed += 1
        return keep

    async def _drain_client(self, writer: asyncio.StreamWriter) -> None:
        if writer.transport.get_write_buffer_size() <= _CHUNK:
            return  # drain() would not wait (below asyncio's 64 KiB high-water mark)
        async with asyncio.timeout(_finite(self.policy.body_timeout)):
            await writer.drain()


class _Body:
    """A request body: the part held for replay (up to the policy's buffer) and the rest still
    on the client's connection."""

    __slots__ = ("_frames", "_held", "_listener", "complete", "finished", "prefix", "started")

    def __init__(self, listener: HttpListener, frames: AsyncIterator[bytes] | None) -> None:
        self._listener = listener
        self._frames = frames
        self.prefix: list[bytes] = []
        self._held = 0
        self.complete = frames is None
        """The whole body is in :attr:`prefix` (it can be sent any number of times)."""
        self.started = False
        """Bytes past the prefix were sent somewhere: the body cannot be sent again."""
        self.finished = frames is None
        """The client's body was read to its end (the connection can take another request)."""

    async def prefetch(self, limit: int) -> None:
        """Read the body into memory up to ``limit`` bytes."""
        frames = self._frames
        if frames is None:
            return
        try:
            while self._held <= limit:
                try:
                    data = await anext(frames)
                except StopAsyncIteration:
                    self.complete = self.finished = True
                    return
                self.prefix.append(data)
                self._held += len(data)
                self._listener._hold(len(data))
                self._listener._bytes_in += len(data)
        except (OSError, EOFError, ValueError) as exc:  # TimeoutError is an OSError
            raise _ClientFailed(f"client request body: {exc!r}") from exc

    def replayable(self) -> bool:
        return self.complete or not self.started

    async def send(self, writer: asyncio.StreamWriter) -> None:
        """Write the body to an upstream connection (the prefix, then the rest streamed)."""
        for data in self.prefix:
            writer.write(data)
            if writer.transport.get_write_buffer_size() > _CHUNK:
                await writer.drain()
        if not self.complete:
            if self.started:
                raise _ClientFailed("the request body was already streamed once")
            self.started = True
            assert self._frames is not None
            while True:
                try:
                    data = await anext(self._frames)
                except StopAsyncIteration:
                    break
                except (OSError, EOFError, ValueError) as exc:
                    raise _ClientFailed(f"client request body: {exc!r}") from exc
                self._listener._bytes_in += len(data)
                writer.write(data)
                await writer.drain()
            self.finished = True
        await writer.drain()

    def release(self) -> None:
        self._listener._hold(-self._held)
        self._held = 0
        self.prefix = []


def _finite(seconds: float) -> float | None:
    return None if math.isinf(seconds) else seconds


def _deadline(seconds: float) -> float | None:
    return None if math.isinf(seconds) else asyncio.get_running_loop().time() + seconds


_REASONS: Final = {
    400: "Bad Request",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


def _status_response(status: int, body: bytes) -> bytes:
    reason = _REASONS.get(status, "Error")
    close = b"Connection: close\r\n" if status < 500 or status == 505 else b""
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n".encode()
        + close
        + b"\r\n"
        + body
    )
