"""Loopback servers whose answers a test sets: a Consul HTTP agent (health and prepared-query
execute) and a DNS server (UDP and TCP on one port).

Both answer whatever the test put in place, however hostile: that is the point. They are
deliberately simple: the Consul one blocks a health request only while the requested index
equals its current one (and answers at once otherwise), so a test can always move a watch on
by changing the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.IN.SRV
from aiohttp import web

#: How long the scripted agent holds a blocking request at most (the client's wait is longer:
#: an answer after this is an ordinary "nothing changed" wake-up).
HOLD = 1.0


@dataclass
class HttpAnswer:
    """One scripted HTTP answer."""

    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: Send the headers and half the body, then nothing until the next answer is set.
    stall: bool = False


class ScriptedConsul:
    """``/v1/health/service/<any>`` and ``/v1/query/<any>/execute`` answering what the test set.

    :meth:`set_health` changes the health answer and its ``X-Consul-Index`` (unless the answer
    sets that header itself) and wakes the requests blocked on the old one.
    """

    def __init__(self) -> None:
        self.health = HttpAnswer(b"[]")
        self.query = HttpAnswer(b"{}")
        self.index = 1
        self.health_requests = 0
        self.query_requests = 0
        self.stalled = 0
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        #: Set each time a health or query answer is sent (tests await it).
        self.served = asyncio.Event()

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/v1/health/service/{name}", self._health)
        app.router.add_get("/v1/query/{name}/execute", self._query)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def set_health(self, answer: HttpAnswer) -> None:
        self.index += 1
        self.health = answer
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def _health(self, request: web.Request) -> web.Response:
        self.health_requests += 1
        try:
            asked = int(request.query.get("index", "0"))
        except ValueError:
            asked = 0
        if asked and asked == self.index:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HOLD):
                    await self._changed.wait()
        answer = self.health
        headers = {"X-Consul-Index": str(self.index), "Content-Type": "application/json"}
        headers.update(answer.headers)  # "" for X-Consul-Index reads as a missing header
        if answer.stall:
            return await self._stall(request, answer, headers)
        self._mark_served()
        return web.Response(body=answer.body, status=answer.status, headers=headers)

    async def _stall(
        self, request: web.Request, answer: HttpAnswer, headers: dict[str, str]
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=answer.status, headers=headers)
        response.content_length = len(answer.body)
        await response.prepare(request)
        await response.write(answer.body[: len(answer.body) // 2])
        self.stalled += 1
        self._mark_served()
        changed = self._changed
        await changed.wait()  # the client gives up (closing the connection) long before
        return response

    async def _query(self, request: web.Request) -> web.Response:
        self.query_requests += 1
        answer = self.query
        headers = {"X-Consul-Index": "0", "Content-Type": "application/json"}
        headers.update(answer.headers)
        self._mark_served()
        return web.Response(body=answer.body, status=answer.status, headers=headers)

    def _mark_served(self) -> None:
        event, self.served = self.served, asyncio.Event()
        event.set()


#: Builds the wire answer to a query (``None``: send nothing).
DnsHandler = Callable[[dns.message.Message, str], bytes | None]


def servfail(query: dns.message.Message, _transport: str) -> bytes:
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.SERVFAIL)
    return response.to_wire()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: ScriptedDns) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        answer = self._server.answer(data, "udp")
        if answer is not None and self._transport is not None:
            self._transport.sendto(answer, addr)


class _Tcp(asyncio.Protocol):
    def __init__(self, server: ScriptedDns) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._server.connections.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._buffer.extend(data)
        while len(self._buffer) >= 2:
            length = int.from_bytes(self._buffer[:2], "big")
            if len(self._buffer) < 2 + length:
                return
            message = bytes(self._buffer[2 : 2 + length])
            del self._buffer[: 2 + length]
            answer = self._server.answer(message, "tcp")
            if answer is None:
                self._transport.close()
                return
            self._transport.write(len(answer).to_bytes(2, "big") + answer[:65535])


class ScriptedDns:
    """A DNS server on 127.0.0.1 (UDP and TCP, same port) answering with :attr:`handler`."""

    def __init__(self, handler: DnsHandler = servfail) -> None:
        self.handler = handler
        self.port = 0
        self.queries: list[tuple[str, str, str]] = []  # (name, type, transport)
        self.connections: set[asyncio.Transport] = set()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answer(self, wire: bytes, transport: str) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
            question = query.question[0]
            self.queries.append(
                (question.name.to_text(), dns.rdatatype.to_text(question.rdtype), transport)
            )
            return self.handler(query, transport)
        except Exception:  # the handler could not build it (too big...): answer SERVFAIL
            with contextlib.suppress(Exception):
                return servfail(dns.message.from_wire(wire), transport)
            return None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        for _ in range(50):
            tcp = await loop.create_server(
                lambda: _Tcp(self), "127.0.0.1", 0, family=socket.AF_INET
            )
            port = int(tcp.sockets[0].getsockname()[1])
            try:
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self), local_addr=("127.0.0.1", port)
                )
            except OSError:
                tcp.close()
                await tcp.wait_closed()
                continue
            self._tcp, self._udp, self.port = tcp, udp, port
            return port
        raise OSError("no port free for both UDP and TCP")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        for connection in list(self.connections):
            connection.abort()
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await self._tcp.wait_closed()


def srv_handler(
    records: list[tuple[int, dns.name.Name | str]],
    addresses: dict[str, list[str]],
    ttl: int = 0,
    *,
    additional: bool = True,
) -> DnsHandler:
    """Answer SRV questions with ``records`` (port, target), the targets' A records in the
    additional section (``additional``), and A questions for those targets with ``addresses``
    (NXDOMAIN for other names). Every record carries ``ttl``."""

    def handle(query: dns.message.Message, _transport: str) -> bytes:
        question = query.question[0]
        response = dns.message.make_response(query)
        if question.rdtype == dns.rdatatype.SRV:
            rrset = response.find_rrset(
                response.answer, question.name, dns.rdataclass.IN, dns.rdatatype.SRV, create=True
            )
            rrset.update_ttl(ttl)
            for port, target in records:
                name = target if isinstance(target, dns.name.Name) else dns.name.from_text(target)
                rrset.add(
                    dns.rdtypes.IN.SRV.SRV(dns.rdataclass.IN, dns.rdatatype.SRV, 1, 1, port, name),
                    ttl,
                )
                key = name.to_text().lower()
                if additional and key in addresses:
                    extra = response.find_rrset(
                        response.additional, name, dns.rdataclass.IN, dns.rdatatype.A, create=True
                    )
                    for address in addresses[key]:
                        extra.add(
                            dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.A, address), ttl
                        )
        elif question.rdtype == dns.rdatatype.A and question.name.to_text().lower() in addresses:
            rrset = response.find_rrset(
                response.answer, question.name, dns.rdataclass.IN, dns.rdatatype.A, create=True
            )
            for address in addresses[question.name.to_text().lower()]:
                rrset.add(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.A, address), ttl)
        elif question.rdtype != dns.rdatatype.AAAA:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    return handle
