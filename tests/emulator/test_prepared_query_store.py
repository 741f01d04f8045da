"""PreparedQueryStore against small in-test datacenters shaped like the golden recordings.

The fake ``DatacenterView``/``ClusterView`` below hold the instances of the recorded topology
(``storage-object-minio`` in dc1 and dc2, ``other-svc``) and let a test flip check statuses and
take a datacenter down; expectations come from 06_prepared_queries, 08_errors and 10_dc2_failure.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from emulator_fakes import FakeCluster

from mcresolve.testing.consul.contracts import (
    EmulatorError,
    HealthEntry,
    HttpAnswer,
    QueryNotFound,
)
from mcresolve.testing.consul.prepared_query import PreparedQueryStore

SERVICE = "storage-object-minio"


def _instance(
    dc: str, node: str, service_id: str, port: int, tags: list[str], *, agent: bool, service: str
) -> HealthEntry:
    checks = []
    if agent:
        checks.append({"Node": node, "CheckID": "serfHealth", "Status": "passing"})
    checks.append(
        {
            "Node": node,
            "CheckID": f"{service_id}-check",
            "Status": "passing",
            "ServiceID": service_id,
        }
    )
    return {
        "Node": {"ID": "", "Node": node, "Address": "127.0.0.1", "Datacenter": dc, "Meta": None},
        "Service": {"ID": service_id, "Service": service, "Tags": tags, "Port": port},
        "Checks": checks,
    }


class FakeDatacenter:
    """A ``DatacenterView`` over a fixed list of instances whose check statuses tests flip."""

    def __init__(self, name: str, agent_node: str, instances: list[HealthEntry]) -> None:
        self._name = name
        self._agent_node = agent_node
        self.instances = instances
        self.index = 100
        self.store: PreparedQueryStore | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def agent_node(self) -> str:
        return self._agent_node

    @property
    def prepared_queries(self) -> PreparedQueryStore:
        assert self.store is not None
        return self.store

    def health_service(self, service: str) -> list[HealthEntry]:
        found = [e for e in self.instances if e["Service"]["Service"].lower() == service.lower()]
        found.sort(key=lambda e: (e["Node"]["Node"], e["Service"]["ID"]))
        return copy.deepcopy(found)

    def node(self, node: str) -> dict[str, Any] | None:
        for entry in self.instances:
            if entry["Node"]["Node"] == node:
                return dict(entry["Node"])
        return None

    def sort_near(self, entries: Sequence[HealthEntry], near: str) -> list[HealthEntry]:
        target = self._agent_node if near == "_agent" else near
        if target != self._agent_node:  # only the agent's node has a coordinate
            return list(entries)
        return sorted(entries, key=lambda e: e["Node"]["Node"] != target)

    def next_index(self) -> int:
        self.index += 1
        return self.index

    def execute_prepared_query(self, name_or_id: str) -> dict[str, Any]:
        assert self.store is not None
        return self.store.execute(name_or_id)

    def set_status(self, service_id: str, status: str) -> None:
        for entry in self.instances:
            if entry["Service"]["ID"] == service_id:
                entry["Checks"][-1]["Status"] = status

    def set_all(self, status: str, service: str = SERVICE) -> None:
        for entry in self.instances:
            if entry["Service"]["Service"] == service:
                entry["Checks"][-1]["Status"] = status


def topology() -> tuple[FakeDatacenter, FakeDatacenter, FakeCluster]:
    dc1 = FakeDatacenter(
        "dc1",
        "n1",
        [
            _instance(
                "dc1", "n1", "minio-dc1-a", 9001, ["primary", "v1"], agent=True, service=SERVICE
            ),
            _instance(
                "dc1", "n1", "minio-dc1-b", 9002, ["secondary", "v1"], agent=True, service=SERVICE
            ),
            _instance("dc1", "n1", "minio-dc1-c", 9003, ["v2"], agent=True, service=SERVICE),
            _instance(
                "dc1", "n1", "minio-dc1-http", 9004, ["http", "v1"], agent=True, service=SERVICE
            ),
            _instance(
                "dc1",
                "minio-node-x1",
                "minio-dc1-x1",
                9005,
                ["external", "v1"],
                agent=False,
                service=SERVICE,
            ),
            _instance(
                "dc1",
                "minio-node-x2",
                "minio-dc1-x2",
                9006,
                ["external", "v2"],
                agent=False,
                service=SERVICE,
            ),
            _instance("dc1", "n1", "other-1", 7000, [], agent=True, service="other-svc"),
        ],
    )
    dc2 = FakeDatacenter(
        "dc2",
        "n2",
        [
            _instance(
                "dc2", "n2", "minio-dc2-a", 9101, ["primary", "v1"], agent=True, service=SERVICE
            ),
            _instance(
                "dc2", "n2", "minio-dc2-b", 9102, ["secondary", "v1"], agent=True, service=SERVICE
            ),
            _instance(
                "dc2",
                "minio-node-y1",
                "minio-dc2-y1",
                9105,
                ["external", "v1"],
                agent=False,
                service=SERVICE,
            ),
        ],
    )
    cluster = FakeCluster([dc1, dc2])
    dc1.store = PreparedQueryStore(dc1, cluster, rng=random.Random(1))
    dc2.store = PreparedQueryStore(dc2, cluster, rng=random.Random(2))
    return dc1, dc2, cluster


def call(
    dc: FakeDatacenter, method: str, url: str, body: Any = None, raw: bytes | None = None
) -> HttpAnswer:
    parts = urlsplit(url)
    assert parts.path.startswith("/v1/query")
    payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    query = parse_qs(parts.query, keep_blank_values=True)
    return dc.prepared_queries.handle(method, parts.path[len("/v1/query") :], query, payload)


RECORDED_QUERIES: list[dict[str, Any]] = [
    {"Name": SERVICE, "Service": {"Service": SERVICE, "Failover": {"NearestN": 1}}},
    {
        "Name": "minio-dc2-failover",
        "Service": {
            "Service": SERVICE,
            "Failover": {"Datacenters": ["dc2"]},
            "OnlyPassing": True,
            "Tags": ["v1"],
        },
        "DNS": {"TTL": "10s"},
    },
    {
        "Name": "minio-any-nonfailing",
        "Service": {
            "Service": SERVICE,
            "Failover": {"Datacenters": ["dc2"]},
            "OnlyPassing": False,
            "Tags": ["!v2"],
        },
    },
    {"Name": "minio-nofailover", "Service": {"Service": SERVICE}},
]


@pytest.fixture
def world() -> tuple[FakeDatacenter, FakeDatacenter, FakeCluster]:
    dc1, dc2, cluster = topology()
    for definition in RECORDED_QUERIES:
        answer = call(dc1, "POST", "/v1/query", definition)
        assert answer.status == 200, answer.body
    return dc1, dc2, cluster


def execute(dc: FakeDatacenter, name: str, params: str = "") -> dict[str, Any]:
    answer = call(dc, "GET", f"/v1/query/{name}/execute{params}")
    assert answer.status == 200, answer.body
    assert answer.json_body
    assert answer.headers == {
        "X-Consul-Index": "0",
        "X-Consul-Knownleader": "true",
        "X-Consul-Lastcontact": "0",
        "X-Consul-Effective-Consistency": "leader",
    }
    result: dict[str, Any] = answer.body
    return result


def service_ids(result: dict[str, Any]) -> set[str]:
    return {node["Service"]["ID"] for node in result["Nodes"]}


DC1_ALL = {
    "minio-dc1-a",
    "minio-dc1-b",
    "minio-dc1-c",
    "minio-dc1-http",
    "minio-dc1-x1",
    "minio-dc1-x2",
}
DC2_ALL = {"minio-dc2-a", "minio-dc2-b", "minio-dc2-y1"}


# ---------------------------------------------------------------------------- CRUD


def test_empty_list_has_index_zero() -> None:
    dc1, _, _ = topology()
    answer = call(dc1, "GET", "/v1/query")
    assert (answer.status, answer.body, answer.json_body) == (200, [], True)
    assert answer.headers["X-Consul-Index"] == "0"


def test_create_list_and_get(world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster]) -> None:
    dc1, _, _ = world
    listed = call(dc1, "GET", "/v1/query")
    assert listed.status == 200
    ids = [q["ID"] for q in listed.body]
    assert ids == sorted(ids)
    assert [q["CreateIndex"] for q in sorted(listed.body, key=lambda q: q["CreateIndex"])] == [
        101,
        102,
        103,
        104,
    ]
    assert listed.headers == {
        "X-Consul-Index": "104",
        "X-Consul-Knownleader": "true",
        "X-Consul-Lastcontact": "0",
        "X-Consul-Effective-Consistency": "leader",
    }
    by_name = {q["Name"]: q for q in listed.body}
    failover = by_name["minio-dc2-failover"]
    assert failover["Service"]["Failover"] == {"NearestN": 0, "Datacenters": ["dc2"]}
    assert failover["DNS"] == {"TTL": "10s"}
    got = call(dc1, "GET", f"/v1/query/{failover['ID']}")
    assert (got.status, got.body) == (200, [failover])
    assert got.headers["X-Consul-Index"] == "104"


def test_lowercase_keys_create(world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster]) -> None:
    dc1, _, _ = world
    answer = call(
        dc1, "POST", "/v1/query", {"name": "lowercase-keys-q", "service": {"service": SERVICE}}
    )
    assert answer.status == 200
    assert execute(dc1, "lowercase-keys-q")["Service"] == SERVICE


@pytest.mark.parametrize(
    ("url", "status", "message", "failed_read_headers"),
    [
        (
            f"/v1/query/{SERVICE}",
            500,
            "failed prepared query lookup: index error: UUID must be 36 characters",
            True,
        ),
        ("/v1/query/00000000-0000-0000-0000-000000000000", 404, "Query not found", False),
        ("/v1/query/no-such-query/execute", 404, "Query not found", False),
        ("/v1/query/00000000-0000-0000-0000-000000000000/execute", 404, "Query not found", False),
        ("/v1/query/no-such-query/explain", 404, "Query not found", False),
        (
            f"/v1/query/{SERVICE}/execute?limit=abc",
            500,
            'Bad limit: strconv.Atoi: parsing "abc": invalid syntax',
            False,
        ),
        (
            f"/v1/query/{SERVICE}/execute?dc=dc2",
            500,
            "rpc error making call: Query not found",
            True,
        ),
        (f"/v1/query/{SERVICE}/execute?dc=nope", 500, "No path to datacenter", True),
        ("/v1/query?dc=nope", 500, "No path to datacenter", True),
        (
            f"/v1/query/{SERVICE}/execute?stale&consistent",
            400,
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
            False,
        ),
        ("/v1/query?wait=5", 400, "Invalid wait time", False),
        ("/v1/query?index=-1", 400, "Invalid index", False),
    ],
)
def test_read_errors(
    world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster],
    url: str,
    status: int,
    message: str,
    failed_read_headers: bool,
) -> None:
    dc1, _, _ = world
    answer = call(dc1, "GET", url)
    assert (answer.status, answer.body, answer.json_body) == (status, message, False)
    expected = {"X-Consul-Index": "0", "X-Consul-Knownleader": "false", "X-Consul-Lastcontact": "0"}
    assert dict(answer.headers) == (expected if failed_read_headers else {})


@pytest.mark.parametrize(
    ("body", "raw", "status", "message"),
    [
        (
            {"Name": SERVICE, "Service": {"Service": SERVICE}},
            None,
            500,
            f"name '{SERVICE}' aliases an existing query name",
        ),
        (
            {"Name": "bad-q", "Service": {}},
            None,
            500,
            "Invalid prepared query: Must provide a Service name to query",
        ),
        (
            {"Name": "bad-ttl-q", "Service": {"Service": SERVICE}, "DNS": {"TTL": "ten"}},
            None,
            500,
            "Invalid prepared query: Bad DNS TTL 'ten': time: invalid duration \"ten\"",
        ),
        (
            {"Name": "neg", "Service": {"Service": SERVICE, "Failover": {"NearestN": -1}}},
            None,
            500,
            "Invalid prepared query: Bad NearestN '-1', must be >= 0",
        ),
        (
            {
                "Name": "bad-tmpl-",
                "Template": {"Type": "bogus"},
                "Service": {"Service": "${name.suffix}"},
            },
            None,
            500,
            "failed compiling template: Bad Template.Type 'bogus'",
        ),
        (
            {
                "Name": "bad2-",
                "Template": {"Type": "name_prefix_match"},
                "Service": {"Service": "${nope}"},
            },
            None,
            500,
            "failed compiling template: Bad evaluation for '${nope}' in Service.Service: 1:3: "
            "unknown variable accessed: nope",
        ),
        (
            {"ID": "x", "Name": "with-id", "Service": {"Service": SERVICE}},
            None,
            500,
            "ID must be empty when creating a new prepared query",
        ),
        (
            {"Name": "sess", "Session": "abc", "Service": {"Service": SERVICE}},
            None,
            500,
            'invalid session "abc"',
        ),
        (None, b'{"Name": "x", ', 400, "Request decode failed: unexpected EOF"),
        (None, b"", 400, "Request decode failed: EOF"),
        (None, b"[]", 400, "Request decode failed: '' expected a map, got 'slice'"),
    ],
)
def test_create_errors(
    world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster],
    body: Any,
    raw: bytes | None,
    status: int,
    message: str,
) -> None:
    dc1, _, _ = world
    answer = call(dc1, "POST", "/v1/query", body, raw=raw)
    assert (answer.status, answer.body, dict(answer.headers)) == (status, message, {})
    assert len(call(dc1, "GET", "/v1/query").body) == 4


def test_unknown_failover_datacenter_is_accepted(
    world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster],
) -> None:
    dc1, _, _ = world
    body = {
        "Name": "bad-dc-failover",
        "Service": {"Service": SERVICE, "Failover": {"Datacenters": ["nope"]}},
    }
    assert call(dc1, "POST", "/v1/query", body).status == 200
    dc1.set_all("critical")
    result = execute(dc1, "bad-dc-failover")
    assert (result["Nodes"], result["Datacenter"], result["Failovers"]) == ([], "dc1", 0)


def test_update_keeps_create_index_and_delete(
    world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster],
) -> None:
    dc1, _, _ = world
    query = next(q for q in call(dc1, "GET", "/v1/query").body if q["Name"] == SERVICE)
    answer = call(
        dc1,
        "PUT",
        f"/v1/query/{query['ID']}",
        {
            "Name": SERVICE,
            "Service": {"Service": SERVICE, "Failover": {"NearestN": 1}, "OnlyPassing": True},
        },
    )
    assert (answer.status, answer.body) == (200, "")
    updated = call(dc1, "GET", f"/v1/query/{query['ID']}").body[0]
    assert updated["Service"]["OnlyPassing"] is True
    assert updated["CreateIndex"] == query["CreateIndex"]
    assert updated["ModifyIndex"] == dc1.index
    deleted = call(dc1, "DELETE", f"/v1/query/{query['ID']}")
    assert (deleted.status, deleted.body) == (200, "")
    assert call(dc1, "GET", f"/v1/query/{query['ID']}").status == 404
    assert call(dc1, "GET", "/v1/query").headers["X-Consul-Index"] == str(dc1.index)


@pytest.mark.parametrize(
    ("method", "url", "message"),
    [
        (
            "DELETE",
            "/v1/query/00000000-0000-0000-0000-000000000000",
            "Cannot modify non-existent prepared query: '00000000-0000-0000-0000-000000000000'",
        ),
        (
            "PUT",
            "/v1/query/00000000-0000-0000-0000-000000000000",
            "Cannot modify non-existent prepared query: '00000000-0000-0000-0000-000000000000'",
        ),
        (
            "DELETE",
            "/v1/query/not-a-uuid",
            "Prepared Query lookup failed: failed prepared query lookup: index error: "
            "UUID must be 36 characters",
        ),
    ],
)
def test_write_errors(
    world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster], method: str, url: str, message: str
) -> None:
    dc1, _, _ = world
    answer = call(
        dc1,
        method,
        url,
        {"Name": "z", "Service": {"Service": SERVICE}} if method == "PUT" else None,
    )
    assert (answer.status, answer.body, dict(answer.headers)) == (500, message, {})


def test_update_with_malformed_body(
    world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster],
) -> None:
    dc1, _, _ = world
    answer = call(dc1, "PUT", "/v1/query/00000000-0000-0000-0000-000000000000", raw=b"{")
    assert (answer.status, answer.body) == (400, "Request decode failed: unexpected EOF")


def test_wrong_methods(world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster]) -> None:
    dc1, _, _ = world
    answer = call(dc1, "PUT", "/v1/query", {"Name": "m", "Service": {"Service": SERVICE}})
    assert (answer.status, answer.body, dict(answer.headers)) == (
        405,
        "method PUT not allowed",
        {"Allow": "OPTIONS,GET,POST"},
    )
    answer = call(dc1, "POST", f"/v1/query/{SERVICE}/execute")
    assert (answer.status, answer.headers["Allow"]) == (405, "OPTIONS,GET,PUT,DELETE")


# ---------------------------------------------------------------------------- execution


def test_all_local_healthy(world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster]) -> None:
    dc1, _, _ = world
    result = execute(dc1, SERVICE)
    assert service_ids(result) == DC1_ALL
    assert {k: v for k, v in result.items() if k != "Nodes"} == {
        "Service": SERVICE,
        "DNS": {"TTL": ""},
        "Datacenter": "dc1",
        "Failovers": 0,
        "Index": 0,
        "LastContact": 0,
        "KnownLeader": True,
        "ConsistencyLevel": "leader",
    }
    assert list(result) == [
        "Service",
        "Nodes",
        "DNS",
        "Datacenter",
        "Failovers",
        "Index",
        "LastContact",
        "KnownLeader",
        "ConsistencyLevel",
    ]
    assert service_ids(execute(dc1, "minio-dc2-failover")) == {
        "minio-dc1-a",
        "minio-dc1-b",
        "minio-dc1-http",
        "minio-dc1-x1",
    }
    assert execute(dc1, "minio-dc2-failover")["DNS"] == {"TTL": "10s"}
    assert service_ids(execute(dc1, "minio-any-nonfailing")) == {
        "minio-dc1-a",
        "minio-dc1-b",
        "minio-dc1-http",
        "minio-dc1-x1",
    }
    by_id = next(
        q["ID"] for q in call(dc1, "GET", "/v1/query").body if q["Name"] == "minio-nofailover"
    )
    assert service_ids(execute(dc1, by_id)) == DC1_ALL
    assert service_ids(execute(dc1, SERVICE.upper())) == DC1_ALL  # names are case-insensitive


def test_limit_and_no_limit(world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster]) -> None:
    dc1, _, _ = world
    assert len(execute(dc1, SERVICE, "?limit=2")["Nodes"]) == 2
    assert len(execute(dc1, SERVICE, "?limit=0")["Nodes"]) == 6
    assert len(execute(dc1, SERVICE, "?limit=-1")["Nodes"]) == 6


def test_every_execution_is_shuffled(
    world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster],
) -> None:
    dc1, _, _ = world
    orders = {tuple(n["Service"]["ID"] for n in execute(dc1, SERVICE)["Nodes"]) for _ in range(20)}
    assert len(orders) >= 15


def test_near_agent_puts_the_agent_node_first(
    world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster],
) -> None:
    dc1, _, _ = world
    for _ in range(10):
        nodes = [n["Node"]["Node"] for n in execute(dc1, SERVICE, "?near=_agent")["Nodes"]]
        assert nodes[:4] == ["n1"] * 4
        assert sorted(nodes[4:]) == ["minio-node-x1", "minio-node-x2"]
    assert call(dc1, "GET", f"/v1/query/{SERVICE}/execute?near=unknown-node").status == 200


def test_some_local_unhealthy(world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster]) -> None:
    dc1, _, _ = world
    dc1.set_status("minio-dc1-a", "critical")
    dc1.set_status("minio-dc1-b", "warning")
    assert service_ids(execute(dc1, SERVICE)) == DC1_ALL - {"minio-dc1-a"}
    assert service_ids(execute(dc1, "minio-dc2-failover")) == {"minio-dc1-http", "minio-dc1-x1"}
    result = execute(dc1, "minio-any-nonfailing")
    assert service_ids(result) == {"minio-dc1-x1", "minio-dc1-http", "minio-dc1-b"}
    assert (result["Datacenter"], result["Failovers"]) == ("dc1", 0)


def test_all_local_critical_fails_over(
    world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster],
) -> None:
    dc1, _, _ = world
    dc1.set_all("critical")
    for name in (SERVICE, "minio-dc2-failover", "minio-any-nonfailing"):
        result = execute(dc1, name)
        assert service_ids(result) == DC2_ALL
        assert (result["Datacenter"], result["Failovers"]) == ("dc2", 1)
    assert execute(dc1, "minio-dc2-failover")["DNS"] == {"TTL": "10s"}
    result = execute(dc1, "minio-nofailover")
    assert (result["Nodes"], result["Datacenter"], result["Failovers"]) == ([], "dc1", 0)
    limited = execute(dc1, SERVICE, "?limit=1")
    assert len(limited["Nodes"]) == 1
    assert limited["Datacenter"] == "dc2"
    assert service_ids(execute(dc1, SERVICE, "?near=_agent")) == DC2_ALL


def test_all_local_warning_fails_over_only_when_only_passing(
    world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster],
) -> None:
    dc1, _, _ = world
    dc1.set_all("warning")
    result = execute(dc1, SERVICE)
    assert (service_ids(result), result["Datacenter"], result["Failovers"]) == (DC1_ALL, "dc1", 0)
    result = execute(dc1, "minio-dc2-failover")
    assert (service_ids(result), result["Datacenter"], result["Failovers"]) == (DC2_ALL, "dc2", 1)
    result = execute(dc1, "minio-any-nonfailing")
    assert service_ids(result) == {"minio-dc1-x1", "minio-dc1-a", "minio-dc1-http", "minio-dc1-b"}


def test_everything_critical_names_the_last_datacenter_tried(
    world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster],
) -> None:
    dc1, dc2, _ = world
    dc1.set_all("critical")
    dc2.set_all("critical")
    for name in (SERVICE, "minio-dc2-failover", "minio-any-nonfailing"):
        result = execute(dc1, name)
        assert (result["Nodes"], result["Datacenter"], result["Failovers"]) == ([], "dc2", 1)


def test_remote_down_is_swallowed(
    world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster],
) -> None:
    dc1, _, cluster = world
    dc1.set_all("critical")
    cluster.down.add("dc2")
    for name in (SERVICE, "minio-dc2-failover"):
        result = execute(dc1, name)
        assert (result["Nodes"], result["Datacenter"], result["Failovers"]) == ([], "dc1", 1)
    cluster.down.clear()
    assert execute(dc1, SERVICE)["Datacenter"] == "dc2"
    dc1.set_all("passing")
    result = execute(dc1, SERVICE)  # failback: local instances again
    assert (service_ids(result), result["Datacenter"], result["Failovers"]) == (DC1_ALL, "dc1", 0)


def test_explain(world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster]) -> None:
    dc1, _, _ = world
    answer = call(dc1, "GET", "/v1/query/minio-dc2-failover/explain")
    assert answer.status == 200
    stored = next(
        q for q in call(dc1, "GET", "/v1/query").body if q["Name"] == "minio-dc2-failover"
    )
    assert answer.body == {
        "Query": stored,
        "Index": 0,
        "LastContact": 0,
        "KnownLeader": True,
        "ConsistencyLevel": "leader",
    }
    assert answer.headers["X-Consul-Index"] == "0"


def test_python_execute_raises_query_not_found(
    world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster],
) -> None:
    dc1, _, _ = world
    with pytest.raises(QueryNotFound):
        dc1.prepared_queries.execute("no-such-query")
    assert dc1.execute_prepared_query(SERVICE)["Datacenter"] == "dc1"
    assert len(dc1.prepared_queries.execute(SERVICE, limit=2, near="_agent")["Nodes"]) == 2


# ---------------------------------------------------------------------------- templates


def test_templates(world: tuple[FakeDatacenter, FakeDatacenter, FakeCluster]) -> None:
    dc1, _, _ = world
    for body in (
        {
            "Name": "tmpl-",
            "Template": {"Type": "name_prefix_match"},
            "Service": {
                "Service": "${name.suffix}",
                "Failover": {"NearestN": 1},
                "OnlyPassing": True,
            },
        },
        {
            "Name": "geo-",
            "Template": {"Type": "name_prefix_match", "Regexp": "^geo-([^-]+)-(.+)$"},
            "Service": {"Service": "${match(2)}", "Tags": ["${match(1)}"]},
        },
        {
            "Name": "",
            "Template": {"Type": "name_prefix_match"},
            "Service": {"Service": "${name.full}"},
        },
    ):
        assert call(dc1, "POST", "/v1/query", body).status == 200
    assert service_ids(execute(dc1, f"tmpl-{SERVICE}")) == DC1_ALL
    explained = call(dc1, "GET", f"/v1/query/tmpl-{SERVICE}/explain").body["Query"]
    assert (explained["Name"], explained["Service"]["Service"]) == ("tmpl-", SERVICE)
    assert service_ids(execute(dc1, "tmpl-other-svc")) == {"other-1"}
    missing = execute(dc1, "tmpl-nonexistent-service")
    assert (missing["Service"], missing["Nodes"], missing["Datacenter"], missing["Failovers"]) == (
        "nonexistent-service",
        [],
        "dc2",
        1,
    )
    assert service_ids(execute(dc1, f"geo-primary-{SERVICE}")) == {"minio-dc1-a"}
    assert service_ids(execute(dc1, SERVICE)) == DC1_ALL  # exact name beats the catch-all
    assert service_ids(execute(dc1, "other-svc")) == {"other-1"}
    unknown = execute(dc1, "totally-unknown-name")
    assert (unknown["Service"], unknown["Nodes"], unknown["Datacenter"], unknown["Failovers"]) == (
        "totally-unknown-name",
        [],
        "dc1",
        0,
    )
    listed = call(dc1, "GET", "/v1/query").body
    assert next(q for q in listed if q["Name"] == "tmpl-")["Service"]["Service"] == "${name.suffix}"
    catch_all = next(q for q in listed if q["Name"] == "")
    duplicate = {"Name": "", "Template": {"Type": "name_prefix_match"}, "Service": {"Service": "x"}}
    answer = call(dc1, "POST", "/v1/query", duplicate)
    assert (answer.status, answer.body) == (
        500,
        "a query template with an empty name already exists",
    )
    assert call(dc1, "DELETE", f"/v1/query/{catch_all['ID']}").status == 200
    assert call(dc1, "GET", "/v1/query/totally-unknown-name/execute").status == 404


def test_longest_template_prefix_wins() -> None:
    dc1, _, _ = topology()
    for name, service in (("st", "other-svc"), ("storage-", SERVICE)):
        body = {
            "Name": name,
            "Template": {"Type": "name_prefix_match"},
            "Service": {"Service": service},
        }
        assert call(dc1, "POST", "/v1/query", body).status == 200
    assert execute(dc1, "storage-x")["Service"] == SERVICE
    assert execute(dc1, "STORAGE-x")["Service"] == SERVICE  # prefix match is case-insensitive
    assert execute(dc1, "stx")["Service"] == "other-svc"
    assert call(dc1, "GET", "/v1/query/zzz/execute").status == 404


# ---------------------------------------------------------------------------- other datacenters


def test_forwarded_create_and_execute() -> None:
    dc1, dc2, _ = topology()
    created = call(
        dc1, "POST", "/v1/query?dc=dc2", {"Name": "remote-q", "Service": {"Service": SERVICE}}
    )
    assert created.status == 200
    assert call(dc1, "GET", "/v1/query").body == []
    assert [q["Name"] for q in call(dc1, "GET", "/v1/query?dc=dc2").body] == ["remote-q"]
    result = execute(dc1, "remote-q", "?dc=dc2&limit=2")
    assert (result["Datacenter"], len(result["Nodes"])) == ("dc2", 2)
    assert service_ids(result) <= DC2_ALL
    assert call(dc1, "GET", "/v1/query/remote-q/explain?dc=dc2").status == 200
    assert call(dc1, "GET", f"/v1/query/{created.body['ID']}?dc=dc2").status == 200
    missing = call(dc1, "GET", "/v1/query/00000000-0000-0000-0000-000000000000?dc=dc2")
    assert (missing.status, missing.body) == (500, "rpc error making call: Query not found")
    assert call(dc1, "DELETE", f"/v1/query/{created.body['ID']}?dc=dc2").status == 200
    assert dc2.prepared_queries.queries() == []


def test_python_write_api_raises_consul_errors() -> None:
    dc1, _, _ = topology()
    with pytest.raises(EmulatorError) as caught:
        dc1.prepared_queries.create({"Name": "x", "Service": "oops"})
    assert (caught.value.status, caught.value.message) == (
        400,
        "Request decode failed: 1 error(s) decoding:\n\n* 'Service' expected a map, got 'string'",
    )
    query_id = dc1.prepared_queries.create({"Name": "x", "Service": {"Service": SERVICE}})
    assert dc1.prepared_queries.get(query_id)["Name"] == "x"
