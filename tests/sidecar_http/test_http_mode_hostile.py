"""Hostile clients of the http mode (garbage, oversized heads, slowloris, stalls and
disconnects mid-body) never affect other connections; real sockets."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from upstream import Client, Origin

from mcresolve.pool import EndpointPool
from mcresolve.sidecar.http_mode import (
    HttpListener,
    HttpProxyPolicy,
    ProxyRequestError,
    _parse_request,
)
from support import until

FAST = HttpProxyPolicy(header_timeout=0.5, body_timeout=0.5, max_header_bytes=4096)


@pytest.fixture
async def bed() -> AsyncIterator[tuple[Origin, EndpointPool, HttpListener]]:
    origin = await Origin().start()
    pool = EndpointPool(f"static://{origin.host_port}")
    await pool.start()
    listener = HttpListener(("127.0.0.1", 0), pool, policy=FAST)
    await listener.start()
    yield origin, pool, listener
    await listener.aclose()
    await pool.aclose()
    await origin.aclose()


async def _raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _status_then_close(reader: asyncio.StreamReader) -> bytes:
    data = await asyncio.wait_for(reader.read(), 30)
    return data.split(b"\r\n", 1)[0]


@pytest.mark.parametrize(
    ("sent", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\n\r\n", b"400"),  # no Host
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", b"505"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", b"400"),
        (b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", b"400"),
        (
            b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"400",
        ),
        (b"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", b"501"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n", b"431"),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", b"405"),
    ],
)
async def test_bad_requests_answered_and_others_unaffected(
    bed: tuple[Origin, EndpointPool, HttpListener], sent: bytes, status: bytes
) -> None:
    origin, _, listener = bed
    async with Client(listener.address[1]) as good:
        assert (await good.request("GET", "/before")).status == 200
        reader, writer = await _raw(listener.address[1])
        writer.write(sent)
        line = await _status_then_close(reader)
        writer.close()
        assert line.split(b" ")[1] == status
        assert (await good.request("GET", "/after")).status == 200
    assert [s.target for s in origin.seen] == ["/before", "/after"]


async def test_slowloris_head_times_out_while_others_are_served(
    bed: tuple[Origin, EndpointPool, HttpListener],
) -> None:
    _, _, listener = bed
    reader, writer = await _raw(listener.address[1])
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
    async with Client(listener.address[1]) as good:
        for _ in range(5):
            assert (await good.request("GET", "/ok")).status == 200
    assert (await _status_then_close(reader)).startswith(b"HTTP/1.1 408")
    writer.close()


@pytest.mark.parametrize("how", ["stall", "disconnect"])
async def test_client_failing_mid_body_costs_no_endpoint(
    bed: tuple[Origin, EndpointPool, HttpListener], how: str
) -> None:
    origin, pool, listener = bed
    reader, writer = await _raw(listener.address[1])
    writer.write(b"PUT /obj HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1000)
    await writer.drain()
    if how == "disconnect":
        writer.close()
    async with Client(listener.address[1]) as good:
        for _ in range(5):
            assert (await good.request("GET", "/ok")).status == 200
    if how == "stall":
        assert await asyncio.wait_for(reader.read(), 30) == b"", "the stalled client is cut"
        writer.close()
    assert not pool.snapshot().by_state("ejected")
    assert all(s.method == "GET" for s in origin.seen), "the partial PUT never executed"


async def test_client_stalling_while_a_large_body_streams_costs_no_endpoint(
    bed: tuple[Origin, EndpointPool, HttpListener],
) -> None:
    _, pool, _ = bed
    small = HttpListener(
        ("127.0.0.1", 0), pool, policy=HttpProxyPolicy(replay_buffer=1024, body_timeout=0.5)
    )
    await small.start()
    try:
        reader, writer = await _raw(small.address[1])
        writer.write(b"PUT /o HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 5000)
        data = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        assert data == b"", "the stalled upload is cut without an answer"
        assert not pool.snapshot().by_state("ejected")
        async with Client(small.address[1]) as good:
            assert (await good.request("GET", "/ok")).status == 200
    finally:
        await small.aclose()


class _Background:
    """A listener on its own loop thread, for blocking hypothesis examples."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.origin, self.pool, self.listener = self.run(self._open())

    def run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def _open(self) -> tuple[Origin, EndpointPool, HttpListener]:
        origin = await Origin().start()
        pool = EndpointPool(f"static://{origin.host_port}")
        await pool.start()
        listener = HttpListener(("127.0.0.1", 0), pool, policy=FAST)
        await listener.start()
        return origin, pool, listener

    async def _close(self) -> None:
        await self.listener.aclose()
        await self.pool.aclose()
        await self.origin.aclose()

    def close(self) -> None:
        self.run(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def background() -> Iterator[_Background]:
    started = _Background()
    yield started
    started.close()


def _get(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"ok"):
        chunk = sock.recv(4096)
        assert chunk, "the good connection was closed"
        data += chunk
    return data


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(
        st.binary(max_size=600),
        st.lists(
            st.sampled_from(
                [
                    b"GET",
                    b"PUT",
                    b" ",
                    b"/",
                    b"HTTP/1.1",
                    b"\r\n",
                    b"Host: x",
                    b":",
                    b"\x00",
                    b"Content-Length: 5",
                    b"Transfer-Encoding: chunked",
                    b"0\r\n",
                    b"zz\r\n",
                    b"\r\n\r\n",
                    b"\n",
                    b"Connection: close",
                ]
            ),
            max_size=30,
        ).map(b"".join),
    )
)
def test_any_bytes_never_affect_a_kept_alive_connection(
    background: _Background, garbage: bytes
) -> None:
    port = background.listener.address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as good:
        assert b" 200 " in _get(good, "/before")
        with socket.create_connection(("127.0.0.1", port), timeout=30) as bad:
            bad.sendall(garbage)
            bad.shutdown(socket.SHUT_WR)
            while bad.recv(65536):
                pass
        assert b" 200 " in _get(good, "/after")


_TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VCHAR = st.characters(min_codepoint=0x21, max_codepoint=0x7E) | st.sampled_from(" \t")


@given(
    st.lists(
        st.tuples(
            st.text(_TCHAR, min_size=1, max_size=20),
            st.text(_VCHAR, max_size=40).map(lambda v: v.strip(" \t")),
        ),
        max_size=12,
    )
)
def test_valid_fields_are_parsed_exactly_as_sent(fields: list[tuple[str, str]]) -> None:
    fields = [(n, v) for n, v in fields if n.lower() not in ("content-length", "transfer-encoding")]
    raw = "GET /p HTTP/1.1\r\nHost: h\r\n" + "".join(f"{n}:  {v} \r\n" for n, v in fields)
    method, target, head = _parse_request((raw + "\r\n").encode())
    assert (method, target) == (b"GET", b"/p")
    assert head.fields == [(b"Host", b"h")] + [(n.encode(), v.encode()) for n, v in fields]


@given(st.binary(max_size=300))
def test_any_head_is_parsed_or_refused_with_a_status(raw: bytes) -> None:
    try:
        _parse_request(raw + b"\r\n\r\n")
    except ProxyRequestError as error:
        assert error.status in (400, 405, 431, 501, 505)


async def test_a_flood_of_idle_connections_stops_at_the_limit_and_the_good_one_is_served() -> None:
    """Connections beyond ``max_connections`` are reset at once; the ones inside it (and
    a kept-alive client among them) are served, and room comes back as the flood leaves."""
    limit = 12
    origin = await Origin().start()
    try:
        async with EndpointPool(f"static://{origin.host_port}") as pool:
            policy = HttpProxyPolicy(max_connections=limit, header_timeout=60.0)
            async with HttpListener(("127.0.0.1", 0), pool, policy=policy) as listener:
                port = listener.address[1]
                async with Client(port) as good:
                    assert (await good.request("GET", "/before")).status == 200
                    flood = [await _raw(port) for _ in range(limit - 1)]
                    await until(
                        lambda: listener.stats().active_connections == limit, what="flood in"
                    )
                    extra_reader, extra_writer = await _raw(port)
                    with pytest.raises(ConnectionResetError):  # reset at once
                        await asyncio.wait_for(extra_reader.read(), 30)
                    extra_writer.close()
                    assert (await good.request("GET", "/at-the-limit")).status == 200
                    for _, writer in flood:
                        writer.close()
                    await until(lambda: listener.stats().active_connections == 1, what="gone")
                    async with Client(port) as late:
                        assert (await late.request("GET", "/after")).status == 200
                    assert listener.stats().rejected_total == 1
    finally:
        await origin.aclose()
    assert [s.target for s in origin.seen] == ["/before", "/at-the-limit", "/after"]
