"""A scriptable HTTP/1.1 origin on loopback for the sidecar's http-mode tests, parsed with h11
(an independent parser: what the proxy sends must be valid HTTP/1.1 to it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h11


@dataclass
class Seen:
    """One request as the origin received it."""

    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    connection: int

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.decode().lower() == name.lower():
                return value.decode()
        return None


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b"ok"
    reset: bool = False
    """Reset the connection instead of answering (after reading the request)."""
    chunked: bool = False


Handler = Callable[[Seen], Reply | Awaitable[Reply]]


@dataclass
class Origin:
    handler: Handler = field(default=lambda seen: Reply())
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    received_bytes: int = 0
    server: asyncio.Server | None = None
    port: int = 0
    read_size: int = 65536
    close_after_reply: bool = False
    """Close each connection right after its answer without saying so (an idle-timeout
    close racing the next request)."""
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> Origin:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.add(writer)
        number = self.connections
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request: h11.Request | None = None
                body = bytearray()
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await reader.read(self.read_size)
                        self.received_bytes += len(data)
                        conn.receive_data(data)
                        if not data and conn.their_state is not h11.DONE:
                            return
                        continue
                    if isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
                        return
                assert request is not None
                seen = Seen(
                    request.method.decode(),
                    request.target.decode(),
                    list(request.headers.raw_items()),
                    bytes(body),
                    number,
                )
                self.seen.append(seen)
                reply = self.handler(seen)
                if not isinstance(reply, Reply):
                    reply = await reply
                if reply.reset:
                    transport = writer.transport
                    sock = transport.get_extra_info("socket")
                    if sock is not None:
                        import socket
                        import struct

                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                    transport.abort()
                    return
                headers = list(reply.headers)
                if reply.chunked:
                    headers.append(("Transfer-Encoding", "chunked"))
                else:
                    headers.append(("Content-Length", str(len(reply.body))))
                out = conn.send(h11.Response(status_code=reply.status, headers=headers))
                if reply.body and request.method != b"HEAD":
                    out += conn.send(h11.Data(data=reply.body))
                out += conn.send(h11.EndOfMessage())
                writer.write(out)
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE or self.close_after_reply:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.CancelledError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.decode().lower() == name.lower():
                return value.decode()
        return None


class Client:
    """One kept-alive client connection (h11) to the proxy."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = h11.Connection(h11.CLIENT)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Client:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        *,
        chunks: list[bytes] | None = None,
    ) -> Answer:
        assert self.reader is not None and self.writer is not None
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        sent = (
            [("Host", "origin.example")]
            if not any(k.lower() == "host" for k, _ in headers or [])
            else []
        )
        sent += headers or []
        if chunks is not None:
            sent.append(("Transfer-Encoding", "chunked"))
        elif body or method in ("PUT", "POST"):
            sent.append(("Content-Length", str(len(body))))
        out = self.conn.send(h11.Request(method=method, target=target, headers=sent))
        for piece in chunks if chunks is not None else ([body] if body else []):
            out += self.conn.send(h11.Data(data=piece))
        out += self.conn.send(h11.EndOfMessage())
        self.writer.write(out)
        await self.writer.drain()
        response: h11.Response | None = None
        data = bytearray()
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.reader.read(65536))
                continue
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                data += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("proxy closed the connection")
        assert response is not None
        return Answer(response.status_code, list(response.headers.raw_items()), bytes(data))
