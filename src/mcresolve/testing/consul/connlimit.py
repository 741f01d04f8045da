"""The agent's per-client HTTP connection limit (``limits.http_max_conns_per_client``).

A modern agent counts the open HTTP connections of each client IP; a new connection beyond
the limit gets a fixed ``429`` written straight onto the socket, then the connection closes
(agent/agent.go ``httpConnLimiter`` on hashicorp/go-connlimit, PR #8221; the default of 200 is
in agent/config/default.go). Over HTTPS the client sees a broken pipe (hashicorp/consul#19622); the
emulator serves plain HTTP only.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

TOO_MANY_CONNS_MESSAGE = (
    "Your IP is issuing too many concurrent connections, please rate limit your calls\n"
)
TOO_MANY_CONNS_RESPONSE = (
    "HTTP/1.1 429 Too Many Requests\r\n"
    "Content-Type: text/plain\r\n"
    f"Content-Length: {len(TOO_MANY_CONNS_MESSAGE)}\r\n"
    "Connection: close\r\n\r\n" + TOO_MANY_CONNS_MESSAGE
).encode("ascii")


class ConnectionLimiter:
    """Open connections per client IP, and whether one more is allowed."""

    def __init__(self, limit: Callable[[], int | None]) -> None:
        self._limit = limit
        self.open: Counter[str] = Counter()
        #: connections refused so far (for tests and reports)
        self.refused = 0

    def admit(self, ip: str) -> bool:
        limit = self._limit()
        if limit is not None and limit > 0 and self.open[ip] >= limit:
            self.refused += 1
            return False
        self.open[ip] += 1
        return True

    def release(self, ip: str) -> None:
        self.open[ip] -= 1
        if self.open[ip] <= 0:
            del self.open[ip]


class _LimitedProtocol(asyncio.Protocol):
    """Wraps aiohttp's per-connection protocol: counts the connection, or answers 429."""

    def __init__(self, inner: Any, limiter: ConnectionLimiter) -> None:
        self._inner = inner
        self._limiter = limiter
        self._ip: str | None = None
        self._refused = False
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if peer else ""
        if not self._limiter.admit(ip):
            self._refused = True
            self._transport = transport
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(TOO_MANY_CONNS_RESPONSE)
            # close once the request has arrived (closing with unread data would reset the
            # connection before the client reads the answer), or after a second at most
            asyncio.get_running_loop().call_later(1.0, transport.close)
            return
        self._ip = ip
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            if self._transport is not None:
                self._transport.close()
            return
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._refused:
            return None
        result: bool | None = self._inner.eof_received()
        return result

    def pause_writing(self) -> None:
        if not self._refused:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if not self._refused:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        if self._ip is not None:
            self._limiter.release(self._ip)
            self._ip = None
        self._inner.connection_lost(exc)


class LimitedSite(web.TCPSite):
    """A :class:`aiohttp.web.TCPSite` whose connections go through a
    :class:`ConnectionLimiter`."""

    def __init__(self, runner: web.BaseRunner, limiter: ConnectionLimiter, **kwargs: Any) -> None:
        super().__init__(runner, **kwargs)
        self._limiter = limiter

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        limiter = self._limiter

        def factory() -> asyncio.Protocol:
            return _LimitedProtocol(server(), limiter)

        self._server = await loop.create_server(
            factory,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
