"""One execution stream per prepared query per process: many sources on one target cost Consul
what one source costs (executions counted at the emulator), a storm of refresh_now() from many
sources is one execution, and the stream ends with its last subscriber."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from mcresolve.consul.watch import SharedWatchRegistries
from mcresolve.sources import PreparedQuerySource, Resolution, Source, from_target
from mcresolve.sources.query_stream import QueryStreams
from mcresolve.sources.target import PreparedQueryTarget, parse_target
from mcresolve.testing.consul.http_api import AgentHttpApi
from mcresolve.timing import Backoff, BackoffPolicy, Jitter
from support import Cluster

from .conftest import SERVICE
from .helpers import define_query, next_matching

PATH = f"/v1/query/{SERVICE}/execute"
#: No periodic execution within a test: every execution counted comes from an event.
TARGET = f"consul+query://{SERVICE}?refresh=5m"


def ports(resolution: Resolution) -> set[int]:
    return {e.port for e in resolution.endpoints}


def local_ports(resolution: Resolution) -> set[int]:
    """The query's answer from dc1 (warm standby endpoints of dc2, on by default, left out)."""
    return {e.port for e in resolution.endpoints if e.datacenter == "dc1"}


@contextlib.asynccontextmanager
async def started(sources: list[Source]) -> AsyncIterator[list[Source]]:
    async with contextlib.AsyncExitStack() as stack:
        for source in sources:
            await stack.enter_async_context(source)
        yield sources


async def executions_for_a_health_flip(cluster: Cluster, pools: int) -> int:
    """Executions the emulator serves while ``pools`` sources built by from_target start, see
    their first answer, and all follow one health change to its end."""
    api = AgentHttpApi.of(cluster.consul.dc("dc1"))
    shared = SharedWatchRegistries()
    before = api.requests_served(PATH)
    sources = [from_target(TARGET, consul=cluster.dc1, shared=shared) for _ in range(pools)]
    async with started(sources):
        for source in sources:
            await next_matching(source, lambda r: local_ports(r) == {9001, 9002, 9003, 9004})  # type: ignore[arg-type]
        cluster.flip("dc1", "minio-dc1-d", "critical")
        for source in sources:
            await next_matching(source, lambda r: local_ports(r) == {9001, 9002, 9003})  # type: ignore[arg-type]
        served = api.requests_served(PATH) - before
    cluster.flip("dc1", "minio-dc1-d", "passing")
    return served


async def test_twenty_pools_execute_as_often_as_one(cluster: Cluster) -> None:
    await define_query(cluster)
    one = await executions_for_a_health_flip(cluster, 1)
    twenty = await executions_for_a_health_flip(cluster, 20)
    # one pool: the first execution, the watch's first event, the flip (2 when the watch's first
    # read already saw the flip); unshared, twenty pools would send at least 20 x 2
    assert 2 <= one <= 3
    assert twenty <= one + 1, (one, twenty)


async def test_a_refresh_storm_from_twenty_sources_is_one_execution(cluster: Cluster) -> None:
    await define_query(cluster)
    api = AgentHttpApi.of(cluster.consul.dc("dc1"))
    target = parse_target(TARGET)
    assert isinstance(target, PreparedQueryTarget)
    streams = QueryStreams()
    # no health watch: the only executions are the first one and those the storm asks for
    sources = [PreparedQuerySource(target, cluster.dc1, None, streams=streams) for _ in range(20)]
    before = api.requests_served(PATH)
    async with started(list(sources)):
        for source in sources:
            await next_matching(source, lambda r: ports(r) == {9001, 9002, 9003, 9004})
        assert api.requests_served(PATH) - before == 1
        assert len(streams.active()) == 1 and streams.active()[0].subscriber_count == 20
        firsts = [source.current for source in sources]
        for _ in range(10):
            for source in sources:
                source.refresh_now()
        for source, first in zip(sources, firsts, strict=True):
            # every source publishes the storm's execution (a new resolution of the same set)
            await next_matching(source, lambda r, first=first: r is not first)  # type: ignore[misc]
        assert api.requests_served(PATH) - before == 2  # the first one + one for the storm
        assert all(s.executions == 2 for s in sources)
    assert streams.active() == []


async def test_the_stream_outlives_a_leaving_subscriber_and_stops_with_the_last(
    cluster: Cluster,
) -> None:
    await define_query(cluster)
    target = parse_target(TARGET)
    assert isinstance(target, PreparedQueryTarget)
    streams = QueryStreams()
    staying = PreparedQuerySource(target, cluster.dc1, cluster.registry, streams=streams)
    leaving = PreparedQuerySource(target, cluster.dc1, cluster.registry, streams=streams)
    async with staying:
        await next_matching(staying, lambda r: ports(r) == {9001, 9002, 9003, 9004})
        async with leaving:
            # a late subscriber gets the stream's latest answer without a new execution
            joined = await next_matching(leaving, lambda r: bool(r.endpoints))
            assert ports(joined) == {9001, 9002, 9003, 9004}
            assert len(streams.active()) == 1
        assert streams.active()[0].subscriber_count == 1
        cluster.flip("dc1", "minio-dc1-d", "critical")  # the shared health watch still works
        await next_matching(staying, lambda r: ports(r) == {9001, 9002, 9003})
    assert streams.active() == []
    assert cluster.registry.watches() == {}  # the stream's health watch closed with it


async def test_different_targets_do_not_share(cluster: Cluster) -> None:
    await define_query(cluster)
    streams = QueryStreams()
    a, b = (parse_target(f"{TARGET}{extra}") for extra in ("", "&limit=2"))
    assert isinstance(a, PreparedQueryTarget) and isinstance(b, PreparedQueryTarget)
    async with (
        PreparedQuerySource(a, cluster.dc1, None, streams=streams) as all_of_them,
        PreparedQuerySource(b, cluster.dc1, None, streams=streams) as two,
    ):
        await next_matching(all_of_them, lambda r: len(r.endpoints) == 4)
        await next_matching(two, lambda r: len(r.endpoints) == 2)
        assert len(streams.active()) == 2


class QuickRestart(PreparedQuerySource):
    def _restart_backoff(self) -> Backoff:
        return Backoff(BackoffPolicy(base=0.01, cap=0.02, jitter=Jitter.NONE), lambda: 0.5)


async def test_a_crashed_stream_is_published_by_every_source_and_replaced(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the shared loop: every source publishes it with its last good set kept, restarts,
    and the restarted sources share one new stream."""
    await define_query(cluster)
    target = parse_target(TARGET)
    assert isinstance(target, PreparedQueryTarget)
    streams = QueryStreams()
    sources = [QuickRestart(target, cluster.dc1, None, streams=streams) for _ in range(3)]
    async with started(list(sources)):
        for source in sources:
            await next_matching(source, lambda r: ports(r) == {9001, 9002, 9003, 9004})
        (crashing,) = streams.active()

        def bug(outcome: object, *, forced: bool) -> bool:
            raise KeyError("a bug in the shared loop")

        monkeypatch.setattr(crashing._trigger, "observe", bug)
        crashing.request()
        for source in sources:
            failed = await next_matching(source, lambda r: isinstance(r.error, KeyError))
            assert failed.stale and ports(failed) == {9001, 9002, 9003, 9004}  # LKG kept
        for source in sources:
            await next_matching(source, lambda r: r.ok)
            assert source.restarts == 1
        (replacement,) = streams.active()
        assert replacement is not crashing and replacement.subscriber_count == 3
