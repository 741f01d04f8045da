"""The DNS interface of one emulated Consul agent: UDP and TCP on the same port (thin I/O).

All decisions are made by :class:`~mcresolve.testing.consul.dns_responder.DnsResponder`; this
module only moves bytes: one datagram in, one datagram out; over TCP, 2-byte length-prefixed
messages, several per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Callable
from typing import cast

from .contracts import ClusterView
from .dns_records import DEFAULT_UDP_ANSWER_LIMIT
from .dns_responder import DnsResponder

_log = logging.getLogger(__name__)

#: How many times ``start(host, 0)`` tries to find a port free for both UDP and TCP.
_PORT_ATTEMPTS = 50


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: DnsResponder) -> None:
        self._responder = responder
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        try:
            answer = self._responder.respond_wire(data, "udp")
        except Exception:
            _log.exception("DNS UDP query from %s failed", addr)
            return
        if answer is not None and self._transport is not None:
            self._transport.sendto(answer, addr)

    def error_received(self, exc: Exception) -> None:
        _log.debug("DNS UDP socket error: %s", exc)


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, responder: DnsResponder, connections: set[asyncio.Transport]) -> None:
        self._responder = responder
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._connections.add(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._connections.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        self._buffer.extend(data)
        while len(self._buffer) >= 2:
            length = int.from_bytes(self._buffer[:2], "big")
            if len(self._buffer) < 2 + length:
                return
            message = bytes(self._buffer[2 : 2 + length])
            del self._buffer[: 2 + length]
            self._answer(message)

    def _answer(self, message: bytes) -> None:
        assert self._transport is not None
        try:
            answer = self._responder.respond_wire(message, "tcp")
        except Exception:
            _log.exception("DNS TCP query failed")
            answer = None
        if answer is None:
            self._transport.close()
            return
        self._transport.write(len(answer).to_bytes(2, "big") + answer)


class ConsulDnsServer:
    """Consul 1.0.8's DNS interface for the agent of ``datacenter``.

    ``<svc>.service[.<dc>].consul``, tags and RFC 2782 names, ``<node>.node``,
    ``<query>.query`` (prepared queries with failover), ``<hex>.addr``; A/AAAA/SRV/TXT/ANY;
    SOA/NS of the domain. ``rng`` and ``clock`` (SOA serial) may be injected for tests.
    """

    def __init__(
        self,
        datacenter: str,
        cluster: ClusterView,
        domain: str = "consul",
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        udp_answer_limit: int = DEFAULT_UDP_ANSWER_LIMIT,
        a_record_limit: int | None = None,
        modern: bool = False,
    ) -> None:
        self.datacenter = datacenter
        self.responder = DnsResponder(
            datacenter,
            cluster,
            domain,
            rng=rng,
            clock=clock,
            udp_answer_limit=udp_answer_limit,
            a_record_limit=a_record_limit,
            modern=modern,
        )
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.Transport] = set()
        self.port: int | None = None

    @property
    def running(self) -> bool:
        """Whether the listening sockets are open."""
        return self._udp is not None

    async def start(self, host: str, port: int) -> int:
        """Listen on UDP and TCP ``host:port``; port 0 picks a port free for both.

        Returns the port. Raises :class:`OSError` if the port cannot be bound."""
        if self.running:
            raise RuntimeError(f"DNS server of {self.datacenter} already running")
        if port:
            await self._bind(host, port)
        else:
            for attempt in range(_PORT_ATTEMPTS):
                try:
                    await self._bind(host, 0)
                    break
                except OSError:
                    if attempt == _PORT_ATTEMPTS - 1:
                        raise
        assert self.port is not None
        return self.port

    async def _bind(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        tcp = await loop.create_server(
            lambda: _TcpProtocol(self.responder, self._connections),
            host,
            port,
            family=socket.AF_INET6 if ":" in host else socket.AF_INET,
            reuse_address=True,
        )
        bound_port = int(tcp.sockets[0].getsockname()[1])
        try:
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self.responder), local_addr=(host, bound_port)
            )
        except OSError:
            tcp.close()
            await tcp.wait_closed()
            raise
        self._tcp = tcp
        self._udp = udp
        self.port = bound_port

    async def stop(self) -> None:
        """Close both listening sockets and every open TCP connection (idempotent)."""
        udp, tcp = self._udp, self._tcp
        self._udp = None
        self._tcp = None
        if udp is not None:
            udp.close()
        for connection in list(self._connections):
            connection.abort()
        self._connections.clear()
        if tcp is not None:
            tcp.close()
            with contextlib.suppress(Exception):
                await tcp.wait_closed()
