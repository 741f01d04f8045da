"""An asyncio HTTP/1.1 fault-injection proxy in front of one real storage node.

The proxy listens on its own port (the address clients and Consul know the node by) and relays
to the real S3 gateway. Its behaviour can be switched at runtime, from any thread:

- :attr:`FaultMode.PASS` relays every request untouched;
- :attr:`FaultMode.REFUSE` closes the listening socket (connects get ``ECONNREFUSED``) and resets
  every open connection, as when the node's process is gone;
- :attr:`FaultMode.RESET` accepts, then answers every request with a TCP reset;
- :attr:`FaultMode.BLACKHOLE` accepts and reads, but never answers (a hung node);
- :attr:`FaultMode.DELAY` adds a fixed latency before each request is relayed;
- :attr:`FaultMode.ERROR` answers with one of MinIO's real S3 error responses
  (:data:`MINIO_ERRORS`: status, XML body, ``Retry-After``; HEAD responses carry no body).

The request-level modes can be limited to some HTTP methods (``methods={"PUT", "POST"}``
emulates lost write quorum); other requests pass through. Modes apply per *request*, so
connections kept alive in a client's pool see a mode change at their next request.

Every connection and request is counted by the mode that handled it (:class:`ProxyStats`), so
tests and benchmarks can assert how many attempts reached a node.

The proxy is pure asyncio (no thread of its own). It belongs to the event loop that started it;
mode changes made from another thread are handed to that loop and applied before the call
returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import hashlib
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from types import EllipsisType, MappingProxyType
from typing import Final, TypeVar

__all__ = [
    "MINIO_ERRORS",
    "FaultMode",
    "FaultProxy",
    "FaultSetting",
    "ProxyStats",
    "S3ErrorSpec",
    "render_s3_error",
]

_T = TypeVar("_T")

_RELAY_CHUNK: Final = 64 * 1024
_MAX_HEAD: Final = 64 * 1024
_CROSS_THREAD_TIMEOUT: Final = 10.0


class FaultMode(enum.Enum):
    """How the proxy treats connections and requests."""

    PASS = "pass"
    REFUSE = "refuse"
    RESET = "reset"
    BLACKHOLE = "blackhole"
    DELAY = "delay"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class S3ErrorSpec:
    """One S3 error response as MinIO sends it."""

    code: str
    status: int
    message: str
    retry_after: int | None = None


def _spec(code: str, status: int, message: str, retry_after: int | None) -> tuple[str, S3ErrorSpec]:
    return code, S3ErrorSpec(code, status, message, retry_after)


MINIO_ERRORS: Final[Mapping[str, S3ErrorSpec]] = MappingProxyType(
    dict(
        [
            # MinIO 2019 (the generation the reference deployment ran): 503 + Retry-After: 120
            # for these four codes (cmd/api-response.go writeErrorResponse).
            _spec(
                "XMinioServerNotInitialized", 503, "Server not initialized, please try again.", 120
            ),
            _spec(
                "XMinioReadQuorum", 503, "Multiple disk failures, unable to reconstruct data.", 120
            ),
            _spec("XMinioWriteQuorum", 503, "Multiple disks failures, unable to write data.", 120),
            _spec("SlowDown", 503, "Please reduce your request", 120),
            # Current MinIO: every 503 and 429 carries Retry-After: 60.
            _spec(
                "SlowDownRead",
                503,
                "Resource requested is unreadable, please reduce your request rate",
                60,
            ),
            _spec(
                "SlowDownWrite",
                503,
                "Resource requested is unwritable, please reduce your request rate",
                60,
            ),
            _spec("ServerBusy", 503, "The service is unavailable. Please retry.", 60),
            _spec(
                "RequestTimeout",
                503,
                "A timeout occurred while trying to lock a resource, "
                "please reduce your request rate",
                60,
            ),
            _spec("TooManyRequests", 429, "Please reduce your request rate", 60),
            _spec(
                "InternalError", 500, "We encountered an internal error, please try again.", None
            ),
        ]
    )
)
"""MinIO's S3 error responses by code (status, message and ``Retry-After`` as MinIO sends them)."""


@dataclass(frozen=True, slots=True)
class FaultSetting:
    """The proxy's current behaviour: a mode and its parameters (immutable; replaced whole)."""

    mode: FaultMode = FaultMode.PASS
    methods: frozenset[str] | None = None
    """Request-level modes apply only to these HTTP methods (``None``: all methods)."""
    delay: float = 0.0
    """Seconds added before each request is relayed (:attr:`FaultMode.DELAY`)."""
    error: S3ErrorSpec | None = None
    """The error answered (:attr:`FaultMode.ERROR`)."""

    def applies_to(self, method: str) -> bool:
        """Whether a request with this method gets the fault (otherwise it passes through)."""
        return self.methods is None or method.upper() in self.methods


@dataclass(slots=True)
class ProxyStats:
    """What reached the proxy, by the mode that handled it.

    ``connections`` counts accepted TCP connections by the mode in force when accepted
    (connections refused by the kernel in :attr:`FaultMode.REFUSE` cannot be counted);
    ``requests`` counts HTTP requests by the mode that handled them (a request outside the
    mode's ``methods`` counts as :attr:`FaultMode.PASS`); ``errors`` counts answered error codes.
    """

    connections: Counter[FaultMode] = field(
        default_factory=lambda: Counter(dict.fromkeys(FaultMode, 0))
    )
    requests: Counter[FaultMode] = field(
        default_factory=lambda: Counter(dict.fromkeys(FaultMode, 0))
    )
    errors: Counter[str] = field(default_factory=Counter)
    upstream_failures: int = 0
    """Relayed requests that failed because the real node could not be reached or broke off."""

    @property
    def total_connections(self) -> int:
        """All accepted connections."""
        return sum(self.connections.values())

    @property
    def total_requests(self) -> int:
        """All HTTP requests seen, whatever happened to them."""
        return sum(self.requests.values())

    def copy(self) -> ProxyStats:
        """An independent snapshot."""
        return ProxyStats(
            Counter(self.connections), Counter(self.requests), Counter(self.errors),
            self.upstream_failures,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _RequestHead:
    raw: bytes
    method: str
    target: str
    version: str
    headers: Mapping[str, str]

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


@dataclass(frozen=True, slots=True)
class _ResponseHead:
    raw: bytes
    status: int
    version: str
    headers: Mapping[str, str]


class _ConnectionDone(Exception):
    """Ends one client connection (EOF, reset, or a framing error)."""


def _parse_headers(lines: list[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise _ConnectionDone("malformed header line")
        key = name.strip().decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _parse_request_head(raw: bytes) -> _RequestHead:
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].decode("latin-1").split(" ")
    if len(parts) != 3:
        raise _ConnectionDone("malformed request line")
    method, target, version = parts
    return _RequestHead(raw, method.upper(), target, version, _parse_headers(lines[1:]))


def _parse_response_head(raw: bytes) -> _ResponseHead:
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise _ConnectionDone("malformed status line")
    return _ResponseHead(raw, int(parts[1]), parts[0], _parse_headers(lines[1:]))


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    """One message head up to and including the blank line; ``None`` on a clean EOF."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise _ConnectionDone("connection closed mid-head") from exc
        return None
    except (asyncio.LimitOverrunError, ValueError) as exc:
        raise _ConnectionDone("message head too large") from exc


async def _relay_body(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter | None,
    headers: Mapping[str, str],
    *,
    until_eof: bool,
) -> None:
    """Copy (or, with no ``writer``, discard) one message body framed by ``headers``."""

    async def put(data: bytes) -> None:
        if writer is not None:
            writer.write(data)
            await writer.drain()

    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            await put(size_line)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:
                    trailer = await reader.readuntil(b"\r\n")
                    await put(trailer)
                    if trailer == b"\r\n":
                        return
            await _relay_exact(reader, put, size + 2)
    elif "content-length" in headers:
        await _relay_exact(reader, put, int(headers["content-length"].split(",")[0]))
    elif until_eof:
        while data := await reader.read(_RELAY_CHUNK):
            await put(data)


async def _relay_exact(
    reader: asyncio.StreamReader, put: Callable[[bytes], Awaitable[None]], length: int
) -> None:
    remaining = length
    while remaining > 0:
        data = await reader.read(min(remaining, _RELAY_CHUNK))
        if not data:
            raise asyncio.IncompleteReadError(b"", remaining)
        remaining -= len(data)
        await put(data)


def _request_id() -> str:
    # MinIO's request IDs are the request's UnixNano time in upper-case hexadecimal.
    return f"{time.time_ns():X}"


def render_s3_error(
    spec: S3ErrorSpec,
    *,
    method: str,
    target: str,
    host_id: str,
    request_id: str | None = None,
    keep_alive: bool = True,
) -> bytes:
    """The bytes of MinIO's HTTP response for ``spec`` answering ``method target``.

    Mirrors MinIO's ``writeErrorResponse``: an XML ``<Error>`` document with ``Code``,
    ``Message``, ``Key``/``BucketName`` (path-style addressing, when present), ``Resource``,
    ``RequestId`` and ``HostId``, MinIO's headers and ``Retry-After`` where MinIO sends it.
    HEAD responses carry the headers only (MinIO's ``writeErrorResponseHeadersOnly``).
    """
    request_id = request_id or _request_id()
    path = urllib.parse.unquote(urllib.parse.urlsplit(target).path) or "/"
    bucket, _, key = path.lstrip("/").partition("/")
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>',
        f"<Code>{_xml(spec.code)}</Code><Message>{_xml(spec.message)}</Message>",
    ]
    if key:
        parts.append(f"<Key>{_xml(key)}</Key>")
    if bucket:
        parts.append(f"<BucketName>{_xml(bucket)}</BucketName>")
    parts.append(f"<Resource>{_xml(path)}</Resource>")
    parts.append(f"<RequestId>{request_id}</RequestId><HostId>{host_id}</HostId></Error>")
    body = "".join(parts).encode()
    try:
        reason = HTTPStatus(spec.status).phrase
    except ValueError:
        reason = "Error"
    head_only = method.upper() == "HEAD"
    headers = [f"HTTP/1.1 {spec.status} {reason}", "Accept-Ranges: bytes"]
    if not head_only:
        headers += [f"Content-Length: {len(body)}", "Content-Type: application/xml"]
    if spec.retry_after is not None:
        headers.append(f"Retry-After: {spec.retry_after}")
    headers += [
        "Server: MinIO",
        "Strict-Transport-Security: max-age=31536000; includeSubDomains",
        "Vary: Origin",
        "Vary: Accept-Encoding",
        f"X-Amz-Id-2: {host_id}",
        f"X-Amz-Request-Id: {request_id}",
        "X-Content-Type-Options: nosniff",
        "X-Xss-Protection: 1; mode=block",
        f"Date: {formatdate(usegmt=True)}",
    ]
    if not keep_alive:
        headers.append("Connection: close")
    head = ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


_Upstream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _framed(response: _ResponseHead) -> bool:
    """Whether the response's body length is known without reading to EOF."""
    return (
        "content-length" in response.headers
        or "chunked" in response.headers.get("transfer-encoding", "").lower()
    )


async def _relay_exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    head: _RequestHead,
    upstream: _Upstream,
) -> tuple[_ResponseHead, bool]:
    """Send one request (head and body) to the node and its final response back to the client;
    returns that response's head and whether the request body was sent."""
    up_reader, up_writer = upstream
    # With "Expect: 100-continue" the client sends its body only after the node's
    # "100 Continue"; if the node answers finally instead, the body is never sent.
    body_sent = head.headers.get("expect", "").lower() != "100-continue"
    up_writer.write(head.raw)
    await up_writer.drain()
    if body_sent:
        await _relay_body(reader, up_writer, head.headers, until_eof=False)
    while True:
        raw = await _read_head(up_reader)
        if raw is None:
            raise _ConnectionDone("upstream closed before answering")
        response = _parse_response_head(raw)
        writer.write(raw)
        await writer.drain()
        if response.status == 100 and not body_sent:
            await _relay_body(reader, up_writer, head.headers, until_eof=False)
            body_sent = True
        elif not 100 <= response.status < 200:
            break
    if not (head.method == "HEAD" or response.status in (204, 304)):
        await _relay_body(up_reader, writer, response.headers, until_eof=not _framed(response))
    return response, body_sent


class FaultProxy:
    """A fault-injecting HTTP/1.1 proxy for one upstream S3 node (see the module docstring).

    ``port=0`` picks a free port once; the proxy keeps that port for its whole life, also across
    :attr:`FaultMode.REFUSE` periods. Use as ``async with FaultProxy(...) as proxy`` or call
    :meth:`start` and :meth:`aclose`.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "",
        upstream_connect_timeout: float = 5.0,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = host
        self.name = name or f"proxy-{upstream_host}:{upstream_port}"
        self.upstream_connect_timeout = upstream_connect_timeout
        self.host_id = hashlib.sha256(self.name.encode()).hexdigest()
        self._port = port
        self._setting = FaultSetting()
        self._upstream_available = True
        self._stats = ProxyStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None
        self._listener: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._serving: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._closed = False

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> FaultProxy:
        """Bind the listening port and start relaying (in the running event loop)."""
        if self._loop is not None:
            raise RuntimeError(f"{self.name} already started")
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        self._sync_listener()
        await asyncio.gather(*self._serving)
        return self

    async def aclose(self) -> None:
        """Stop listening, reset every open connection and wait for the handlers to finish."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._closed = True
            return
        if loop is asyncio.get_running_loop():
            await self._close_here()
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._close_here(), loop))

    async def _close_here(self) -> None:
        self._closed = True
        self._stop_listening()  # also resets every client connection: handlers end on their own
        tasks = self._serving | self._handlers
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=1.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- addresses --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port clients connect to (known once started)."""
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` of the proxy."""
        return f"{self.host}:{self._port}"

    @property
    def listening(self) -> bool:
        """Whether connects are accepted right now."""
        return self._listener is not None

    # -- behaviour --------------------------------------------------------------------------

    @property
    def setting(self) -> FaultSetting:
        """The behaviour in force."""
        return self._setting

    @property
    def mode(self) -> FaultMode:
        """The mode in force."""
        return self._setting.mode

    def set_mode(
        self,
        mode: FaultMode,
        *,
        methods: Iterable[str] | None = None,
        delay: float = 0.0,
        error: str | S3ErrorSpec | None = None,
    ) -> FaultSetting:
        """Switch behaviour now (thread-safe; applied before returning). Returns the new setting.

        ``methods`` limits a request-level mode to those HTTP methods; ``delay`` (seconds) is
        for :attr:`FaultMode.DELAY`; ``error`` (a :data:`MINIO_ERRORS` code or a spec) for
        :attr:`FaultMode.ERROR`.
        """
        setting = _make_setting(mode, methods=methods, delay=delay, error=error)
        return self._call_on_loop(lambda: self._apply(setting))

    def pass_through(self) -> FaultSetting:
        """Relay everything (the initial mode)."""
        return self.set_mode(FaultMode.PASS)

    def refuse(self) -> FaultSetting:
        """Close the listener: connects are refused; open connections are reset."""
        return self.set_mode(FaultMode.REFUSE)

    def reset(self, *, methods: Iterable[str] | None = None) -> FaultSetting:
        """Answer requests with a TCP reset."""
        return self.set_mode(FaultMode.RESET, methods=methods)

    def blackhole(self, *, methods: Iterable[str] | None = None) -> FaultSetting:
        """Accept and read requests, never answer."""
        return self.set_mode(FaultMode.BLACKHOLE, methods=methods)

    def delay(self, seconds: float, *, methods: Iterable[str] | None = None) -> FaultSetting:
        """Add ``seconds`` before each request is relayed."""
        return self.set_mode(FaultMode.DELAY, methods=methods, delay=seconds)

    def answer_error(
        self,
        error: str | S3ErrorSpec,
        *,
        methods: Iterable[str] | None = None,
        retry_after: int | EllipsisType | None = ...,
    ) -> FaultSetting:
        """Answer requests with MinIO's error response ``error`` (a :data:`MINIO_ERRORS` code).

        ``retry_after`` overrides the ``Retry-After`` header (``None`` omits it).
        """
        spec = _error_spec(error)
        if not isinstance(retry_after, EllipsisType):
            spec = S3ErrorSpec(spec.code, spec.status, spec.message, retry_after)
        return self.set_mode(FaultMode.ERROR, methods=methods, error=spec)

    @property
    def upstream_available(self) -> bool:
        """Whether the real node is up (set by the harness when it kills or restarts it)."""
        return self._upstream_available

    def set_upstream_available(self, available: bool) -> None:
        """Declare the real node down (the proxy then refuses, like the dead node) or back up."""
        self._call_on_loop(lambda: self._apply_upstream(available))

    # -- statistics ------------------------------------------------------------------------

    @property
    def stats(self) -> ProxyStats:
        """A snapshot of the counters."""
        return self._call_on_loop(self._stats.copy)

    def reset_stats(self) -> ProxyStats:
        """Zero the counters; returns the counts before."""
        return self._call_on_loop(self._swap_stats)

    def _swap_stats(self) -> ProxyStats:
        before, self._stats = self._stats, ProxyStats()
        return before

    # -- loop and thread plumbing -----------------------------------------------------------

    def _call_on_loop(self, fn: Callable[[], _T]) -> _T:
        loop = self._loop
        if loop is None or self._thread_id == threading.get_ident() or loop.is_closed():
            return fn()
        if not loop.is_running():
            raise RuntimeError(f"{self.name}: its event loop is not running")
        done: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return done.result(timeout=_CROSS_THREAD_TIMEOUT)

    def _bind(self) -> socket.socket:
        # proto=IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
        # protocol says TCP; with proto 0 Nagle's algorithm meets the client's delayed ACK and
        # every small response stalls ~40 ms.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _apply(self, setting: FaultSetting) -> FaultSetting:
        if self._closed:
            raise RuntimeError(f"{self.name} is closed")
        self._setting = setting
        self._sync_listener()
        return setting

    def _apply_upstream(self, available: bool) -> None:
        self._upstream_available = available
        if not self._closed:
            self._sync_listener()

    def _sync_listener(self) -> None:
        """Listen iff the node is up and the mode is not REFUSE; reset connections when not."""
        want = self._upstream_available and self._setting.mode is not FaultMode.REFUSE
        if want and self._listener is None and self._loop is not None:
            # Bound and listening before returning: connects queue in the backlog until the
            # accept loop is attached, so the caller never sees a refusal after this point.
            sock = self._bind()
            self._port = sock.getsockname()[1]
            self._listener = sock
            task = self._loop.create_task(self._serve(sock))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
        elif not want and self._listener is not None:
            self._stop_listening()

    def _stop_listening(self) -> None:
        sock, self._listener = self._listener, None
        server, self._server = self._server, None
        if server is not None:
            server.close()
        elif sock is not None:
            sock.close()
        self._reset_all()

    async def _serve(self, sock: socket.socket) -> None:
        try:
            server = await asyncio.start_server(self._handle, sock=sock)
        except OSError:
            sock.close()
            if self._listener is sock:
                self._listener = None
            raise
        if self._listener is not sock:  # stopped while the server was being set up
            server.close()
            return
        self._server = server

    def _reset_all(self) -> None:
        for writer in list(self._writers):
            _reset(writer)

    # -- connection handling -----------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self._stats.connections[self._setting.mode] += 1
        upstream: _Upstream | None = None
        try:
            while not self._closed:
                raw = await _read_head(reader)
                if raw is None:
                    break
                head = _parse_request_head(raw)
                setting = self._setting
                mode = setting.mode if setting.applies_to(head.method) else FaultMode.PASS
                if not self._upstream_available:
                    mode = FaultMode.REFUSE
                self._stats.requests[mode] += 1
                if mode in (FaultMode.REFUSE, FaultMode.RESET):
                    _reset(writer)
                    break
                if mode is FaultMode.BLACKHOLE:
                    while await reader.read(_RELAY_CHUNK):
                        pass
                    break
                if mode is FaultMode.ERROR:
                    assert setting.error is not None
                    if not await self._answer_error(reader, writer, head, setting.error):
                        break
                    continue
                if mode is FaultMode.DELAY:
                    await asyncio.sleep(setting.delay)
                upstream, keep_going = await self._relay(reader, writer, head, upstream)
                if not keep_going:
                    break
        except (_ConnectionDone, ConnectionError, asyncio.IncompleteReadError):
            _reset(writer)
        except asyncio.CancelledError:
            # Only aclose() cancels handlers. Ending quietly keeps asyncio's stream callback
            # (which calls task.exception() on 3.11) from logging the cancellation.
            _reset(writer)
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            if upstream is not None:
                upstream[1].transport.abort()
            if not writer.transport.is_closing():
                writer.close()

    async def _answer_error(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        head: _RequestHead,
        spec: S3ErrorSpec,
    ) -> bool:
        expects_continue = head.headers.get("expect", "").lower() == "100-continue"
        keep_alive = head.keep_alive and not expects_continue
        if not expects_continue:
            await _relay_body(reader, None, head.headers, until_eof=False)
        self._stats.errors[spec.code] += 1
        writer.write(
            render_s3_error(
                spec,
                method=head.method,
                target=head.target,
                host_id=self.host_id,
                keep_alive=keep_alive,
            )
        )
        await writer.drain()
        return keep_alive

    async def _upstream(self, reuse: _Upstream | None) -> _Upstream:
        """``reuse`` while it is still open, otherwise a new connection to the node."""
        if reuse is not None and not reuse[1].transport.is_closing() and not reuse[0].at_eof():
            return reuse
        if reuse is not None:
            reuse[1].transport.abort()
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(self.upstream_host, self.upstream_port),
                self.upstream_connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            self._stats.upstream_failures += 1
            raise _ConnectionDone(f"upstream unreachable: {exc}") from exc

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        head: _RequestHead,
        upstream: _Upstream | None,
    ) -> tuple[_Upstream | None, bool]:
        """Relay one request and its response. Returns the upstream connection to reuse (if
        any) and whether the client connection stays open."""
        upstream = await self._upstream(upstream)
        up_writer = upstream[1]
        try:
            response, body_sent = await _relay_exchange(reader, writer, head, upstream)
        except (_ConnectionDone, ConnectionError, asyncio.IncompleteReadError) as exc:
            self._stats.upstream_failures += 1
            up_writer.transport.abort()
            raise _ConnectionDone(f"relay failed: {exc}") from exc
        except asyncio.CancelledError:
            up_writer.transport.abort()
            raise
        no_body = head.method == "HEAD" or response.status in (204, 304)
        framed = _framed(response)
        upstream_keeps = body_sent and "close" not in response.headers.get("connection", "").lower()
        if not (no_body or framed) or not upstream_keeps:
            up_writer.transport.abort()
            return None, False
        return upstream, head.keep_alive


def _error_spec(error: str | S3ErrorSpec) -> S3ErrorSpec:
    if isinstance(error, S3ErrorSpec):
        return error
    try:
        return MINIO_ERRORS[error]
    except KeyError:
        known = ", ".join(sorted(MINIO_ERRORS))
        raise ValueError(f"unknown MinIO error code {error!r}; known: {known}") from None


def _make_setting(
    mode: FaultMode,
    *,
    methods: Iterable[str] | None,
    delay: float,
    error: str | S3ErrorSpec | None,
) -> FaultSetting:
    if mode is FaultMode.REFUSE and methods is not None:
        raise ValueError("REFUSE acts on the listener and cannot be limited to methods")
    if mode is FaultMode.PASS and methods is not None:
        raise ValueError("PASS cannot be limited to methods")
    if mode is FaultMode.DELAY and delay <= 0:
        raise ValueError("DELAY needs a positive delay in seconds")
    if mode is not FaultMode.DELAY and delay:
        raise ValueError("delay is only meaningful with FaultMode.DELAY")
    if mode is FaultMode.ERROR and error is None:
        raise ValueError("ERROR needs an error code")
    if mode is not FaultMode.ERROR and error is not None:
        raise ValueError("error is only meaningful with FaultMode.ERROR")
    method_set = None if methods is None else frozenset(m.upper() for m in methods)
    if method_set is not None and not method_set:
        raise ValueError("methods must not be empty (use None for all methods)")
    spec = None if error is None else _error_spec(error)
    return FaultSetting(mode, method_set, delay, spec)
