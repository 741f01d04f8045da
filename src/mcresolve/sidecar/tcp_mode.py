"""The tcp mode: every accepted connection forwarded, as a whole, to an endpoint of the pool.

Each client connection is one :meth:`EndpointPool.call <mcresolve.pool.EndpointPool.call>`
whose attempt connects to the picked endpoint, forwards what the client sends (keeping a copy,
up to :attr:`TcpProxyPolicy.replay_limit`) and returns when the connection is committed
(:func:`~mcresolve.sidecar.tcp_rules.establish_step`): the endpoint's first byte came back, the
copy overflowed, or both sides stayed silent. An attempt that fails before that (refused,
reset, closed, no first byte in time) is a NODE failure the pool records (ejection) and
retries on another endpoint, replaying the copy; after the commit the bytes flow both ways
until both sides have closed (half-close forwarded), the idle timeout, or an error, and nothing
is replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
from dataclasses import dataclass

from mcresolve.arguments import check_instance
from mcresolve.endpoint import Endpoint
from mcresolve.errors import McResolveError
from mcresolve.pool import EndpointPool
from mcresolve.sidecar.admission import reject_over_limit
from mcresolve.sidecar.listener import ListenerStats
from mcresolve.sidecar.logs import log_event
from mcresolve.sidecar.spec import format_address
from mcresolve.sidecar.tcp_rules import (
    Commit,
    TcpProxyPolicy,
    TimedOut,
    establish_step,
    idle_left,
    replay_fits,
)

__all__ = ["ClientGone", "TcpListener", "TcpProxyPolicy"]


class ClientGone(McResolveError):
    """The client's side failed while the connection was being established (not the
    endpoint's fault: the pool raises it at once, as a CLIENT failure)."""


@dataclass(slots=True)
class _Counters:
    active: int = 0
    accepted: int = 0
    committed: int = 0
    retried: int = 0
    failed: int = 0
    rejected: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass(slots=True)
class _Committed:
    """An endpoint connection the client's connection is committed to."""

    endpoint: Endpoint
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    upstream_read: asyncio.Future[bytes]
    """The endpoint's pending (or finished: its first bytes) read."""
    how: Commit
    unsent: bytes = b""
    """Client bytes read but not yet written to the endpoint (the chunk that overflowed the
    replay buffer)."""


class TcpListener:
    """A local address whose connections go, whole, to endpoints of ``pool``.

    ``listen``: (host, port); port 0 picks a free one (see :attr:`address` after
    :meth:`start`). ``policy``: timeouts and limits (:class:`TcpProxyPolicy`).
    """

    def __init__(
        self,
        listen: tuple[str, int],
        pool: EndpointPool,
        *,
        policy: TcpProxyPolicy | None = None,
    ) -> None:
        check_instance("policy", policy, (TcpProxyPolicy, type(None)), "a TcpProxyPolicy")
        self._listen = listen
        self._pool = pool
        self._policy = policy or TcpProxyPolicy()
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] = listen
        self._tasks: set[asyncio.Task[None]] = set()
        self._counters = _Counters()
        self._call_policy = dataclasses.replace(
            pool.policy.call,
            attempt_timeout=math.inf,
            deadline=self._policy.establish_deadline,
            hedge_delay=None,
        )

    @property
    def mode(self) -> str:
        return "tcp"

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    @property
    def policy(self) -> TcpProxyPolicy:
        return self._policy

    @property
    def pool(self) -> EndpointPool:
        return self._pool

    def __repr__(self) -> str:
        host, port = self._address
        return f"<TcpListener {host}:{port} -> {self._pool.name}>"

    async def start(self) -> None:
        """Bind and accept (``OSError`` if the address is taken or cannot be bound)."""
        if self._server is not None:
            return
        host, port = self._listen
        self._server = await asyncio.start_server(self._accept, host, port, reuse_address=True)
        sockname = self._server.sockets[0].getsockname()
        self._address = (str(sockname[0]), int(sockname[1]))
        log_event(
            "listening", mode="tcp", listen=format_address(self._address), pool=self._pool.name
        )

    async def drain(self, grace: float) -> None:
        """Stop accepting, let connections finish for up to ``grace`` seconds, then cut them."""
        self._stop_accepting()
        tasks = set(self._tasks)
        if tasks:
            log_event(
                "draining",
                listen=format_address(self._address),
                connections=len(tasks),
                grace=grace,
            )
            await asyncio.wait(tasks, timeout=grace)
        await self._cut()

    async def aclose(self) -> None:
        """Close the listening socket and every connection at once."""
        self._stop_accepting()
        await self._cut()

    def stats(self) -> ListenerStats:
        c = self._counters
        return ListenerStats(
            active_connections=c.active,
            accepted_total=c.accepted,
            requests_total=c.committed,
            retried_total=c.retried,
            failed_total=c.failed,
            bytes_in_total=c.bytes_in,
            bytes_out_total=c.bytes_out,
            rejected_total=c.rejected,
        )

    def _stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _cut(self) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- one connection ----------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counters = self._counters
        counters.accepted += 1
        if counters.active >= self._policy.max_connections:
            counters.rejected += 1
            reject_over_limit(writer, self._address, self._policy.max_connections)
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        counters.active += 1
        try:
            await _Connection(self, reader, writer).run()
        except asyncio.CancelledError:
            pass  # cut by drain() or aclose(): the connection is closed, the task ends
        finally:
            counters.active -= 1
            self._tasks.discard(task)


class _Connection:
    """One client connection: establish (attempts through the pool), then forward."""

    def __init__(
        self, listener: TcpListener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._listener = listener
        self._policy = listener.policy
        self._counters = listener._counters
        self._reader = reader
        self._writer = writer
        self._replay = bytearray()
        self._client_read: asyncio.Future[bytes] | None = None
        self._client_eof = False
        self._attempts = 0
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._clean = False
        peer = writer.get_extra_info("peername")
        self._peer = format_address(peer) if isinstance(peer, tuple) else "-"

    async def run(self) -> None:
        committed: _Committed | None = None
        try:
            try:
                committed = await self._listener.pool.call(
                    self._attempt, idempotent=True, policy=self._listener._call_policy
                )
            except ClientGone as error:
                log_event("client_gone", logging.DEBUG, client=self._peer, error=error)
                return
            except Exception as error:
                self._counters.failed += 1
                log_event(
                    "connection_failed",
                    logging.WARNING,
                    listen=format_address(self._listener.address),
                    client=self._peer,
                    pool=self._listener.pool.name,
                    attempts=self._attempts,
                    error=error,
                )
                return
            finally:
                self._counters.retried += max(0, self._attempts - 1)
            self._counters.committed += 1
            log_event(
                "connection_committed",
                logging.DEBUG,
                client=self._peer,
                endpoint=committed.endpoint.host_port,
                how=committed.how.value,
                attempts=self._attempts,
            )
            await self._forward(committed)
        finally:
            if self._client_read is not None and not self._client_read.done():
                self._client_read.cancel()
            writers = [self._writer] if committed is None else [self._writer, committed.writer]
            if committed is not None:
                committed.upstream_read.cancel()
            for writer in writers:
                if self._clean:
                    writer.close()  # after what is buffered has been sent
                else:
                    writer.transport.abort()

    # --- establishing ------------------------------------------------------------------------

    def _client_reading(self) -> asyncio.Future[bytes]:
        """The pending read of the client (it outlives attempts: what it reads is replayed)."""
        if self._client_read is None:
            self._client_read = asyncio.ensure_future(self._reader.read(self._policy.chunk_size))
        return self._client_read

    def _take_client(self) -> bytes:
        read, self._client_read = self._client_read, None
        assert read is not None
        try:
            data = read.result()
        except OSError as error:
            raise ClientGone(f"client connection failed: {error}") from None
        self._counters.bytes_in += len(data)
        return data

    async def _attempt(self, endpoint: Endpoint) -> _Committed:
        self._attempts += 1
        policy = self._policy
        try:
            async with asyncio.timeout(policy.connect_timeout):
                reader, writer = await asyncio.open_connection(endpoint.address, endpoint.port)
        except TimeoutError:
            raise TimeoutError(
                f"connect to {endpoint.host_port} timed out after {policy.connect_timeout:g} s"
            ) from None
        connected_at = self._loop.time()
        first_sent_at = connected_at if self._replay else None
        upstream_read: asyncio.Future[bytes] | None = None
        committed = False
        try:
            if self._replay:
                writer.write(bytes(self._replay))
                await writer.drain()
            if self._client_eof:
                writer.write_eof()
            upstream_read = asyncio.ensure_future(reader.read(policy.chunk_size))
            while True:
                step = establish_step(
                    policy, connected_at=connected_at, first_sent_at=first_sent_at,
                    now=self._loop.time(),
                )  # fmt: skip
                if step is TimedOut.NO_FIRST_BYTE:
                    raise TimeoutError(
                        f"no first byte from {endpoint.host_port} within "
                        f"{policy.first_byte_timeout:g} s of the client's"
                    )
                if step is Commit.SILENT:
                    committed = True
                    return _Committed(endpoint, reader, writer, upstream_read, Commit.SILENT)
                assert not isinstance(step, Commit | TimedOut)
                waiting: set[asyncio.Future[bytes]] = {upstream_read}
                if not self._client_eof:
                    waiting.add(self._client_reading())
                done, _ = await asyncio.wait(
                    waiting, timeout=step.seconds, return_when=asyncio.FIRST_COMPLETED
                )
                if upstream_read in done:
                    if upstream_read.result():
                        committed = True
                        return _Committed(
                            endpoint, reader, writer, upstream_read, Commit.FIRST_BYTE
                        )
                    if self._client_eof:
                        committed = True
                        return _Committed(endpoint, reader, writer, upstream_read, Commit.CLOSED)
                    raise ConnectionResetError(
                        f"{endpoint.host_port} closed the connection before its first byte"
                    )
                if self._client_read is None or self._client_read not in done:
                    continue
                data = self._take_client()
                if not data:
                    self._client_eof = True
                    writer.write_eof()
                    continue
                if not replay_fits(policy, len(self._replay), len(data)):
                    committed = True
                    return _Committed(
                        endpoint, reader, writer, upstream_read, Commit.UNREPLAYABLE, data
                    )
                self._replay += data
                writer.write(data)
                await writer.drain()
                if first_sent_at is None:
                    first_sent_at = self._loop.time()
        finally:
            if not committed:
                if upstream_read is not None:
                    upstream_read.cancel()
                writer.transport.abort()

    # --- committed ---------------------------------------------------------------------------

    async def _forward(self, up: _Committed) -> None:
        self._replay = bytearray()
        self._last_activity = self._loop.time()
        pumps = [
            asyncio.ensure_future(self._upstream_to_client(up)),
            asyncio.ensure_future(self._client_to_upstream(up)),
        ]
        idle = asyncio.ensure_future(self._idle_watch())
        try:
            pending: set[asyncio.Future[None]] = set(pumps)
            self._clean = True
            while pending:
                done, pending = await asyncio.wait(
                    pending | {idle}, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(idle)
                if idle in done:
                    self._clean = False
                    log_event("idle_timeout", client=self._peer, endpoint=up.endpoint.host_port)
                    return
                for pump in done:
                    error = pump.exception()
                    if error is not None:
                        self._clean = False
                        log_event(
                            "connection_broken",
                            logging.DEBUG,
                            client=self._peer,
                            endpoint=up.endpoint.host_port,
                            error=error,
                        )
                        return
        except asyncio.CancelledError:
            self._clean = False
            raise
        finally:
            for future in (*pumps, idle):
                future.cancel()
            await asyncio.gather(*pumps, idle, return_exceptions=True)

    async def _idle_watch(self) -> None:
        if math.isinf(self._policy.idle_timeout):
            await asyncio.Event().wait()
        while True:  # the deadline moves with every byte: sleep until it, then look again
            left = idle_left(self._policy, self._last_activity, self._loop.time())
            if left <= 0:
                return
            await asyncio.sleep(left)

    async def _upstream_to_client(self, up: _Committed) -> None:
        read: asyncio.Future[bytes] = up.upstream_read
        while True:
            data = await read
            if not data:
                with contextlib.suppress(OSError):
                    if self._writer.can_write_eof():
                        self._writer.write_eof()
                return
            self._last_activity = self._loop.time()
            self._writer.write(data)
            await self._writer.drain()
            self._counters.bytes_out += len(data)
            read = asyncio.ensure_future(up.reader.read(self._policy.chunk_size))

    async def _client_to_upstream(self, up: _Committed) -> None:
        if up.unsent:
            up.writer.write(up.unsent)
            await up.writer.drain()
        if self._client_eof:
            return
        while True:
            await asyncio.wait([self._client_reading()])
            data = self._take_client()
            if not data:
                self._client_eof = True
                with contextlib.suppress(OSError):
                    up.writer.write_eof()
                return
            self._last_activity = self._loop.time()
            up.writer.write(data)
            await up.writer.drain()
