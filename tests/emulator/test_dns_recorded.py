"""Every DNS exchange of 07_dns.json and 10_dc2_failure.json, answered by the DNS logic
(DnsResponder, no sockets) from an in-test cluster view put into the recorded health state
of that step, and compared with the recording by rule (dns_golden)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dns.message
import pytest

from mcresolve.testing.consul.contracts import (
    DatacenterUnreachable,
    HealthEntry,
    QueryNotFound,
)
from mcresolve.testing.consul.dns_golden import (
    RecordedQuestion,
    compare_dig,
    compare_response,
    dig_query,
    known_srv_instances,
)
from mcresolve.testing.consul.dns_responder import DnsResponder
from mcresolve.testing.consul.golden_files import golden_dir

GOLDEN = golden_dir()
SERVICE = "storage-object-minio"
QUERY_ID = "f1582195-1c73-c571-d697-e554726e51c2"
SERVERS = {"127.0.0.1:8620": "dc1", "127.0.0.1:8630": "dc2"}
NOW = 1_795_741_136.0

# (datacenter, node, service id, port, tags) as in the README's data set
INSTANCES = [
    ("dc1", "minio-node-x1", "minio-dc1-x1", 9005, ["external", "v1"]),
    ("dc1", "minio-node-x2", "minio-dc1-x2", 9006, ["external", "v2"]),
    ("dc1", "n1", "minio-dc1-a", 9001, ["primary", "v1"]),
    ("dc1", "n1", "minio-dc1-b", 9002, ["secondary", "v1"]),
    ("dc1", "n1", "minio-dc1-c", 9003, ["v2"]),
    ("dc1", "n1", "minio-dc1-http", 9004, ["http", "v1"]),
    ("dc2", "minio-node-y1", "minio-dc2-y1", 9105, ["external", "v1"]),
    ("dc2", "n2", "minio-dc2-a", 9101, ["primary", "v1"]),
    ("dc2", "n2", "minio-dc2-b", 9102, ["secondary", "v1"]),
]

# prepared queries of dc1 (06_prepared_queries.json): name -> definition
QUERIES: dict[str, dict[str, Any]] = {
    SERVICE: {"failover": ["dc2"], "only_passing": False, "tags": [], "ttl": ""},
    "minio-dc2-failover": {
        "failover": ["dc2"],
        "only_passing": True,
        "tags": ["v1"],
        "ttl": "10s",
    },
    "minio-nofailover": {"failover": [], "only_passing": False, "tags": [], "ttl": ""},
}
TEMPLATE_PREFIX = "tmpl-"  # ${name.suffix}, NearestN 1, OnlyPassing true


class State:
    """Recorded health situation: status of each service check, which agents are down,
    which instances are deregistered."""

    def __init__(
        self,
        status: Callable[[str, str], str],
        down: frozenset[str] = frozenset(),
        gone: frozenset[str] = frozenset(),
    ) -> None:
        self.status = status
        self.down = down
        self.gone = gone


def _all(status: str, dc: str | None = None) -> Callable[[str, str], str]:
    return lambda d, sid: status if dc in (None, d) else "passing"


PHASES_07: dict[str, State] = {
    "[all passing]": State(_all("passing")),
    "[a critical, b warning]": State(
        lambda d, sid: {"minio-dc1-a": "critical", "minio-dc1-b": "warning"}.get(sid, "passing")
    ),
    "[ALL dc1 critical]": State(_all("critical", "dc1")),
    "[ALL dc1 warning]": State(_all("warning", "dc1")),
    "[ALL critical everywhere]": State(_all("critical")),
    "[restored]": State(_all("passing")),
}
_C_GONE = frozenset({"minio-dc1-c"})
PHASES_10: dict[str, State] = {
    "[before kill]": State(_all("critical", "dc1"), gone=_C_GONE),
    "ms after kill]": State(_all("critical", "dc1"), frozenset({"dc2"}), _C_GONE),
    "[minutes after kill]": State(_all("critical", "dc1"), frozenset({"dc2"}), _C_GONE),
    "[dc1 restored]": State(_all("passing"), frozenset({"dc2"}), _C_GONE),
}


class FakeDatacenter:
    """DatacenterView of one datacenter in a given State."""

    def __init__(self, name: str, cluster: FakeCluster) -> None:
        self._name = name
        self._cluster = cluster

    @property
    def name(self) -> str:
        return self._name

    @property
    def agent_node(self) -> str:
        return "n1" if self._name == "dc1" else "n2"

    def health_service(self, service: str) -> list[HealthEntry]:
        if service.lower() != SERVICE:
            return []
        state = self._cluster.state
        entries = []
        for dc, node, sid, port, tags in INSTANCES:
            if dc != self._name or sid in state.gone:
                continue
            agent = node in ("n1", "n2")
            checks = [{"CheckID": "serfHealth", "Status": "passing"}] if agent else []
            checks.append({"CheckID": f"{sid}-check", "Status": state.status(dc, sid)})
            entries.append(
                {
                    "Node": {
                        "Node": node,
                        "Address": "127.0.0.1",
                        "Datacenter": dc,
                        "Meta": {"consul-network-segment": ""} if agent else {},
                    },
                    "Service": {
                        "ID": sid,
                        "Service": SERVICE,
                        "Tags": tags,
                        "Address": "127.0.0.1",
                        "Port": port,
                    },
                    "Checks": checks,
                }
            )
        return entries

    def node(self, node: str) -> dict[str, Any] | None:
        for dc, name, *_ in INSTANCES:
            if dc == self._name and name == node.lower():
                return {"Node": name, "Address": "127.0.0.1", "Datacenter": dc, "Meta": {}}
        return None

    def sort_near(self, entries: Sequence[HealthEntry], near: str) -> list[HealthEntry]:
        return list(entries)

    def next_index(self) -> int:
        return 1

    def execute_prepared_query(self, name_or_id: str) -> dict[str, Any]:
        name = SERVICE if name_or_id == QUERY_ID else name_or_id
        if self._name == "dc1" and name in QUERIES:
            definition, service = QUERIES[name], SERVICE
        elif self._name == "dc1" and name.startswith(TEMPLATE_PREFIX):
            service = name[len(TEMPLATE_PREFIX) :]
            definition = {"failover": ["dc2"], "only_passing": True, "tags": [], "ttl": ""}
        else:
            raise QueryNotFound()
        tried = self._name
        for failovers, dc in enumerate([self._name, *definition["failover"]]):
            try:
                view = self._cluster.reach(self._name, dc)
            except DatacenterUnreachable:
                continue
            tried = dc
            nodes = [
                e
                for e in view.health_service(service)
                if all(t in e["Service"]["Tags"] for t in definition["tags"])
                and all(
                    c["Status"] == "passing"
                    if definition["only_passing"]
                    else c["Status"] != "critical"
                    for c in e["Checks"]
                )
            ]
            if nodes:
                self._cluster.rng.shuffle(nodes)
                return {"Nodes": nodes, "DNS": {"TTL": definition["ttl"]}, "Datacenter": dc}
            del failovers
        return {"Nodes": [], "DNS": {"TTL": definition["ttl"]}, "Datacenter": tried}


class FakeCluster:
    def __init__(self, state: State, rng: random.Random) -> None:
        self.state = state
        self.rng = rng

    def reach(self, origin: str, target: str) -> FakeDatacenter:
        if target not in ("dc1", "dc2") or target in self.state.down:
            raise DatacenterUnreachable()
        return FakeDatacenter(target, self)

    def datacenters_by_rtt(self, origin: str) -> list[str]:
        return [origin, *({"dc1", "dc2"} - {origin})]


def load(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((GOLDEN / name).read_text())
    return data


RECORDINGS = {name: load(name) for name in ("07_dns.json", "10_dc2_failure.json")}
KNOWN = known_srv_instances(RECORDINGS.values())


def state_of(step: str, phases: Mapping[str, State]) -> State:
    for marker, state in phases.items():
        if marker in step:
            return state
    raise AssertionError(f"no recorded state for step {step!r}")


def exchanges() -> list[tuple[str, int, dict[str, Any], State]]:
    cases = []
    last = PHASES_07["[all passing]"]
    for index, item in enumerate(RECORDINGS["07_dns.json"]):
        if "dns_request" in item:
            last = state_of(item["step"], PHASES_07)
            cases.append(("07_dns.json", index, item, last))
        elif "dig_command" in item:
            if "[" in item["step"]:
                last = state_of(item["step"], PHASES_07)
            cases.append(("07_dns.json", index, item, last))
    for index, item in enumerate(RECORDINGS["10_dc2_failure.json"]):
        if "dns_request" in item:
            cases.append(("10_dc2_failure.json", index, item, state_of(item["step"], PHASES_10)))
    return cases


CASES = exchanges()


def answer(
    question: RecordedQuestion, query: dns.message.Message, state: State, seed: int
) -> bytes:
    responder = DnsResponder(
        SERVERS[question.server],
        FakeCluster(state, random.Random(seed)),
        rng=random.Random(seed),
        clock=lambda: NOW,
    )
    wire = responder.respond_wire(query.to_wire(), "tcp" if question.transport == "tcp" else "udp")
    assert wire is not None
    return wire


def test_every_recorded_dns_exchange_is_covered() -> None:
    dns_total = sum(1 for r in RECORDINGS.values() for item in r if "dns_request" in item)
    dig_total = sum(1 for r in RECORDINGS.values() for item in r if "dig_command" in item)
    assert len(CASES) == dns_total + dig_total == 64 + 5


@pytest.mark.parametrize(
    ("file", "index", "item", "state"),
    CASES,
    ids=[f"{file[:2]}-{index}" for file, index, _, _ in CASES],
)
@pytest.mark.parametrize("seed", range(4))
def test_recorded_exchange(
    file: str, index: int, item: dict[str, Any], state: State, seed: int
) -> None:
    if "dig_command" in item:
        question = RecordedQuestion.from_dig(item)
        wire = answer(question, dig_query(question), state, seed)
        assert compare_dig(item["dig_output"], wire) == []
        return
    question = RecordedQuestion.from_exchange(item)
    wire = answer(question, question.to_message(), state, seed)
    problems = compare_response(item["dns_response"], wire, known_instances=KNOWN, now=NOW)
    assert problems == [], f"{file} #{index} {item['step']}"
