"""Loopback upstream servers with one behaviour each, for the sidecar's tcp-mode tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from mcresolve import EndpointPool
from mcresolve.sidecar import TcpListener, TcpProxyPolicy

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Upstream:
    """A loopback server: ``connections`` accepted, ``received`` bytes per connection."""

    handler: Handler
    connections: int = 0
    received: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await self.handler(reader, writer)
        writer.close()


@contextlib.asynccontextmanager
async def upstream(handler: Handler) -> AsyncIterator[Upstream]:
    up = Upstream(handler)
    up.server = await asyncio.start_server(up._serve, "127.0.0.1", 0)
    try:
        yield up
    finally:
        up.server.close()


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """A test request: bytes up to and including a newline."""
    return await reader.readuntil(b"\n")


def answering(prefix: bytes = b"ok:") -> Callable[[Upstream], Handler]:
    """Reads newline-terminated requests, answers ``prefix + request`` to each, until EOF."""

    def make(up: Upstream) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    request = await read_request(reader)
                except asyncio.IncompleteReadError as eof:
                    up.received.append(eof.partial)
                    return
                up.received.append(request)
                writer.write(prefix + request)
                await writer.drain()

        return handle

    return make


@contextlib.asynccontextmanager
async def serving(make: Callable[[Upstream], Handler]) -> AsyncIterator[Upstream]:
    """An upstream whose handler can see its own :class:`Upstream` (to record)."""
    holder: list[Upstream] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await make(holder[0])(reader, writer)

    async with upstream(handler) as up:
        holder.append(up)
        yield up


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def through(
    *endpoints: str, policy: TcpProxyPolicy | None = None, seed: int = 7
) -> AsyncIterator[TcpListener]:
    """A started tcp listener on a free loopback port over a static pool of ``endpoints``."""
    import random

    pool = EndpointPool("static://" + ",".join(endpoints), rng=random.Random(seed))
    async with pool:
        listener = TcpListener(("127.0.0.1", 0), pool, policy=policy)
        await listener.start()
        try:
            yield listener
        finally:
            await listener.aclose()


async def connect(listener: TcpListener) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*listener.address)


async def exchange(listener: TcpListener, request: bytes) -> bytes:
    """Send ``request``, half-close, read everything back."""
    reader, writer = await connect(listener)
    try:
        writer.write(request)
        await writer.drain()
        writer.write_eof()
        return await reader.read()
    finally:
        writer.close()
