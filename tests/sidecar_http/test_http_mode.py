"""The sidecar's http mode against real loopback origins: relaying, keep-alive, retries,
streaming and the S3 classifier's node/cluster decision (through the fault proxy)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest
from upstream import Client, Origin, Reply, Seen

from mcresolve.pool import EndpointPool, PoolPolicy
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.sidecar.http_mode import ENDPOINT_HEADER, HttpListener, HttpProxyPolicy
from mcresolve.sidecar.listener import Listener
from mcresolve.testing.faultproxy import FaultMode, FaultProxy

POOL = PoolPolicy(call=CallPolicy(attempt_timeout=10.0, deadline=30.0, max_attempts=5))


@pytest.fixture
async def origins() -> AsyncIterator[list[Origin]]:
    started = [await Origin().start(), await Origin().start()]
    yield started
    for origin in started:
        await origin.aclose()


async def _listener(
    targets: list[str], policy: HttpProxyPolicy | None = None, pool_policy: PoolPolicy = POOL
) -> tuple[EndpointPool, HttpListener]:
    pool = EndpointPool("static://" + ",".join(targets), policy=pool_policy)
    await pool.start()
    listener = HttpListener(("127.0.0.1", 0), pool, policy=policy)
    await listener.start()
    return pool, listener


def _reset_first() -> tuple[list[int], object]:
    """A handler shared by origins: the first request anywhere is reset, the others answered."""
    count = [0]

    def handler(seen: Seen) -> Reply:
        count[0] += 1
        return Reply(reset=True) if count[0] == 1 else Reply(body=b"stored")

    return count, handler


async def test_is_a_listener(origins: list[Origin]) -> None:
    pool, listener = await _listener([origins[0].host_port])
    try:
        checked: Listener = listener
        assert checked.mode == "http"
        assert checked.address[1] > 0
    finally:
        await listener.aclose()
        await pool.aclose()


async def test_fields_relayed_as_sent_hop_by_hop_dropped_and_connections_reused(
    origins: list[Origin],
) -> None:
    origin = origins[0]
    pool, listener = await _listener([origin.host_port])
    signed = [
        ("Host", "bucket.storage.example:9000"),
        ("x-amz-date", "20261206T221500Z"),
        ("X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD"),
        ("Authorization", "AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=00"),
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "only for this hop"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
    ]
    try:
        for _ in range(2):  # two client connections, one after the other
            async with Client(listener.address[1]) as client:
                for _ in range(10):
                    answer = await client.request("GET", "/bucket/key?x=1&y=%2F", signed)
                    assert answer.status == 200 and answer.body == b"ok"
                    assert answer.header(ENDPOINT_HEADER) is None
        seen = origin.seen[-1]
        assert seen.target == "/bucket/key?x=1&y=%2F"
        assert seen.headers == [(k.encode(), v.encode()) for k, v in signed[:4]]
        assert origin.connections == 1, "the upstream connection is kept alive and reused"
        assert listener.upstream_connects == 1
        stats = listener.stats()
        assert stats.requests_total == 20 and stats.accepted_total == 2
        assert stats.failed_total == 0 and stats.retried_total == 0
    finally:
        await listener.aclose()
        await pool.aclose()


async def test_endpoint_header_only_when_asked(origins: list[Origin]) -> None:
    origin = origins[0]
    pool, listener = await _listener([origin.host_port])
    always = HttpListener(("127.0.0.1", 0), pool, policy=HttpProxyPolicy(report_endpoint=True))
    await always.start()
    try:
        async with Client(listener.address[1]) as client:
            plain = await client.request("GET", "/")
            asked = await client.request("GET", "/", [(ENDPOINT_HEADER, "1")])
        async with Client(always.address[1]) as client:
            policy = await client.request("GET", "/")
        assert plain.header(ENDPOINT_HEADER) is None
        assert asked.header(ENDPOINT_HEADER) == origin.host_port
        assert policy.header(ENDPOINT_HEADER) == origin.host_port
        assert origin.seen[1].header(ENDPOINT_HEADER) == "1", "the request field is relayed"
    finally:
        await always.aclose()
        await listener.aclose()
        await pool.aclose()


async def test_refused_endpoint_is_retried_elsewhere(
    origins: list[Origin], unused_tcp_port: int
) -> None:
    origin = origins[0]
    pool, listener = await _listener([f"127.0.0.1:{unused_tcp_port}", origin.host_port])
    try:
        async with Client(listener.address[1]) as client:
            for _ in range(8):
                answer = await client.request("POST", "/x", body=b"once")
                assert answer.status == 200
        assert len(origin.seen) == 8, "each request executed once"
        assert listener.stats().failed_total == 0
    finally:
        await listener.aclose()
        await pool.aclose()


async def test_replayable_put_is_sent_again_after_a_reset(origins: list[Origin]) -> None:
    _, handler = _reset_first()
    for origin in origins:
        origin.handler = handler  # type: ignore[assignment]
    pool, listener = await _listener([o.host_port for o in origins])
    body = bytes(range(256)) * 400
    try:
        async with Client(listener.address[1]) as client:
            answer = await client.request("PUT", "/bucket/object", body=body)
        assert answer.status == 200 and answer.body == b"stored"
        seen = [s for o in origins for s in o.seen]
        assert len(seen) == 2 and all(s.body == body for s in seen)
        assert seen[0].connection == seen[1].connection == 1
        assert listener.stats().retried_total == 1
    finally:
        await listener.aclose()
        await pool.aclose()


async def test_post_is_not_sent_again_after_a_reset(origins: list[Origin]) -> None:
    _, handler = _reset_first()
    for origin in origins:
        origin.handler = handler  # type: ignore[assignment]
    pool, listener = await _listener([o.host_port for o in origins])
    try:
        async with Client(listener.address[1]) as client:
            answer = await client.request("POST", "/bucket/object?uploads", body=b"x" * 100)
        assert answer.status == 502
        assert sum(len(o.seen) for o in origins) == 1
        assert listener.stats().failed_total == 1
    finally:
        await listener.aclose()
        await pool.aclose()


async def test_body_larger_than_the_buffer_streams_once_and_is_not_retried(
    origins: list[Origin],
) -> None:
    _, handler = _reset_first()
    for origin in origins:
        origin.handler = handler  # type: ignore[assignment]
    policy = HttpProxyPolicy(replay_buffer=64 * 1024)
    pool, listener = await _listener([o.host_port for o in origins], policy)
    try:
        async with Client(listener.address[1]) as client:
            answer = await client.request("PUT", "/big", body=b"z" * (1024 * 1024))
        assert answer.status == 502
        assert sum(len(o.seen) for o in origins) == 1
    finally:
        await listener.aclose()
        await pool.aclose()


@pytest.mark.parametrize("chunked", [False, True])
async def test_large_bodies_stream_with_memory_bounded_by_the_buffer(
    origins: list[Origin], chunked: bool
) -> None:
    size = 24 * 1024 * 1024
    download = hashlib.sha256(b"d" * size).hexdigest()
    origin = origins[0]
    origin.handler = lambda seen: Reply(  # type: ignore[assignment]
        body=b"d" * size if seen.method == "GET" else hashlib.sha256(seen.body).digest(),
        chunked=chunked,
    )
    buffer = 256 * 1024
    pool, listener = await _listener([origin.host_port], HttpProxyPolicy(replay_buffer=buffer))
    upload = bytes(range(256)) * (size // 256)
    try:
        async with Client(listener.address[1]) as client:
            if chunked:
                pieces = [upload[i : i + 1_000_000] for i in range(0, size, 1_000_000)]
                put = await client.request("PUT", "/big", chunks=pieces)
            else:
                put = await client.request("PUT", "/big", body=upload)
            got = await client.request("GET", "/big")
        assert put.status == 200 and put.body == hashlib.sha256(upload).digest()
        assert hashlib.sha256(got.body).hexdigest() == download
        # the buffer plus at most one read (64 KiB) beyond it, whatever the body's size
        assert listener.peak_buffered <= buffer + 64 * 1024
        assert listener.stats().bytes_out_total > size
    finally:
        await listener.aclose()
        await pool.aclose()


async def _proxied(origins: list[Origin]) -> list[FaultProxy]:
    return [await FaultProxy("127.0.0.1", o.port).start() for o in origins]


async def test_node_local_minio_code_retried_on_another_node(origins: list[Origin]) -> None:
    proxies = await _proxied(origins)
    proxies[0].answer_error("XMinioServerNotInitialized")
    pool, listener = await _listener([p.address for p in proxies])
    try:
        async with Client(listener.address[1]) as client:
            for _ in range(6):
                answer = await client.request("GET", "/bucket/key", [(ENDPOINT_HEADER, "1")])
                assert answer.status == 200
                assert answer.header(ENDPOINT_HEADER) == proxies[1].address
        assert len(origins[1].seen) == 6 and not origins[0].seen
    finally:
        await listener.aclose()
        await pool.aclose()
        for proxy in proxies:
            await proxy.aclose()


async def test_confirmed_quorum_loss_is_passed_to_the_client_as_is(
    origins: list[Origin],
) -> None:
    proxies = await _proxied(origins)
    for proxy in proxies:
        proxy.answer_error("XMinioReadQuorum", retry_after=60)
    pool, listener = await _listener([p.address for p in proxies])
    try:
        async with Client(listener.address[1]) as client:
            answer = await client.request("GET", "/bucket/key")
            again = await client.request("GET", "/bucket/key")
        assert answer.status == 503 and b"<Code>XMinioReadQuorum</Code>" in answer.body
        assert answer.header("Retry-After") == "60"
        assert again.status == 503
        # one node's view, confirmed by the second: two attempts per request, no wait
        reached = sum(p.stats.requests[FaultMode.ERROR] for p in proxies)
        assert reached == 4
        assert not pool.snapshot().by_state("ejected"), "a cluster answer ejects no node"
    finally:
        await listener.aclose()
        await pool.aclose()
        for proxy in proxies:
            await proxy.aclose()


async def test_server_error_on_a_put_is_replayed_and_head_errors_have_no_body(
    origins: list[Origin],
) -> None:
    proxies = await _proxied(origins)
    proxies[0].answer_error("InternalError")
    pool, listener = await _listener([p.address for p in proxies])
    try:
        async with Client(listener.address[1]) as client:
            for _ in range(4):
                answer = await client.request("PUT", "/bucket/key", body=b"v")
                assert answer.status == 200
            proxies[1].answer_error("InternalError")
            head = await client.request("HEAD", "/bucket/key")
        assert head.status == 500 and head.body == b""
        assert origins[1].seen and all(s.body == b"v" for s in origins[1].seen)
    finally:
        await listener.aclose()
        await pool.aclose()
        for proxy in proxies:
            await proxy.aclose()


async def test_hedged_read_answers_from_the_faster_node(origins: list[Origin]) -> None:
    slow = asyncio.Event()

    async def stall(seen: Seen) -> Reply:
        await slow.wait()
        return Reply(body=b"slow")

    origins[0].handler = stall  # type: ignore[assignment]
    origins[1].handler = lambda seen: Reply(body=b"fast")  # type: ignore[assignment]
    hedged = PoolPolicy(call=CallPolicy(attempt_timeout=30.0, deadline=60.0, hedge_delay=0.05))
    pool, listener = await _listener([o.host_port for o in origins], pool_policy=hedged)
    try:
        async with Client(listener.address[1]) as client:
            for _ in range(4):
                answer = await client.request("GET", "/k")
                assert answer.body == b"fast"
    finally:
        slow.set()
        await listener.aclose()
        await pool.aclose()


async def test_drain_finishes_the_request_in_flight_and_refuses_new_ones(
    origins: list[Origin],
) -> None:
    release = asyncio.Event()
    arrived = asyncio.Event()

    async def hold(seen: Seen) -> Reply:
        arrived.set()
        await release.wait()
        return Reply(body=b"finished")

    origins[0].handler = hold  # type: ignore[assignment]
    pool, listener = await _listener([origins[0].host_port])
    port = listener.address[1]
    try:
        async with Client(port) as idle, Client(port) as busy:
            release.set()
            assert (await idle.request("GET", "/warm")).status == 200
            release.clear()
            arrived.clear()
            in_flight = asyncio.create_task(busy.request("GET", "/slow"))
            await arrived.wait()
            draining = asyncio.create_task(listener.drain(grace=60.0))
            await asyncio.sleep(0)
            with pytest.raises(OSError):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                if not await reader.read():
                    raise ConnectionResetError("closed without an answer")
            release.set()
            answer = await in_flight
            await draining
        assert answer.status == 200 and answer.body == b"finished"
        assert answer.header("Connection") == "close"
        assert listener.stats().active_connections == 0
    finally:
        release.set()
        await listener.aclose()
        await pool.aclose()


async def test_kept_alive_connection_closed_by_the_endpoint_costs_nothing(
    origins: list[Origin],
) -> None:
    origin = origins[0]
    origin.close_after_reply = True
    pool, listener = await _listener([origin.host_port])
    try:
        async with Client(listener.address[1]) as client:
            for _ in range(10):
                assert (await client.request("GET", "/k")).status == 200
        assert len(origin.seen) == 10
        assert listener.stats().failed_total == 0
        assert not pool.snapshot().by_state("ejected")
    finally:
        await listener.aclose()
        await pool.aclose()


async def test_request_that_cannot_be_replayed_takes_a_fresh_connection(
    origins: list[Origin],
) -> None:
    origin = origins[0]
    pool, listener = await _listener([origin.host_port])
    try:
        async with Client(listener.address[1]) as client:
            for _ in range(3):
                assert (await client.request("GET", "/k")).status == 200
            for _ in range(3):
                assert (await client.request("POST", "/k?uploads", body=b"x")).status == 200
        assert origin.connections == 1 + 3
    finally:
        await listener.aclose()
        await pool.aclose()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await reader.readexactly(length)


async def test_expect_100_continue_is_answered_and_relayed(origins: list[Origin]) -> None:
    origin = origins[0]
    pool, listener = await _listener([origin.host_port])
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.address[1])
        writer.write(
            b"PUT /o HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        interim = await reader.readuntil(b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        head, body = await _read_answer(reader)
        writer.close()
        assert head.startswith(b"HTTP/1.1 200") and body == b"ok"
        assert origin.seen[0].body == b"hello"
        assert origin.seen[0].header("Expect") == "100-continue"
    finally:
        await listener.aclose()
        await pool.aclose()


async def test_chunked_request_framing_is_relayed_as_sent() -> None:
    got: list[bytes] = []

    async def capture(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append(await reader.readuntil(b"0\r\nX-Trailer: t\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    raw_origin = await asyncio.start_server(capture, "127.0.0.1", 0)
    port = raw_origin.sockets[0].getsockname()[1]
    pool, listener = await _listener([f"127.0.0.1:{port}"])
    framed = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.address[1])
        writer.write(
            b"PUT /o HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trailer\r\n"
            b"\r\n" + framed
        )
        head, _ = await _read_answer(reader)
        writer.close()
        assert head.startswith(b"HTTP/1.1 200")
        assert got[0].endswith(b"\r\n\r\n" + framed)
        assert b"\r\nTrailer: X-Trailer\r\n" in got[0]
    finally:
        await listener.aclose()
        await pool.aclose()
        raw_origin.close()


async def test_http_1_0_client_is_answered_and_closed(origins: list[Origin]) -> None:
    pool, listener = await _listener([origins[0].host_port])
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.address[1])
        writer.write(b"GET /old HTTP/1.0\r\nHost: h\r\n\r\n")
        head, body = await _read_answer(reader)
        assert head.startswith(b"HTTP/1.0 200") and b"\r\nConnection: close\r\n" in head
        assert body == b"ok" and await reader.read() == b""
        writer.close()
    finally:
        await listener.aclose()
        await pool.aclose()


async def test_nothing_is_retried_once_response_bytes_reached_the_client() -> None:
    requests: list[bytes] = []

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 70000)
        await writer.drain()
        writer.transport.abort()

    servers = [await asyncio.start_server(cut, "127.0.0.1", 0) for _ in range(2)]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    pool, listener = await _listener([f"127.0.0.1:{p}" for p in ports])
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.address[1])
        writer.write(b"GET /object HTTP/1.1\r\nHost: h\r\n\r\n")
        received = await asyncio.wait_for(reader.read(-1), 30)
        writer.close()
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert len(received) < 100000, "the client connection is cut, not completed elsewhere"
        assert len(requests) == 1
        assert listener.stats().retried_total == 0 and listener.stats().failed_total == 1
    finally:
        await listener.aclose()
        await pool.aclose()
        for server in servers:
            server.close()
