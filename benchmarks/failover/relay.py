"""Counting relays between one benchmark peer and one Consul agent (HTTP and DNS).

The Consul emulator does not count requests, so every peer reaches Consul through its own
relays and the benchmark reads "requests sent to Consul" from them: HTTP requests (parsed
request heads, keep-alive aware) and DNS queries (UDP datagrams, TCP messages). A relay follows
its agent: :meth:`stop` closes its listener and cuts open connections (the peer sees a refused
connection, as with a dead agent), :meth:`start` listens again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

__all__ = ["ConsulRelays", "DnsUdpRelay", "RelayCounts", "TcpRelay"]

LOOPBACK = "127.0.0.1"
_MAX_HEAD = 64 * 1024

Framer = Callable[[asyncio.StreamReader], Awaitable[tuple[bytes, str] | None]]
"""Reads one whole request from the client: ``(raw bytes, label)``, ``None`` at EOF."""


async def read_http_request(reader: asyncio.StreamReader) -> tuple[bytes, str] | None:
    """One HTTP/1.1 request (head and Content-Length or chunked body); label = its path."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as exc:
        raise ConnectionError("request head too large") from exc
    lines = head.split(b"\r\n")
    parts = lines[0].split()
    path = parts[1].decode("latin-1").split("?", 1)[0] if len(parts) >= 2 else "?"
    length = 0
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value.strip() or b"0")
        elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    body = b""
    if chunked:
        chunks = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            chunks += size_line
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            chunks += await reader.readexactly(size + 2)
            if size == 0:
                break
        body = bytes(chunks)
    elif length:
        body = await reader.readexactly(length)
    return head + body, path


async def read_dns_tcp_message(reader: asyncio.StreamReader) -> tuple[bytes, str] | None:
    """One length-prefixed DNS message (RFC 1035 4.2.2)."""
    try:
        prefix = await reader.readexactly(2)
        message = await reader.readexactly(int.from_bytes(prefix, "big"))
    except asyncio.IncompleteReadError:
        return None
    return prefix + message, "dns-tcp"


@dataclass
class RelayCounts:
    """Requests relayed, by label (HTTP path, ``dns-udp`` or ``dns-tcp``)."""

    by_label: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        """Every request relayed."""
        return sum(self.by_label.values())


class TcpRelay:
    """A TCP relay to ``upstream_port`` that counts the requests ``framer`` reads."""

    def __init__(self, upstream_port: int, framer: Framer, counts: RelayCounts) -> None:
        self.upstream_port = upstream_port
        self._framer = framer
        self._counts = counts
        self._server: asyncio.Server | None = None
        self._port = 0
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        """The relay's listening port (fixed after the first start)."""
        return self._port

    async def start(self) -> None:
        """Listen (again) on the relay's port."""
        if self._server is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, self._port))
        self._port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._handle, sock=sock, limit=_MAX_HEAD)

    async def stop(self) -> None:
        """Stop listening and cut every open connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()
        self._writers.clear()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream_writer: asyncio.StreamWriter | None = None
        pump: asyncio.Task[None] | None = None
        try:
            try:
                up_reader, upstream_writer = await asyncio.open_connection(
                    LOOPBACK, self.upstream_port
                )
            except OSError:
                return
            pump = asyncio.create_task(_pipe(up_reader, writer))
            while True:
                request = await self._framer(reader)
                if request is None:
                    break
                raw, label = request
                self._counts.by_label[label] += 1
                upstream_writer.write(raw)
                await upstream_writer.drain()
            upstream_writer.write_eof()
            await pump
        except (OSError, asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            if pump is not None:
                pump.cancel()
            for w in (upstream_writer, writer):
                if w is not None:
                    w.close()
            self._writers.discard(writer)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


class _UdpForward(asyncio.DatagramProtocol):
    def __init__(self, reply: Callable[[bytes], None]) -> None:
        self._reply = reply
        self.transport: asyncio.DatagramTransport | None = None
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._reply(data)
        if not self.done.done():
            self.done.set_result(None)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_result(None)


class _UdpListen(asyncio.DatagramProtocol):
    def __init__(self, relay: DnsUdpRelay) -> None:
        self._relay = relay
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._relay.forward(data, addr)


class DnsUdpRelay:
    """A UDP relay for DNS queries to ``upstream_port`` that counts datagrams."""

    def __init__(self, upstream_port: int, counts: RelayCounts, *, timeout: float = 5.0) -> None:
        self.upstream_port = upstream_port
        self._counts = counts
        self._timeout = timeout
        self._port = 0
        self._listen: _UdpListen | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The relay's UDP port (fixed after the first start)."""
        return self._port

    async def start(self) -> None:
        """Listen (again) on the relay's port."""
        if self._listen is not None:
            return
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOOPBACK, self._port))
        self._port = sock.getsockname()[1]
        _, protocol = await loop.create_datagram_endpoint(lambda: _UdpListen(self), sock=sock)
        self._listen = protocol

    async def stop(self) -> None:
        """Stop listening (queries get ICMP port unreachable, like a dead agent)."""
        listen, self._listen = self._listen, None
        if listen is not None and listen.transport is not None:
            listen.transport.close()
        for task in list(self._tasks):
            task.cancel()

    def forward(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._counts.by_label["dns-udp"] += 1
        task = asyncio.get_running_loop().create_task(self._forward(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, data: bytes, addr: tuple[str | object, int]) -> None:
        listen = self._listen

        def reply(answer: bytes) -> None:
            if listen is not None and listen.transport is not None:
                listen.transport.sendto(answer, addr)

        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _UdpForward(reply), remote_addr=(LOOPBACK, self.upstream_port)
        )
        try:
            transport.sendto(data)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(protocol.done, self._timeout)
        finally:
            transport.close()


class ConsulRelays:
    """One peer's relays to one Consul agent: HTTP, DNS over UDP and DNS over TCP.

    The DNS relays share one port number (UDP and TCP), as Consul's DNS interface does.
    """

    def __init__(self, http_port: int, dns_port: int) -> None:
        self.counts = RelayCounts()
        self.http = TcpRelay(http_port, read_http_request, self.counts)
        self._dns_udp = DnsUdpRelay(dns_port, self.counts)
        self._dns_tcp = TcpRelay(dns_port, read_dns_tcp_message, self.counts)

    @property
    def http_address(self) -> str:
        """``127.0.0.1:<port>`` of the HTTP relay."""
        return f"{LOOPBACK}:{self.http.port}"

    @property
    def dns_address(self) -> str:
        """``127.0.0.1:<port>`` of the DNS relay (UDP and TCP)."""
        return f"{LOOPBACK}:{self._dns_udp.port}"

    async def start(self) -> None:
        """Listen on the HTTP port and on one port for DNS over UDP and TCP."""
        await self.http.start()
        for _ in range(20):
            await self._dns_udp.start()
            try:
                self._dns_tcp._port = self._dns_udp.port
                await self._dns_tcp.start()
                return
            except OSError:  # the TCP side of that port is taken: pick another pair
                await self._dns_udp.stop()
                self._dns_udp._port = 0
                self._dns_tcp._port = 0
        raise OSError("no free UDP+TCP port pair for the DNS relay")

    async def stop(self) -> None:
        """Stop every listener and cut open connections (the agent is gone)."""
        await self.http.stop()
        await self._dns_udp.stop()
        await self._dns_tcp.stop()

    async def restart(self) -> None:
        """Listen again on the same ports (the agent is back)."""
        await self.http.start()
        await self._dns_udp.start()
        await self._dns_tcp.start()
