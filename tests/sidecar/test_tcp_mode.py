"""tcp mode on real loopback sockets: forwarding, retries before the first byte, no replay after
it, half-close, backpressure, idle timeout, the connection limit, drain."""

from __future__ import annotations

import asyncio

import pytest
from sidecar_upstreams import (
    answering,
    closed_port,
    connect,
    exchange,
    read_request,
    reset,
    serving,
    through,
    upstream,
)

from mcresolve.sidecar import TcpProxyPolicy
from support import until


async def test_a_connection_is_forwarded_both_ways_with_half_close() -> None:
    async with serving(answering()) as up, through(up.endpoint) as listener:
        answer = await exchange(listener, b"one\ntwo\n")
    # The upstream saw both requests, then the client's EOF (an empty partial), and answered
    # both before closing: half-close forwarded in both directions.
    assert answer == b"ok:one\nok:two\n"
    assert up.received == [b"one\n", b"two\n", b""]
    stats = listener.stats()
    assert stats.requests_total == 1 and stats.bytes_in_total == 8
    assert stats.bytes_out_total == len(answer)


async def test_refused_endpoints_are_retried_and_ejected() -> None:
    dead = [f"127.0.0.1:{closed_port()}" for _ in range(3)]
    async with serving(answering()) as up, through(*dead, up.endpoint) as listener:
        answers = [await exchange(listener, f"r{i}\n".encode()) for i in range(6)]
        snapshot = listener.pool.snapshot()
    assert answers == [f"ok:r{i}\n".encode() for i in range(6)]
    ejected = {s.endpoint.host_port for s in snapshot.endpoints if s.state == "ejected"}
    assert ejected and ejected <= set(dead)
    assert listener.stats().retried_total >= 1
    assert listener.stats().failed_total == 0


async def test_a_reset_before_the_first_byte_replays_the_request_elsewhere() -> None:
    async def read_then_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        reset(writer)

    async with (
        upstream(read_then_reset) as bad,
        serving(answering()) as good,
        through(bad.endpoint, good.endpoint, seed=1) as listener,
    ):
        answers = [await exchange(listener, b"GET /x\n") for _ in range(4)]
    assert answers == [b"ok:GET /x\n"] * 4
    assert bad.connections >= 1  # the resetting node was tried...
    # ...and the good node got each request exactly once, complete (the replay).
    assert good.received.count(b"GET /x\n") == 4


async def test_a_close_before_the_first_byte_is_retried() -> None:
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with (
        upstream(close_at_once) as bad,
        serving(answering()) as good,
        through(bad.endpoint, good.endpoint, seed=1) as listener,
    ):
        answers = [await exchange(listener, b"q\n") for _ in range(4)]
    assert answers == [b"ok:q\n"] * 4
    assert bad.connections >= 1


async def test_nothing_is_replayed_once_upstream_bytes_reached_the_client() -> None:
    async def half_answer_then_reset(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(b"partial")
        await writer.drain()
        await asyncio.sleep(0.05)
        reset(writer)

    async with (
        upstream(half_answer_then_reset) as bad,
        serving(answering()) as good,
        through(bad.endpoint, policy=TcpProxyPolicy()) as listener,
    ):
        reader, writer = await connect(listener)
        writer.write(b"req\n")
        got = b""
        while chunk := await _read_or_empty(reader):  # "partial", then the reset passed on
            got += chunk
        writer.close()
    assert got == b"partial"
    assert good.connections == 0 and bad.connections == 1


async def _read_or_empty(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read(65536)
    except ConnectionError:
        return b""


async def test_a_request_larger_than_the_replay_limit_is_not_retried() -> None:
    async def read_all_then_reset(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readexactly(1000)
        reset(writer)

    policy = TcpProxyPolicy(replay_limit=100)
    async with (
        upstream(read_all_then_reset) as bad,
        serving(answering()) as good,
        through(bad.endpoint, good.endpoint, policy=policy, seed=3) as listener,
    ):
        # Through the good node first and only then the resetting one is not guaranteed by a
        # pick, so send until the resetting node took one.
        while bad.connections == 0:
            reader, writer = await connect(listener)
            writer.write(b"x" * 999 + b"\n")
            answer = await _read_or_empty(reader)
            writer.close()
            if bad.connections:
                assert answer == b""
    # The good node never saw the large request that hit the resetting one: no replay.
    assert len(good.received) == listener.stats().requests_total - 1


async def test_no_first_byte_in_time_moves_to_another_endpoint() -> None:
    hung = asyncio.Event()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        hung.set()
        await reader.read()

    policy = TcpProxyPolicy(first_byte_timeout=1.0)  # room for a loaded machine
    async with (
        upstream(swallow) as bad,
        serving(answering()) as good,
        through(bad.endpoint, good.endpoint, policy=policy, seed=1) as listener,
    ):
        answers = []
        for _ in range(3):  # no half-close: a client EOF would end the exchange as it is
            reader, writer = await connect(listener)
            writer.write(b"slow?\n")
            answers.append(await reader.readuntil(b"\n"))
            writer.close()
        snapshot = listener.pool.snapshot()
        bad_endpoint = bad.endpoint
    assert answers == [b"ok:slow?\n"] * 3
    assert hung.is_set()
    ejected = {s.endpoint.host_port for s in snapshot.endpoints if s.state == "ejected"}
    assert ejected == {bad_endpoint}


async def test_a_server_that_speaks_first_is_forwarded_without_client_bytes() -> None:
    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hello\r\n")
        await writer.drain()
        await reader.read()

    async with upstream(banner) as up, through(up.endpoint) as listener:
        reader, writer = await connect(listener)
        assert await reader.readuntil(b"\r\n") == b"220 hello\r\n"
        writer.close()


async def test_silent_connections_are_committed_and_still_work() -> None:
    policy = TcpProxyPolicy(first_byte_timeout=0.05)
    async with serving(answering()) as up, through(up.endpoint, policy=policy) as listener:
        reader, writer = await connect(listener)
        await until(lambda: listener.stats().requests_total == 1, what="silent commit")
        writer.write(b"late\n")
        assert await reader.readuntil(b"\n") == b"ok:late\n"
        writer.close()


async def test_an_idle_connection_is_closed_after_the_idle_timeout() -> None:
    policy = TcpProxyPolicy(idle_timeout=0.2)
    async with serving(answering()) as up, through(up.endpoint, policy=policy) as listener:
        reader, writer = await connect(listener)
        writer.write(b"a\n")
        assert await reader.readuntil(b"\n") == b"ok:a\n"
        assert await _read_or_empty(reader) == b""  # closed by the sidecar, nothing sent
        writer.close()
        await until(lambda: listener.stats().active_connections == 0, what="closed")


async def test_a_client_that_does_not_read_holds_back_the_upstream() -> None:
    total = 64 * 1024 * 1024
    sent = 0

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        chunk = b"z" * 65536
        while sent < total:
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
        writer.write_eof()
        await reader.read()

    async with upstream(flood) as up, through(up.endpoint) as listener:
        reader, writer = await connect(listener)
        assert await reader.readexactly(1) == b"z"
        previous = -1
        while sent != previous:  # until the upstream is blocked by backpressure
            previous = sent
            await asyncio.sleep(0.2)
        # Socket buffers on both sides plus one chunk: far less than what the upstream has.
        assert sent < total // 2
        rest = await _read_all(reader)
        writer.close()
    assert 1 + len(rest) == total


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while chunk := await reader.read(1 << 20):
        parts.append(chunk)
    return b"".join(parts)


async def test_the_connection_limit_resets_one_more_and_keeps_the_others() -> None:
    policy = TcpProxyPolicy(max_connections=2)
    async with serving(answering()) as up, through(up.endpoint, policy=policy) as listener:
        kept = [await connect(listener) for _ in range(2)]
        await until(lambda: listener.stats().active_connections == 2, what="two active")
        reader, writer = await connect(listener)
        assert await _read_or_empty(reader) == b""  # reset at once
        writer.close()
        assert listener.stats().rejected_total == 1
        for i, (r, w) in enumerate(kept):
            w.write(f"k{i}\n".encode())
            assert await r.readuntil(b"\n") == f"ok:k{i}\n".encode()
            w.close()
        await until(lambda: listener.stats().active_connections == 0, what="closed")
        assert await exchange(listener, b"after\n") == b"ok:after\n"


async def test_when_no_endpoint_answers_the_client_connection_is_closed() -> None:
    policy = TcpProxyPolicy(establish_deadline=0.3)
    async with through(f"127.0.0.1:{closed_port()}", policy=policy) as listener:
        assert await exchange(listener, b"anyone?\n") == b""
        await until(lambda: listener.stats().failed_total == 1, what="failed")


async def test_drain_lets_a_connection_finish_and_refuses_new_ones() -> None:
    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"started\n")
        await writer.drain()
        await release.wait()
        writer.write(b"done\n")
        await writer.drain()

    async with upstream(slow) as up, through(up.endpoint) as listener:
        reader, writer = await connect(listener)
        writer.write(b"go\n")
        assert await reader.readuntil(b"\n") == b"started\n"
        draining = asyncio.ensure_future(listener.drain(grace=60))
        await asyncio.sleep(0)
        with pytest.raises(OSError):
            await asyncio.open_connection(*listener.address)
        assert not draining.done()
        release.set()
        assert await reader.readuntil(b"\n") == b"done\n"
        writer.close()  # the client closes its side: the connection is over, drain ends
        await draining
        assert listener.stats().active_connections == 0


async def test_drain_cuts_what_outlives_the_grace() -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hi\n")
        await writer.drain()
        await asyncio.Event().wait()

    async with upstream(never) as up, through(up.endpoint) as listener:
        reader, writer = await connect(listener)
        assert await reader.readuntil(b"\n") == b"hi\n"
        await listener.drain(grace=0.05)
        assert await _read_or_empty(reader) == b""
        assert listener.stats().active_connections == 0
        writer.close()
