"""The fault proxy against a scripted HTTP upstream on loopback: framing, modes, life cycle."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import urllib3

from mcresolve.testing.faultproxy import (
    MINIO_ERRORS,
    FaultMode,
    FaultProxy,
    S3ErrorSpec,
    render_s3_error,
)

BIG = bytes(range(256)) * 8192  # 2 MiB


@dataclass
class Upstream:
    """A scripted HTTP/1.1 server: enough framing variety to exercise the relay."""

    server: asyncio.Server
    connections: int = 0
    bodies: list[bytes] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return body
            body += chunk[:-2]
    return await reader.readexactly(int(headers.get("content-length", "0")))


def _response(path: str, method: str, body: bytes) -> tuple[bytes, bool]:
    """The raw response for a request and whether the connection stays open."""
    if path == "/chunked":
        parts = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in (b"ab", b"cde", b"f"))
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + parts + b"0\r\n\r\n", True
    if path == "/big":
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(BIG)}\r\n\r\n".encode()
        return head + (b"" if method == "HEAD" else BIG), True
    if path == "/echo":
        return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body, True
    if path == "/empty":
        return b"HTTP/1.1 204 No Content\r\n\r\n", True
    if path == "/until-eof":
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstreamed until the end", False
    return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", True


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    state: Upstream

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ")
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                if headers.get("expect") == "100-continue":
                    if path == "/reject":
                        writer.write(
                            b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n"
                        )
                        await writer.drain()
                        continue
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await writer.drain()
                body = await _read_body(reader, headers)
                state.bodies.append(body)
                data, keep = _response(path, method, body)
                writer.write(data)
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state = Upstream(server)
    try:
        yield state
    finally:
        server.close()


@pytest.fixture
async def proxy(upstream: Upstream) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", upstream.port, name="unit") as started:
        yield started


def _http(read_timeout: float = 5.0) -> urllib3.PoolManager:
    return urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=read_timeout))


async def test_relays_every_framing_on_one_kept_alive_connection(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    base = f"http://{proxy.address}"

    def exchange() -> list[tuple[int, bytes]]:
        http = _http()
        results = []
        for method, path, body, chunked in [
            ("GET", "/chunked", None, False),
            ("HEAD", "/big", None, False),
            ("GET", "/big", None, False),
            ("PUT", "/echo", b"x" * 100_000, False),
            ("PUT", "/echo", iter([b"chunk-one;", b"chunk-two"]), True),
            ("GET", "/empty", None, False),
        ]:
            response = http.request(method, base + path, body=body, chunked=chunked)
            results.append((response.status, response.data))
        return results

    results = await asyncio.to_thread(exchange)
    assert results == [
        (200, b"abcdef"),
        (200, b""),
        (200, BIG),
        (200, b"x" * 100_000),
        (200, b"chunk-one;chunk-two"),
        (204, b""),
    ]
    assert upstream.connections == 1
    stats = proxy.stats
    assert stats.requests[FaultMode.PASS] == 6 and stats.connections[FaultMode.PASS] == 1


async def test_body_until_eof_is_relayed_and_the_connection_closed(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"GET /until-eof HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)  # returns only once the proxy closes
    writer.close()
    assert data.endswith(b"\r\n\r\nstreamed until the end")


async def test_upstream_gone_resets_the_client_and_counts_the_failure(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    upstream.server.close()
    await upstream.server.wait_closed()
    with pytest.raises(urllib3.exceptions.ProtocolError):
        await asyncio.to_thread(_http().request, "GET", f"http://{proxy.address}/big")
    assert proxy.stats.upstream_failures == 1


async def test_upstream_unavailable_refuses_like_a_dead_node(proxy: FaultProxy) -> None:
    proxy.set_upstream_available(False)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", proxy.port)
    proxy.set_upstream_available(True)
    response = await asyncio.to_thread(_http().request, "GET", f"http://{proxy.address}/chunked")
    assert response.data == b"abcdef"


async def test_mode_changes_from_another_thread_apply_before_returning(proxy: FaultProxy) -> None:
    outcome: list[BaseException | None] = []

    def from_thread() -> None:
        proxy.refuse()
        try:
            socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
        except ConnectionRefusedError as exc:
            outcome.append(exc)
        else:
            outcome.append(None)
        proxy.pass_through()

    worker = threading.Thread(target=from_thread)
    worker.start()
    await asyncio.to_thread(worker.join)
    assert isinstance(outcome[0], ConnectionRefusedError)
    assert proxy.listening and proxy.mode is FaultMode.PASS


async def test_method_filter_delays_only_writes(proxy: FaultProxy) -> None:
    proxy.delay(0.4, methods={"put"})
    http = _http()
    await asyncio.to_thread(http.request, "GET", f"http://{proxy.address}/chunked")
    assert proxy.stats.requests[FaultMode.PASS] == 1  # relayed at once, not delayed
    started = time.monotonic()
    await asyncio.to_thread(http.request, "PUT", f"http://{proxy.address}/echo", body=b"w")
    assert time.monotonic() - started >= 0.4  # a time by nature (the delay); load only adds
    assert proxy.stats.requests[FaultMode.DELAY] == 1


async def test_aclose_resets_open_connections_and_stops_listening(
    upstream: Upstream,
) -> None:
    proxy = await FaultProxy("127.0.0.1", upstream.port).start()
    proxy.blackhole()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await proxy.aclose()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(), 5)
    writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", proxy.port)
    with pytest.raises(RuntimeError, match="closed"):
        proxy.pass_through()


async def test_reset_stats_returns_the_counts_before(proxy: FaultProxy) -> None:
    await asyncio.to_thread(_http().request, "GET", f"http://{proxy.address}/empty")
    before = proxy.reset_stats()
    assert before.total_requests == 1 and before.total_connections == 1
    assert proxy.stats.total_requests == 0


@pytest.mark.parametrize(
    ("mode", "kwargs", "message"),
    [
        (FaultMode.REFUSE, {"methods": ["GET"]}, "cannot be limited"),
        (FaultMode.PASS, {"methods": ["GET"]}, "cannot be limited"),
        (FaultMode.DELAY, {}, "positive delay"),
        (FaultMode.BLACKHOLE, {"delay": 1.0}, "only meaningful"),
        (FaultMode.ERROR, {}, "needs an error"),
        (FaultMode.ERROR, {"error": "NoSuchThing"}, "unknown MinIO error code"),
        (FaultMode.RESET, {"methods": []}, "must not be empty"),
    ],
)
def test_invalid_settings_are_rejected(
    mode: FaultMode, kwargs: dict[str, object], message: str
) -> None:
    proxy = FaultProxy("127.0.0.1", 9)
    with pytest.raises(ValueError, match=message):
        proxy.set_mode(mode, **kwargs)  # type: ignore[arg-type]
    assert proxy.mode is FaultMode.PASS


def test_error_body_mirrors_minio_with_escaped_key() -> None:
    raw = render_s3_error(
        MINIO_ERRORS["XMinioReadQuorum"],
        method="GET",
        target="/photos/a%26b%3Cc.jpg?versionId=1",
        host_id="h0st",
        request_id="17F0A1B2C3D4E5F6",
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 503 Service Unavailable"
    headers = dict(line.split(": ", 1) for line in lines[1:] if not line.startswith("Vary"))
    assert headers["Content-Length"] == str(len(body))
    assert headers["Content-Type"] == "application/xml"
    assert headers["Retry-After"] == "120"
    assert headers["X-Amz-Request-Id"] == "17F0A1B2C3D4E5F6" and headers["X-Amz-Id-2"] == "h0st"
    root = ET.fromstring(body)
    assert root.tag == "Error"
    fields = {child.tag: child.text for child in root}
    assert fields == {
        "Code": "XMinioReadQuorum",
        "Message": "Multiple disk failures, unable to reconstruct data.",
        "Key": "a&b<c.jpg",
        "BucketName": "photos",
        "Resource": "/photos/a&b<c.jpg",
        "RequestId": "17F0A1B2C3D4E5F6",
        "HostId": "h0st",
    }


def test_head_error_has_headers_only_and_bucket_level_errors_omit_key() -> None:
    head_only = render_s3_error(
        MINIO_ERRORS["TooManyRequests"], method="HEAD", target="/b/k", host_id="h"
    )
    assert head_only.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert head_only.endswith(b"\r\n\r\n") and b"<Error>" not in head_only
    assert b"Content-Length" not in head_only and b"Retry-After: 60\r\n" in head_only
    bucket_level = render_s3_error(
        S3ErrorSpec("Custom", 500, "m"),
        method="GET",
        target="/bucket",
        host_id="h",
        keep_alive=False,
    )
    assert b"<Key>" not in bucket_level and b"<BucketName>bucket</BucketName>" in bucket_level
    assert b"Connection: close\r\n" in bucket_level and b"Retry-After" not in bucket_level


async def test_expect_100_continue_waits_for_the_node_before_sending_the_body(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    await writer.drain()
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    await writer.drain()
    final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert final.startswith(b"HTTP/1.1 200 OK") and await reader.readexactly(5) == b"hello"

    writer.write(
        b"PUT /reject HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    await writer.drain()
    rejected = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert rejected.startswith(b"HTTP/1.1 417 ")
    assert await asyncio.wait_for(reader.read(), 5) == b""  # body state unknown: closed
    writer.close()
    assert upstream.bodies == [b"hello"]


async def test_client_connections_disable_nagle(proxy: FaultProxy) -> None:
    """Small responses are written as head + body: with Nagle on, the second write waits for the
    client's delayed ACK (~40 ms a request). Every accepted connection must have TCP_NODELAY."""
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    try:
        sock.sendall(b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.to_thread(sock.recv, 1024)).startswith(b"HTTP/1.1 204")
        writers = list(proxy._writers)  # the proxy's side of our connection
        assert len(writers) == 1
        accepted = writers[0].get_extra_info("socket")
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        sock.close()
