"""No re-resolution storm: stage 1 and stage 3 hammered with refresh_now() (as a pool with every
endpoint ejected does) send a bounded number of queries, counted on the wire, and stage 3 still
fails over at once on a health-watch event."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from mcresolve.sources import DnsSource, PreparedQuerySource, Resolution
from mcresolve.sources.refresh import RefreshDamping
from mcresolve.sources.target import DnsTarget, PreparedQueryTarget, parse_target
from mcresolve.testing.consul.http_api import AgentHttpApi
from support import Cluster

from .conftest import DC1, SERVICE
from .helpers import define_query, next_matching

#: How long each source is hammered, and how often refresh_now() is called meanwhile.
HAMMER_FOR = 3.0
HAMMER_EVERY = 0.005


class CountingDnsRelay:
    """A loopback TCP relay in front of a DNS server that counts the DNS messages sent to it."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.queries = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> CountingDnsRelay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._relay(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def queries() -> None:
            while True:  # DNS over TCP: 2-byte length, then the message
                head = await reader.readexactly(2)
                body = await reader.readexactly(int.from_bytes(head, "big"))
                self.queries += 1
                up_writer.write(head + body)
                await up_writer.drain()

        async def answers() -> None:
            while chunk := await up_reader.read(65536):
                writer.write(chunk)
                await writer.drain()

        try:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                await asyncio.gather(queries(), answers())
        finally:
            for w in (writer, up_writer):
                w.close()


@contextlib.asynccontextmanager
async def hammering(source: DnsSource | PreparedQuerySource) -> AsyncIterator[None]:
    """Call ``source.refresh_now()`` every :data:`HAMMER_EVERY` seconds while in the block."""

    async def hammer() -> None:
        while True:
            source.refresh_now()
            await asyncio.sleep(HAMMER_EVERY)

    task = asyncio.ensure_future(hammer())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def periodic_bound(duration: float, refresh: float) -> int:
    """Periodic re-resolutions possible in ``duration`` seconds (period ``refresh`` -20 %)."""
    return int(duration / (0.8 * refresh)) + 1


def ports(resolution: Resolution) -> set[int]:
    return {e.port for e in resolution.endpoints}


async def test_dns_source_hammered_with_refresh_now_sends_a_bounded_number_of_queries(
    cluster: Cluster,
) -> None:
    async with CountingDnsRelay(cluster.consul.dc("dc1").dns_port) as relay:
        target = parse_target(
            f"dns://{SERVICE}.service.consul?server={relay.address}&transport=tcp&timeout=1s"
        )
        assert isinstance(target, DnsTarget)
        source = DnsSource(target)
        async with source:
            await next_matching(source, lambda r: len(r.endpoints) == len(DC1))
            assert relay.queries == 1  # SRV with the addresses in the additional section
            loop = asyncio.get_running_loop()
            started = loop.time()
            async with hammering(source):
                await asyncio.sleep(HAMMER_FOR)  # the duration under test, not a wait for a state
            elapsed = loop.time() - started
            sent = relay.queries - 1
        assert sent == source.queries["tcp"] - 1
    bound = RefreshDamping().max_forced(elapsed) + periodic_bound(elapsed, target.refresh)
    print(f"DNS: {sent} queries in {elapsed:.2f} s of refresh_now() every {HAMMER_EVERY} s")
    assert 1 <= sent <= bound  # without damping: one query per refresh_now() (~hundreds)


async def test_prepared_query_hammered_with_refresh_now_executes_a_bounded_number_of_times(
    cluster: Cluster,
) -> None:
    await define_query(cluster)
    api = AgentHttpApi.of(cluster.consul.dc("dc1"))
    path = f"/v1/query/{SERVICE}/execute"
    target = parse_target(f"consul+query://{SERVICE}")  # default refresh (10 s)
    assert isinstance(target, PreparedQueryTarget)
    source = PreparedQuerySource(target, cluster.dc1, cluster.registry)
    async with source:
        await next_matching(source, lambda r: ports(r) == {9001, 9002, 9003, 9004})
        # the health watch's first event re-executes once: wait for that before counting
        await next_executions(source, 2)
        before = api.requests_served(path)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with hammering(source):
            await asyncio.sleep(HAMMER_FOR)  # the duration under test, not a wait for a state
        elapsed = loop.time() - started
        sent = api.requests_served(path) - before
    bound = RefreshDamping().max_forced(elapsed) + periodic_bound(elapsed, target.refresh)
    print(f"query: {sent} executions in {elapsed:.2f} s of refresh_now() every {HAMMER_EVERY} s")
    assert 1 <= sent <= bound  # without damping: one per 50 ms (min_interval), ~60


async def next_executions(source: PreparedQuerySource, count: int, within: float = 10.0) -> None:
    """Wait until ``source`` published the result of its ``count``-th execution (every
    execution publishes), within ``within`` seconds."""
    await next_matching(source, lambda _: source.executions >= count, within)


async def test_damped_prepared_query_still_fails_over_at_once_on_a_health_event(
    cluster: Cluster,
) -> None:
    """Damping so strong that a forced re-execution would take >= 30 s: the failover to dc2
    (all local instances critical) must come from the health watch at once, while the source
    is being hammered."""
    await define_query(cluster)
    dc1 = cluster.consul.dc("dc1")
    target = parse_target(f"consul+query://{SERVICE}?refresh=5m")
    assert isinstance(target, PreparedQueryTarget)
    damping = RefreshDamping(base=60.0, cap=60.0, quiet=120.0)
    source = PreparedQuerySource(target, cluster.dc1, cluster.registry, damping=damping)
    async with source:
        await next_matching(source, lambda r: r.datacenter == "dc1" and bool(r.endpoints))
        async with hammering(source):
            await next_executions(source, 3)  # initial, watch's first event, one forced
            for service_id, _, tags in DC1:
                if "minio" in tags:
                    dc1.set_check_status(f"{service_id}-ttl", "critical")
            failed_over = await next_matching(source, lambda r: r.datacenter == "dc2")
            assert ports(failed_over) == {9101, 9102}
            dc1.set_check_status("minio-dc1-a-ttl", "passing")
            back = await next_matching(source, lambda r: r.datacenter == "dc1")
            assert ports(back) == {9001}


async def test_first_refresh_now_after_an_answer_is_not_damped(cluster: Cluster) -> None:
    """A DNS source under damping so strong that a damped query would wait >= 30 s: the first
    refresh_now() after its answer re-queries at once (bypassing a 5-minute cache)."""
    async with CountingDnsRelay(cluster.consul.dc("dc1").dns_port) as relay:
        target = parse_target(
            f"dns://{SERVICE}.service.consul?server={relay.address}&transport=tcp&timeout=1s"
            "&refresh=5m&ttl-floor=5m"
        )
        assert isinstance(target, DnsTarget)
        damping = RefreshDamping(base=60.0, cap=60.0, quiet=120.0)
        source = DnsSource(target, damping=damping)
        async with source:
            await next_matching(source, lambda r: len(r.endpoints) == len(DC1))
            await cluster.dc1.agent_service_deregister("minio-dc1-d")
            source.refresh_now()
            changed = await next_matching(source, lambda r: 9004 not in ports(r))
        assert len(changed.endpoints) == len(DC1) - 1 and relay.queries == 2
