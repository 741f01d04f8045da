"""Warm standby datacenters: the failover order, the query's filters, and the standby source
against the emulator (two datacenters)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.consul.models import ServiceEntry
from mcresolve.sources import Resolution, from_target
from mcresolve.sources.composite import ResilientSource
from mcresolve.sources.standby import (
    QueryFilters,
    StandbySource,
    failover_order,
    standby_plan,
    view_of_definition,
)
from mcresolve.testing.consul.http_api import AgentHttpApi
from mcresolve.testing.consul.prepared_query_execution import filter_instances
from support import Cluster, Instance, consul_cluster

from .helpers import next_matching

SERVICE = "storage-object-minio"
DC1: list[Instance] = [("minio-dc1-a", 9001, ["minio", "v1"]), ("minio-dc1-b", 9002, ["minio"])]
DC2: list[Instance] = [
    ("minio-dc2-a", 9101, ["minio", "v1"]),
    ("minio-dc2-b", 9102, ["minio", "V2"]),  # excluded by the query's "!v2" (case-insensitive)
    ("minio-dc2-c", 9103, ["other"]),  # lacks "minio"
    ("minio-dc2-d", 9104, ["minio"]),
]
QUERY: dict[str, Any] = {
    "Name": SERVICE,
    "Service": {
        "Service": SERVICE,
        "Tags": ["minio", "!v2"],
        "OnlyPassing": True,
        "Failover": {"Datacenters": ["dc2"]},
    },
}
SLOW = "refresh=5m"


@pytest.fixture(params=["1.0.8", "1.21"])
def consul_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def cluster(consul_version: str) -> AsyncIterator[Cluster]:
    async with consul_cluster(consul_version, SERVICE, DC1, DC2, query=QUERY) as bed:
        yield bed


def in_dc(resolution: Resolution, dc: str) -> set[int]:
    return {e.port for e in resolution.endpoints if e.datacenter == dc}


def standby_of(source: ResilientSource) -> StandbySource:
    standby = source.primary
    assert isinstance(standby, StandbySource)
    return standby


# --- the order, pure -----------------------------------------------------------------------


def test_failover_order_follows_consul_query_failover() -> None:
    others = ["dc2", "dc3", "dc4"]  # nearest first
    assert failover_order({"Datacenters": ["dc3", "dc9", "dc2"]}, others) == ("dc3", "dc2")
    assert failover_order({"NearestN": 2, "Datacenters": ["dc4", "dc2"]}, others) == (
        "dc2",
        "dc3",
        "dc4",
    )
    targets = {"Targets": [{"Peer": "east"}, {"Datacenter": "dc4"}, {"Datacenter": "dc2"}]}
    assert failover_order(targets, others) == ("dc4", "dc2")
    # the known datacenters unknown: every listed one counts, NearestN cannot be resolved
    assert failover_order({"NearestN": 3, "Datacenters": ["dc9"]}, None) == ("dc9",)
    assert failover_order({}, others) == ()


def test_plan_offers_the_next_datacenters_after_the_answering_one() -> None:
    order = ("dc2", "dc3", "dc4")
    local = standby_plan(order, "dc1", "dc1", 1)
    assert (local.offered, local.watched) == (("dc2",), ("dc2",))
    failed_over = standby_plan(order, "dc2", "dc1", 1)
    assert failed_over.offered == ("dc3",)
    assert failed_over.watched == ("dc2", "dc3")  # dc2's watch stays up across the failover
    assert standby_plan(order, "dc4", "dc1", 2).offered == ()
    assert standby_plan(order, "dc1", "dc1", 0) == standby_plan((), "dc1", "dc1", 1)


def test_a_query_on_a_peer_gets_no_standby() -> None:
    definition = {"Query": {"Service": {"Service": "s", "Peer": "east", "Failover": {}}}}
    assert view_of_definition(definition, ["dc2"], "dc1") is None


# --- the filters: never an instance the query would not answer ---------------------------

TAGS = ["a", "b", "A", "c"]
STATUSES = ["passing", "warning", "critical"]


@st.composite
def entries(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for index in range(draw(st.integers(min_value=0, max_value=8))):
        checks = [
            {"CheckID": f"c{index}-{n}", "Status": draw(st.sampled_from(STATUSES))}
            for n in range(draw(st.integers(min_value=0, max_value=2)))
        ]
        out.append(
            {
                "Node": {
                    "Node": f"n{index}",
                    "Address": "127.0.0.1",
                    "Meta": draw(
                        st.dictionaries(
                            st.sampled_from(["zone", "rack"]), st.sampled_from(["1", "2"])
                        )
                    ),
                },
                "Service": {
                    "ID": f"s{index}",
                    "Service": "svc",
                    "Port": 9000 + index,
                    "Tags": draw(st.lists(st.sampled_from(TAGS), max_size=3)),
                    "Meta": draw(
                        st.dictionaries(st.sampled_from(["v", "w"]), st.sampled_from(["1", "2"]))
                    ),
                },
                "Checks": checks,
            }
        )
    return out


@st.composite
def service_blocks(draw: st.DrawFn) -> dict[str, Any]:
    tags = draw(st.lists(st.sampled_from(["a", "b", "!a", "!c", "B"]), max_size=3))
    return {
        "Service": "svc",
        "Tags": tags,
        "OnlyPassing": draw(st.booleans()),
        "NodeMeta": draw(
            st.dictionaries(
                st.sampled_from(["zone", "rack"]), st.sampled_from(["1", "2"]), max_size=1
            )
        ),
        "ServiceMeta": draw(
            st.dictionaries(st.sampled_from(["v", "w"]), st.sampled_from(["1", "2"]), max_size=1)
        ),
        "Failover": {"Datacenters": ["dc2"]},
    }


@settings(max_examples=300, deadline=None)
@given(entries(), service_blocks())
def test_standby_set_is_within_what_the_query_answers(
    raw: list[dict[str, Any]], service: dict[str, Any]
) -> None:
    """The standby set (``?passing`` instances the query's filters keep) is a subset of the
    emulator's own prepared-query filtering of the same instances, and equal to it when the
    query asks for passing instances only (the emulator's filtering has no ``ServiceMeta``,
    Consul 1.0.8 had none: the standby set is then stricter, still a subset)."""
    view = view_of_definition({"Query": {"Service": service}}, ["dc2"], "dc1")
    assert view is not None and view.filters is not None
    parsed = [ServiceEntry.from_json(entry) for entry in raw]
    standby = {e.service.id for e in parsed if e.status == "passing" and view.filters.keeps(e)}
    answered = {entry["Service"]["ID"] for entry in filter_instances(raw, service)}
    assert standby <= answered
    if service["OnlyPassing"] and not service["ServiceMeta"]:
        assert standby == answered


def test_filters_match_tags_case_insensitively_and_exclude_bang_tags() -> None:
    entry = ServiceEntry.from_json(
        {
            "Node": {"Node": "n", "Address": "127.0.0.1", "Meta": {"zone": "1"}},
            "Service": {"ID": "s", "Service": "svc", "Port": 1, "Tags": ["Minio"], "Meta": {}},
        }
    )
    assert QueryFilters(tags=("minio",), node_meta=(("zone", "1"),)).keeps(entry)
    assert not QueryFilters(tags=("!MINIO",)).keeps(entry)
    assert not QueryFilters(service_meta=(("v", "1"),)).keeps(entry)


# --- the source against the emulator -----------------------------------------------------


async def test_standby_set_follows_the_query_and_matches_its_execution_in_dc2(
    cluster: Cluster,
) -> None:
    async with from_target(
        f"consul+query://{SERVICE}?{SLOW}", registry=cluster.registry, consul=cluster.dc1
    ) as source:
        assert isinstance(source, ResilientSource)
        warm = await next_matching(source, lambda r: bool(in_dc(r, "dc2")))
        assert in_dc(warm, "dc1") == {9001, 9002} and warm.datacenter == "dc1"
        assert in_dc(warm, "dc2") == {9101, 9104}
        assert warm.preference == ("dc2",)
        assert standby_of(source).watched == ("dc2",)
        # what the query itself answers from dc2 once dc1 is gone: the same instances
        for service_id, _, _ in DC1:
            cluster.flip("dc1", service_id, "critical")
        executed = await cluster.dc1.query_execute(SERVICE)
        assert executed.datacenter == "dc2"
        assert {e.service.port for e in executed.entries} == in_dc(warm, "dc2")
        # a standby instance going critical leaves the standby set
        moved = await next_matching(source, lambda r: r.datacenter == "dc2")
        assert in_dc(moved, "dc2") == {9101, 9104}
        cluster.flip("dc2", "minio-dc2-d", "critical")
        gone = await next_matching(source, lambda r: in_dc(r, "dc2") == {9101})
        assert in_dc(gone, "dc1") == set()


async def test_standby_off_adds_nothing(cluster: Cluster) -> None:
    async with from_target(
        f"consul+query://{SERVICE}?{SLOW}&standby=0", registry=cluster.registry
    ) as source:
        resolution = await next_matching(source, lambda r: bool(r.endpoints))
        assert isinstance(source, ResilientSource)
        assert not isinstance(source.primary, StandbySource)
        assert in_dc(resolution, "dc2") == set()


async def test_query_the_token_cannot_read_learns_from_executions(cluster: Cluster) -> None:
    """``/explain`` refused (403, as for a token without ``query:read``): the order is the
    datacenters executions answered from, and only instances they answered are offered."""
    faults = cluster.consul.dc("dc1").faults
    faults.path_prefix = f"/v1/query/{SERVICE}/explain"
    faults.fail_next(50, status=403, message="Permission denied")
    api = AgentHttpApi.of(cluster.consul.dc("dc1"))
    async with from_target(
        f"consul+query://{SERVICE}?{SLOW}", registry=cluster.registry, consul=cluster.dc1
    ) as source:
        assert isinstance(source, ResilientSource)
        standby = standby_of(source)
        await next_matching(source, lambda r: bool(r.endpoints))
        await next_matching(source, lambda _: standby.view is not None)
        assert api.requests_served(f"/v1/query/{SERVICE}/explain") >= 1
        assert standby.view is not None and standby.view.filters is None
        assert standby.view.order == ()
        # dc1 lost: Consul answers from dc2, which becomes the learnt order
        for service_id, _, _ in DC1:
            cluster.flip("dc1", service_id, "critical")
        await next_matching(source, lambda r: r.datacenter == "dc2")
        assert standby.view.order == ("dc2",)
        # dc1 back: dc2's answered instances stay warm (and nothing the query did not answer)
        cluster.flip("dc1", "minio-dc1-a", "passing")
        back = await next_matching(
            source, lambda r: r.datacenter == "dc1" and bool(in_dc(r, "dc2"))
        )
        assert in_dc(back, "dc1") == {9001}
        assert in_dc(back, "dc2") == {9101, 9104}


async def test_stage2_failover_option_watches_dc2_with_the_targets_filters(
    cluster: Cluster,
) -> None:
    async with from_target(
        f"consul://{SERVICE}?tag=minio&failover=dc2", registry=cluster.registry
    ) as source:
        warm = await next_matching(source, lambda r: bool(in_dc(r, "dc2")))
        assert in_dc(warm, "dc2") == {9101, 9102, 9104}  # tag=minio, as the target asks
        assert warm.preference == ("dc2",)
        for service_id, _, _ in DC1:
            cluster.flip("dc1", service_id, "critical")
        # the local datacenter empty: the standby set alone is published
        only_dc2 = await next_matching(
            source, lambda r: not any(e.port < 9100 for e in r.endpoints)
        )
        assert in_dc(only_dc2, "dc2") == {9101, 9102, 9104}


async def test_nearest_n_order_comes_from_the_catalogs_rtt_sorted_datacenters(
    cluster: Cluster,
) -> None:
    """``NearestN`` without a datacenter list: the order is ``/v1/catalog/datacenters`` (Consul
    sorts it by round-trip time), the local datacenter left out."""
    await cluster.dc1.query_create(
        {"Name": "nearest", "Service": {"Service": SERVICE, "Failover": {"NearestN": 1}}}
    )
    async with from_target(
        f"consul+query://nearest?{SLOW}", registry=cluster.registry, consul=cluster.dc1
    ) as source:
        assert isinstance(source, ResilientSource)
        warm = await next_matching(source, lambda r: bool(in_dc(r, "dc2")))
        view = standby_of(source).view
        assert view is not None and view.order == ("dc2",)
        # no tag filter in this query: every passing dc2 instance
        assert in_dc(warm, "dc2") == {port for _, port, _ in DC2}
