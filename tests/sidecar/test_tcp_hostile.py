"""Hostile clients never affect other connections (tcp mode, real loopback sockets), and the
sidecar is byte-transparent whatever the bytes and their chunking."""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sidecar_upstreams import connect, reset, through, upstream

from mcresolve.sidecar import TcpProxyPolicy
from support import until


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.write_eof()


async def _round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> None:
    writer.write(data)
    await writer.drain()
    assert await reader.readexactly(len(data)) == data


async def test_garbage_stalls_aborts_and_an_idle_flood_leave_a_good_connection_alone() -> None:
    limit = 24
    policy = TcpProxyPolicy(max_connections=limit)
    async with upstream(echo) as up, through(up.endpoint, policy=policy) as listener:
        good = await connect(listener)
        await _round_trip(*good, b"before\n")

        # Garbage, then a reset in the middle of it.
        garbage = [await connect(listener) for _ in range(3)]
        for _, writer in garbage:
            writer.write(os.urandom(50_000))
        for _, writer in garbage:
            reset(writer)
        # A client that stalls mid-send and one that disconnects mid-body.
        stalled = await connect(listener)
        stalled[1].write(b"PUT /obj HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
        quitter = await connect(listener)
        quitter[1].write(b"PUT /obj HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n" + b"y" * 5000)
        await quitter[1].drain()
        quitter[1].close()
        await _round_trip(*good, b"during\n")

        # A flood of idle connections up to the limit: one more is reset, the rest wait.
        await until(lambda: listener.stats().active_connections == 2, what="garbage gone")
        flood = [await connect(listener) for _ in range(limit - 2)]
        await until(lambda: listener.stats().active_connections == limit, what="flood in")
        extra_reader, extra_writer = await connect(listener)
        with pytest.raises(ConnectionResetError):  # reset at once, as documented
            await extra_reader.read()
        extra_writer.close()
        await _round_trip(*good, b"at the limit\n")
        for _, writer in flood:
            writer.close()
        stalled[1].close()
        await until(lambda: listener.stats().active_connections == 1, what="flood gone")
        late = await connect(listener)
        await _round_trip(*late, b"after\n")
        await _round_trip(*good, b"still\n")
        late[1].close()
        good[1].close()
        assert listener.stats().rejected_total == 1


@settings(max_examples=25, deadline=None)
@given(chunks=st.lists(st.binary(min_size=1, max_size=40_000), min_size=1, max_size=8))
def test_any_bytes_in_any_chunks_come_back_unchanged(chunks: list[bytes]) -> None:
    async def run() -> bytes:
        async with upstream(echo) as up, through(up.endpoint) as listener:
            reader, writer = await connect(listener)
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
            writer.write_eof()
            received = await reader.read()
            writer.close()
            return received

    assert asyncio.run(run()) == b"".join(chunks)
