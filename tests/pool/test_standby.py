"""The pool with warm standby datacenters (emulator, two datacenters): every local endpoint
failing moves calls to dc2 at once, without a new execution or health change; Consul's answer
takes over when it catches up; fail-back keeps its hold-down (driven by an injected clock)."""

from __future__ import annotations

import pytest

from mcresolve.balancer.outlier import OutlierPolicy
from mcresolve.endpoint import Endpoint
from mcresolve.pool import EndpointPool, PoolPolicy, PoolSnapshot
from mcresolve.pool.events import EventKind
from mcresolve.sources.composite import ResilientSource
from mcresolve.sources.prepared_query import PreparedQuerySource
from mcresolve.sources.standby import StandbySource
from mcresolve.testing.consul.http_api import AgentHttpApi
from support import Cluster, until

from .conftest import DC1, SERVICE
from .helpers import FakeClock, next_event, snapshot_until

QUERY = f"consul+query://{SERVICE}?refresh=5m"
HEALTH = f"consul://{SERVICE}?tag=minio"
EXECUTE = f"/v1/query/{SERVICE}/execute"
HEALTH_PATH = f"/v1/health/service/{SERVICE}"
HOLD_DOWN = 30.0


@pytest.fixture(params=["1.0.8", "1.21"])
def consul_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def warm(snapshot: PoolSnapshot) -> bool:
    """dc2's instances are known (as standby) while dc1 is active."""
    standby = {s.endpoint.port for s in snapshot.endpoints if s.datacenter == "dc2"}
    return standby == {9101, 9102} and snapshot.active_datacenter == "dc1"


def executions(pool: EndpointPool) -> int:
    source = pool.source
    assert isinstance(source, ResilientSource)
    standby = source.primary
    assert isinstance(standby, StandbySource)
    query = standby.primary
    assert isinstance(query, PreparedQuerySource)
    return query.executions


async def dc_of_call(
    pool: EndpointPool, tried: list[Endpoint], deadline: float | None = None
) -> str:
    """One call where dc1's endpoints refuse and dc2's serve; returns the serving datacenter."""

    async def attempt(endpoint: Endpoint) -> str:
        tried.append(endpoint)
        if endpoint.datacenter != "dc2":
            raise ConnectionRefusedError(f"{endpoint} is down")
        return endpoint.datacenter

    return await pool.call(attempt, deadline=deadline)


async def served_by(pool: EndpointPool) -> Endpoint:
    """The endpoint a successful call went to (a call looks at the pool's clock first)."""

    async def attempt(endpoint: Endpoint) -> Endpoint:
        return endpoint

    return await pool.call(attempt)


@pytest.mark.parametrize("target", [QUERY, f"{HEALTH}&failover=dc2"], ids=["stage3", "stage2"])
async def test_every_local_endpoint_failing_moves_calls_to_dc2_without_asking_consul(
    cluster: Cluster, target: str
) -> None:
    api = AgentHttpApi.of(cluster.consul.dc("dc1"))
    clock = FakeClock()
    policy = PoolPolicy(outlier=OutlierPolicy(base_ejection=60.0))
    async with EndpointPool(
        target, registry=cluster.registry, consul=cluster.dc1, policy=policy, clock=clock
    ) as pool:
        await snapshot_until(pool, warm)
        # every watch's latest request is held by the agent: nothing else is due
        await until(lambda: api.parked >= 2, what="the local and standby watches parked")
        if target == QUERY:
            # the local health watch's first event re-executes once: count after it
            await until(
                lambda: api.requests_served(EXECUTE) >= 2 and executions(pool) >= 2,
                what="the watch-triggered re-execution",
            )
        sent = (api.requests_served(EXECUTE), api.requests_served(HEALTH_PATH))
        ran = executions(pool) if target == QUERY else 0
        stream = pool.stream_events()
        tried: list[Endpoint] = []
        # calls go to dc1 until every dc1 endpoint is ejected; then to dc2 within the call
        assert await dc_of_call(pool, tried) == "dc2"
        failover = await next_event(stream, EventKind.FAILOVER)
        assert failover.datacenter == "dc2"
        assert {e.port for e in tried if e.datacenter != "dc2"} == {p for _, p, _ in DC1}
        snapshot = pool.snapshot()
        assert snapshot.failed_over and snapshot.active_datacenter == "dc2"
        # the next call goes straight to dc2
        tried.clear()
        assert await dc_of_call(pool, tried) == "dc2"
        assert [e.datacenter for e in tried] == ["dc2"]
        # ... and Consul was not asked anything meanwhile (no execution, no health read)
        assert (api.requests_served(EXECUTE), api.requests_served(HEALTH_PATH)) == sent
        if target == QUERY:
            assert executions(pool) == ran


async def test_without_failover_stage2_cannot_survive_the_local_datacenter(
    cluster: Cluster,
) -> None:
    """The behaviour the ``failover=`` option changes: a plain health target knows dc1 only."""
    async with EndpointPool(HEALTH, registry=cluster.registry, consul=cluster.dc1) as pool:
        snapshot = await pool.wait_ready(10)
        assert {s.datacenter for s in snapshot.endpoints} == {"dc1"}
        tried: list[Endpoint] = []
        with pytest.raises(Exception):  # noqa: B017 - every attempt refused, any CallFailed
            await dc_of_call(pool, tried, deadline=0.5)
        assert {e.datacenter for e in tried} == {"dc1"}


async def test_consul_catches_up_then_fail_back_keeps_its_hold_down(cluster: Cluster) -> None:
    clock = FakeClock()
    policy = PoolPolicy(failback_hold_down=HOLD_DOWN)
    async with EndpointPool(
        QUERY, registry=cluster.registry, consul=cluster.dc1, policy=policy, clock=clock
    ) as pool:
        await snapshot_until(pool, warm)
        stream = pool.stream_events()
        for service_id, _, _ in DC1:
            cluster.flip("dc1", service_id, "critical")
        # Consul's answer catches up: the query answers from dc2, the pool follows it
        await next_event(stream, EventKind.FAILOVER, datacenter="dc2")
        await snapshot_until(pool, lambda s: {x.datacenter for x in s.endpoints} == {"dc2"})
        # dc1 recovers: Consul answers from dc1 again, dc2 stays as standby
        cluster.flip("dc1", "minio-dc1-a", "passing")
        back = await snapshot_until(pool, lambda s: 9001 in {x.endpoint.port for x in s.endpoints})
        assert back.active_datacenter == "dc2"  # the hold-down runs on the pool's clock
        assert {x.datacenter for x in back.endpoints} == {"dc1", "dc2"}
        clock.advance(HOLD_DOWN - 1.0)
        assert (await served_by(pool)).datacenter == "dc2"
        assert pool.snapshot().active_datacenter == "dc2"
        clock.advance(1.5)
        assert (await served_by(pool)).port == 9001
        failback = await next_event(stream, EventKind.FAILBACK)
        assert failback.datacenter == "dc1"
        assert not pool.snapshot().failed_over
