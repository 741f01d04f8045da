"""The pool end to end against the Consul emulator: stage 2 and stage 3 targets."""

from __future__ import annotations

import pytest

from mcresolve.balancer.outlier import OutlierPolicy
from mcresolve.endpoint import Endpoint
from mcresolve.pool import EndpointPool, PoolPolicy, PoolSnapshot
from mcresolve.pool.events import EventKind
from support import Cluster

from .conftest import DC1, SERVICE
from .helpers import next_event, snapshot_until


@pytest.fixture(params=["1.0.8", "1.21"])
def consul_version(request: pytest.FixtureRequest) -> str:
    """Every test here runs against the recorded 1.0.8 and the modern 1.21 emulator."""
    return str(request.param)


HEALTH = f"consul://{SERVICE}?tag=minio"
#: Long periodic refresh: reactions must come from the health watch or refresh_now(). Without
#: warm standby datacenters (``standby=0``): these tests are about Consul's own answers (the
#: standby behaviour is tested in tests/pool/test_standby.py).
QUERY = f"consul+query://{SERVICE}?refresh=5m&standby=0"


def ports(snapshot: PoolSnapshot) -> set[int]:
    return {s.endpoint.port for s in snapshot.endpoints}


@pytest.mark.parametrize("target", [HEALTH, QUERY], ids=["stage2", "stage3"])
async def test_critical_check_removes_the_endpoint_from_the_pool(
    cluster: Cluster, target: str
) -> None:
    async with EndpointPool(target, registry=cluster.registry, consul=cluster.dc1) as pool:
        snapshot = await pool.wait_ready(10)
        assert ports(snapshot) == {9001, 9002, 9003}
        assert snapshot.local_datacenter == "dc1"  # asked the agent (/v1/agent/self)
        stream = pool.stream_events()
        cluster.flip("dc1", "minio-dc1-b", "critical")
        removed = await next_event(stream, EventKind.REMOVED)
        assert removed.endpoint is not None and removed.endpoint.port == 9002
        assert ("127.0.0.1", 9002) not in pool.picker.keys
        assert {pool.pick().port for _ in range(50)} <= {9001, 9003}
        cluster.flip("dc1", "minio-dc1-b", "passing")
        added = await next_event(stream, EventKind.ADDED)
        assert added.endpoint is not None and added.endpoint.port == 9002


async def test_stage3_fails_over_to_dc2_and_back(cluster: Cluster) -> None:
    async with EndpointPool(QUERY, registry=cluster.registry, consul=cluster.dc1) as pool:
        await pool.wait_ready(10)
        stream = pool.stream_events()
        for service_id, _, _ in DC1:
            cluster.flip("dc1", service_id, "critical")
        failover = await next_event(stream, EventKind.FAILOVER)
        assert failover.datacenter == "dc2"
        snapshot = await snapshot_until(pool, lambda s: ports(s) == {9101, 9102})
        assert snapshot.failed_over and snapshot.active_datacenter == "dc2"
        assert pool.pick().datacenter == "dc2"
        cluster.flip("dc1", "minio-dc1-a", "passing")
        back = await next_event(stream, EventKind.FAILBACK)
        assert back.datacenter == "dc1"
        snapshot = await snapshot_until(pool, lambda s: ports(s) == {9001})
        assert not snapshot.failed_over and pool.pick().port == 9001


async def test_every_endpoint_ejected_re_executes_the_prepared_query(cluster: Cluster) -> None:
    outlier = OutlierPolicy(base_ejection=60.0)
    async with EndpointPool(
        QUERY, registry=cluster.registry, consul=cluster.dc1, policy=PoolPolicy(outlier=outlier)
    ) as pool:
        await pool.wait_ready(10)
        stream = pool.stream_events()
        source = pool.source
        primary = source.primary  # type: ignore[attr-defined]
        before = primary.executions

        async def refused(endpoint: Endpoint) -> None:
            raise ConnectionRefusedError(f"{endpoint} is down")

        with pytest.raises(Exception):  # noqa: B017 - every attempt refused, any CallFailed
            await pool.call(refused, deadline=0.5)
        await next_event(stream, EventKind.ALL_EJECTED)
        await snapshot_until(pool, lambda s: primary.executions > before)
        assert pool.snapshot().panic  # everything ejected: the picker spreads over all


async def test_agent_down_keeps_the_last_known_good_set(cluster: Cluster) -> None:
    async with EndpointPool(HEALTH, registry=cluster.registry) as pool:
        good = await pool.wait_ready(10)
        stream = pool.stream_events()
        await cluster.consul.stop_agent("dc1")
        error = await next_event(stream, EventKind.SOURCE_ERROR)
        assert error.detail
        snapshot = pool.snapshot()
        assert snapshot.stale and ports(snapshot) == ports(good)
        assert {pool.pick().port for _ in range(30)} <= {9001, 9002, 9003}
        await cluster.consul.start_agent("dc1")
        await next_event(stream, EventKind.SOURCE_RECOVERED)
        assert not pool.snapshot().stale
