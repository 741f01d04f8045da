"""Filtering, ordering and failover decisions of prepared-query execution (Consul 1.0.8)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.testing.consul.prepared_query_execution import (
    RemoteFailed,
    failover_targets,
    filter_instances,
    limited,
    move_node_first,
    rpc_rendering,
    run_failover,
    shuffled,
)


def entry(
    service_id: str,
    *statuses: str,
    node: str = "n1",
    tags: tuple[str, ...] = (),
    meta: dict[str, str] | None = None,
) -> dict[str, Any]:
    checks = [
        {"CheckID": f"{service_id}-check{i}", "Status": status} for i, status in enumerate(statuses)
    ]
    return {
        "Node": {"Node": node, "Meta": meta},
        "Service": {"ID": service_id, "Tags": list(tags)},
        "Checks": checks,
    }


def service(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Service": "svc",
        "Failover": {"NearestN": 0, "Datacenters": None},
        "OnlyPassing": False,
        "IgnoreCheckIDs": None,
        "Near": "",
        "Tags": None,
        "NodeMeta": None,
    }
    base.update(fields)
    return base


def ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["Service"]["ID"] for e in entries]


def test_critical_is_dropped_and_warning_kept_unless_only_passing() -> None:
    entries = [
        entry("a", "passing", "critical"),
        entry("b", "passing", "warning"),
        entry("c", "passing", "passing"),
    ]
    assert ids(filter_instances(entries, service())) == ["b", "c"]
    assert ids(filter_instances(entries, service(OnlyPassing=True))) == ["c"]


def test_ignored_check_ids_do_not_count() -> None:
    entries = [entry("a", "passing", "critical")]
    assert ids(filter_instances(entries, service(IgnoreCheckIDs=["a-check1"]))) == ["a"]


def test_tags_required_and_negated_case_insensitively() -> None:
    entries = [
        entry("a", tags=("primary", "V1")),
        entry("b", tags=("secondary", "v1")),
        entry("c", tags=("v2",)),
        entry("x2", tags=("external", "v2")),
    ]
    assert ids(filter_instances(entries, service(Tags=["v1"]))) == ["a", "b"]
    assert ids(filter_instances(entries, service(Tags=["!v2"]))) == ["a", "b"]
    assert ids(filter_instances(entries, service(Tags=["v1", "!PRIMARY"]))) == ["b"]
    assert ids(filter_instances(entries, service(Tags=["nope"]))) == []


def test_node_meta_must_match_every_pair() -> None:
    entries = [
        entry("a", meta={"rack": "r1", "zone": "z1"}),
        entry("b", meta={"rack": "r2"}),
        entry("c", meta=None),
    ]
    assert ids(filter_instances(entries, service(NodeMeta={"rack": "r1"}))) == ["a"]
    assert ids(filter_instances(entries, service(NodeMeta={"rack": "r1", "zone": "z2"}))) == []


def test_shuffle_reaches_every_order() -> None:
    entries = [entry(name) for name in "abc"]
    rng = random.Random(7)
    orders = Counter(tuple(ids(shuffled(entries, rng))) for _ in range(600))
    assert len(orders) == 6
    assert min(orders.values()) > 50


def test_move_node_first_swaps_the_first_instance_on_that_node() -> None:
    entries = [entry("x1", node="x1"), entry("a", node="n1"), entry("b", node="n1")]
    assert ids(move_node_first(entries, "n1")) == ["a", "x1", "b"]
    assert ids(move_node_first(entries, "unknown")) == ["x1", "a", "b"]


@pytest.mark.parametrize(("limit", "count"), [(None, 4), (0, 4), (-1, 4), (2, 2), (9, 4)])
def test_limit(limit: int | None, count: int) -> None:
    assert len(limited([entry(n) for n in "abcd"], limit)) == count


@pytest.mark.parametrize(
    ("failover", "others", "targets"),
    [
        ({"NearestN": 1, "Datacenters": None}, ["dc2", "dc3"], ["dc2"]),
        ({"NearestN": 0, "Datacenters": ["dc2"]}, ["dc2"], ["dc2"]),
        ({"NearestN": 5, "Datacenters": None}, ["dc2", "dc3"], ["dc2", "dc3"]),
        ({"NearestN": 1, "Datacenters": ["dc3", "dc2"]}, ["dc2", "dc3"], ["dc2", "dc3"]),
        ({"NearestN": 0, "Datacenters": ["nope", "dc1", "dc3"]}, ["dc2", "dc3"], ["dc3"]),
        ({"NearestN": 0, "Datacenters": None}, ["dc2"], []),
    ],
)
def test_failover_targets(failover: dict[str, Any], others: list[str], targets: list[str]) -> None:
    assert failover_targets(failover, others) == targets


@settings(deadline=None)
@given(
    st.integers(0, 5),
    st.lists(st.sampled_from(["dc2", "dc3", "dc4", "nope"]), max_size=5),
)
def test_failover_targets_properties(nearest: int, listed: list[str]) -> None:
    others = ["dc2", "dc3", "dc4"]
    targets = failover_targets({"NearestN": nearest, "Datacenters": listed}, others)
    assert targets[: min(nearest, 3)] == others[: min(nearest, 3)]
    assert set(targets) <= set(others)
    assert "nope" not in targets


def test_failover_stops_at_the_first_datacenter_with_instances() -> None:
    answers = {"dc2": [], "dc3": [entry("y")], "dc4": [entry("z")]}
    outcome = run_failover(["dc2", "dc3", "dc4"], lambda dc: answers[dc])
    assert ids(outcome.nodes) == ["y"]
    assert (outcome.datacenter, outcome.failovers) == ("dc3", 2)


def test_failover_with_everything_empty_names_the_last_datacenter_tried() -> None:
    outcome = run_failover(["dc2"], lambda dc: [])
    assert (outcome.nodes, outcome.datacenter, outcome.failovers) == ([], "dc2", 1)


def test_failover_to_a_dead_datacenter_counts_it_but_names_none() -> None:
    def attempt(dc: str) -> list[dict[str, Any]]:
        raise RemoteFailed(dc)

    outcome = run_failover(["dc2"], attempt)
    assert (outcome.nodes, outcome.datacenter, outcome.failovers) == ([], None, 1)


def test_dead_datacenter_after_an_empty_one_keeps_the_empty_ones_name() -> None:
    def attempt(dc: str) -> list[dict[str, Any]]:
        if dc == "dc3":
            raise RemoteFailed(dc)
        return []

    outcome = run_failover(["dc2", "dc3"], attempt)
    assert (outcome.datacenter, outcome.failovers) == ("dc2", 2)


def test_rpc_rendering_turns_empty_tag_lists_into_null() -> None:
    source = entry("a", "passing", tags=())
    source["Checks"][0]["ServiceTags"] = []
    tagged = entry("b", "passing", tags=("v1",))
    tagged["Checks"][0]["ServiceTags"] = ["v1"]
    rendered = rpc_rendering([source, tagged])
    assert rendered[0]["Service"]["Tags"] is None
    assert rendered[0]["Checks"][0]["ServiceTags"] is None
    assert rendered[1]["Service"]["Tags"] == ["v1"]
    assert rendered[1]["Checks"][0]["ServiceTags"] == ["v1"]
    assert source["Service"]["Tags"] == []  # the input is not modified
