"""ConsulClient against Consul 1.0.8's recorded answers (replayed verbatim) and transport faults."""

from __future__ import annotations

import json
import logging

import pytest
from consul_replay import Planned, ReplayServer, closed_port, golden, recorded

from mcresolve.consul import (
    BadRequest,
    Consistency,
    ConsulClient,
    ConsulConfig,
    ConsulHTTPError,
    ConsulProtocolError,
    ConsulTimeout,
    ConsulUnavailable,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    ServerError,
)
from mcresolve.testing.consul import ConsulEmulator
from mcresolve.testing.consul.http_api import AgentHttpApi

TOKEN = "s3cr3t-aa11bb22-token"
SVC = "/v1/health/service/storage-object-minio"


def client_for(*servers: ReplayServer | str, **options: object) -> ConsulClient:
    addresses = [s if isinstance(s, str) else s.address for s in servers]
    return ConsulClient(ConsulConfig.for_addresses(*addresses, **options))


async def test_health_service_parses_recorded_answer(replay: ReplayServer) -> None:
    replay.replay("02_reads.json", "GET", SVC)
    async with client_for(replay) as consul:
        result = await consul.health_service("storage-object-minio")
    entries = result.value
    assert [e.service.id for e in entries] == [
        "minio-dc1-x1",
        "minio-dc1-x2",
        "minio-dc1-a",
        "minio-dc1-b",
        "minio-dc1-c",
        "minio-dc1-http",
    ]
    assert result.meta.index == 16 and result.meta.known_leader is True
    assert result.meta.last_contact_ms == 0 and result.meta.effective_consistency == "leader"
    assert result.meta.address == replay.url
    x2 = entries[1]
    assert x2.status == "warning" and dict(x2.service.meta) == {} and x2.node.meta == {}
    # minio-dc1-b was registered without a service Address: the node's address is used.
    b = entries[3]
    assert b.service.address == "" and b.address == "127.0.0.1"
    a = entries[2].to_endpoint()
    assert a.key == ("127.0.0.1", 9001) and (a.node, a.datacenter) == ("n1", "dc1")
    assert a.service_id == "minio-dc1-a" and a.tags == ("primary", "v1")
    assert dict(a.meta) == {"minio_version": "RELEASE.2018-05-25", "zone": "z1"}
    # Node-level checks come first in each entry's checks.
    assert [c.check_id for c in entries[0].checks] == ["node-alive", "minio-dc1-x1-health"]
    seen = replay.seen[0]
    assert (seen.method, seen.path) == ("GET", SVC) and not seen.query


async def test_health_service_sends_every_filter(replay: ReplayServer) -> None:
    # node-meta depends on the agent's version (a filter on 1.5+): 1.0.8 reports itself first.
    replay.replay("02_reads.json", "GET", "/v1/agent/self")
    replay.replay("02_reads.json", "GET", SVC + "?tag=primary&passing&dc=dc2")
    async with client_for(replay) as consul:
        result = await consul.health_service(
            "storage-object-minio",
            passing=True,
            tags=["primary"],
            dc="dc2",
            near="_agent",
            node_meta={"rack": "r1"},
            consistency=Consistency.STALE,
        )
    assert [e.service.id for e in result.value] == ["minio-dc2-a"]
    assert result.value[0].to_endpoint().datacenter == "dc2"
    query = replay.seen[1].query
    assert query.getall("tag") == ["primary"] and query["passing"] == "1"
    assert query["dc"] == "dc2" and query["near"] == "_agent"
    assert query["node-meta"] == "rack:r1" and "stale" in query
    assert "index" not in query and "wait" not in query


async def test_several_tags_are_all_required(replay: ReplayServer) -> None:
    # Consul 1.0.8 honours only the first ?tag (recorded: ?tag=v1&tag=external = ?tag=v1);
    # the client applies the others itself, case-insensitively.
    replay.replay("02_reads.json", "GET", SVC + "?tag=v1&tag=external")
    async with client_for(replay) as consul:
        result = await consul.health_service("storage-object-minio", tags=["v1", "EXTERNAL"])
    assert [e.service.id for e in result.value] == ["minio-dc1-x1"]
    assert replay.seen[0].query.getall("tag") == ["v1", "EXTERNAL"]


async def test_blocking_parameters_and_default_dc(replay: ReplayServer) -> None:
    replay.replay("05_blocking_queries.json", "GET", SVC + "?index=37&wait=5s")
    async with client_for(replay, datacenter="dc1") as consul:
        result = await consul.health_service("storage-object-minio", index=37, wait=0.25)
    query = replay.seen[0].query
    assert query["index"] == "37" and query["wait"] == "250ms" and query["dc"] == "dc1"
    assert result.meta.index is not None and result.meta.index >= 37


async def test_blocking_timeout_exceeds_wait_even_with_a_short_request_timeout(
    replay: ReplayServer,
) -> None:
    exchange = golden("05_blocking_queries.json", "GET", SVC + "?index=37&wait=5s")
    replay.answer(Planned.recorded(exchange, delay=0.5))  # held like a blocking query
    async with client_for(replay, request_timeout=0.2) as consul:
        result = await consul.health_service("storage-object-minio", index=37, wait=0.4)
    assert len(result.value) >= 6


async def test_catalog_reads(replay: ReplayServer) -> None:
    replay.replay("02_reads.json", "GET", "/v1/catalog/service/storage-object-minio")
    replay.replay("02_reads.json", "GET", "/v1/catalog/services")
    replay.replay("00_topology.json", "GET", "/v1/catalog/datacenters")
    replay.replay("02_reads.json", "GET", "/v1/catalog/nodes?near=_agent")
    async with client_for(replay) as consul:
        service = await consul.catalog_service("storage-object-minio")
        services = await consul.catalog_services()
        dcs = await consul.catalog_datacenters()
        nodes = await consul.catalog_nodes(near="_agent")
    assert len(service.value) == 6 and service.meta.index is not None
    x2 = next(s for s in service.value if s.service_id == "minio-dc1-x2")
    assert x2.service_address == "" and x2.to_endpoint().address == "127.0.0.1"
    assert x2.to_endpoint().port == 9006
    assert "storage-object-minio" in services.value
    assert set(services.value["storage-object-minio"]) >= {"primary", "v1", "v2"}
    assert dcs == ["dc1", "dc2"]
    assert {n.node for n in nodes.value} >= {"n1", "minio-node-x1"}


async def test_prepared_query_execute_with_failover(replay: ReplayServer) -> None:
    path = "/v1/query/storage-object-minio/execute"
    failovers = [
        e
        for e in recorded("06_prepared_queries.json")
        if e.get("request", {}).get("path") == path
        and e["response"]["status"] == 200
        and e["response"]["body"]["Failovers"] == 1
        and e["response"]["body"]["Nodes"]
    ]
    replay.answer(Planned.recorded(failovers[0]))
    async with client_for(replay) as consul:
        result = await consul.query_execute("storage-object-minio", limit=2, near="_agent")
    assert result.datacenter == "dc2" and result.failovers == 1
    assert result.meta.index == 0 and result.service == "storage-object-minio"
    endpoints = result.endpoints()
    assert endpoints and all(e.datacenter == "dc2" for e in endpoints)
    query = replay.seen[0].query
    assert query["limit"] == "2" and query["near"] == "_agent"


async def test_prepared_query_crud(replay: ReplayServer) -> None:
    replay.replay("06_prepared_queries.json", "POST", "/v1/query", status=200)
    replay.replay("06_prepared_queries.json", "GET", "/v1/query")
    qid = "f1582195-1c73-c571-d697-e554726e51c2"
    replay.replay("06_prepared_queries.json", "GET", f"/v1/query/{qid}")
    replay.replay("06_prepared_queries.json", "PUT", f"/v1/query/{qid}")
    replay.replay("06_prepared_queries.json", "GET", "/v1/query/storage-object-minio/explain")
    replay.replay(
        "06_prepared_queries.json", "DELETE", "/v1/query/625b7c5e-7237-789d-bb9e-77f0b07c4daa"
    )
    definition = {"Name": "storage-object-minio", "Service": {"Service": "storage-object-minio"}}
    async with client_for(replay) as consul:
        created = await consul.query_create(definition)
        listed = await consul.query_list()
        got = await consul.query_get(qid)
        await consul.query_update(qid, definition)
        explained = await consul.query_explain("storage-object-minio")
        await consul.query_delete("625b7c5e-7237-789d-bb9e-77f0b07c4daa")
    assert len(created) == 36
    assert listed == [] or all("ID" in q for q in listed)
    assert got["ID"] == qid and got["Name"] == "storage-object-minio"
    assert explained["Query"]["Name"] == "storage-object-minio"
    methods = [(s.method, s.path) for s in replay.seen]
    assert methods[0] == ("POST", "/v1/query")
    assert json.loads(replay.seen[0].body) == definition
    assert replay.seen[0].headers["Content-Type"] == "application/json"
    assert methods[3] == ("PUT", f"/v1/query/{qid}")
    assert methods[5] == ("DELETE", "/v1/query/625b7c5e-7237-789d-bb9e-77f0b07c4daa")


async def test_agent_calls(replay: ReplayServer) -> None:
    replay.replay("01_registration.json", "PUT", "/v1/agent/service/register")
    replay.replay("01_registration.json", "PUT", "/v1/agent/check/pass/minio-dc1-a-ttl?note=ok")
    replay.replay(
        "03_ttl_transitions.json", "PUT", "/v1/agent/check/warn/minio-dc1-a-ttl?note=disk%2080%25"
    )
    replay.replay(
        "03_ttl_transitions.json", "PUT", "/v1/agent/check/fail/minio-dc1-a-ttl?note=down"
    )
    replay.replay("03_ttl_transitions.json", "PUT", "/v1/agent/check/update/minio-dc1-a-ttl", 200)
    replay.replay("08_errors.json", "PUT", "/v1/agent/service/deregister/no-such-service-id")
    replay.replay("00_topology.json", "GET", "/v1/agent/self")
    replay.replay("00_topology.json", "GET", "/v1/status/leader")
    replay.replay("01_registration.json", "GET", "/v1/agent/services")
    replay.replay("01_registration.json", "GET", "/v1/agent/checks")
    registration = {"Name": "storage-object-minio", "ID": "minio-dc1-a", "Port": 9001}
    async with client_for(replay) as consul:
        await consul.agent_service_register(registration)
        await consul.agent_check_pass("minio-dc1-a-ttl", note="ok")
        await consul.agent_check_warn("minio-dc1-a-ttl", note="disk 80%")
        await consul.agent_check_fail("minio-dc1-a-ttl", note="down")
        await consul.agent_check_update("minio-dc1-a-ttl", "critical", "boom")
        await consul.agent_service_deregister("no-such-service-id")
        me = await consul.agent_self()
        leader = await consul.status_leader()
        services = await consul.agent_services()
        checks = await consul.agent_checks()
    assert me["Config"]["Datacenter"] == "dc1" and leader == "127.0.0.1:8320"
    assert "minio-dc1-a" in services and "minio-dc1-a-ttl" in checks
    seen = replay.seen
    assert json.loads(seen[0].body) == registration
    assert seen[1].path == "/v1/agent/check/pass/minio-dc1-a-ttl" and seen[1].query["note"] == "ok"
    assert seen[2].query["note"] == "disk 80%"
    assert json.loads(seen[4].body) == {"Status": "critical", "Output": "boom"}
    assert all(s.method == "PUT" for s in seen[:6])


async def test_path_segments_are_quoted(replay: ReplayServer) -> None:
    replay.answer(Planned(body=b"[]", headers={"X-Consul-Index": "3"}))
    async with client_for(replay) as consul:
        await consul.health_service("we?ird/name")
    assert replay.seen[0].path == "/v1/health/service/we?ird/name"
    assert not replay.seen[0].query


@pytest.mark.parametrize(
    ("file", "method", "path", "call", "exc", "message"),
    [
        ("08_errors.json", "GET", SVC + "?dc=nope", "health", ServerError, "No path to datacenter"),
        (
            "08_errors.json",
            "GET",
            SVC + "?index=1&wait=5",
            "health",
            BadRequest,
            "Invalid wait time",
        ),
        (
            "06_prepared_queries.json",
            "GET",
            "/v1/query/no-such-query/execute",
            "execute",
            NotFound,
            "Query not found",
        ),
        (
            "06_prepared_queries.json",
            "GET",
            "/v1/query/storage-object-minio/execute?dc=dc2",
            "execute",
            ServerError,
            "rpc error making call: Query not found",
        ),
        (
            "08_errors.json",
            "PUT",
            "/v1/agent/check/pass/no-such-check",
            "pass",
            ServerError,
            'CheckID "no-such-check" does not have associated TTL',
        ),
        (
            "03_ttl_transitions.json",
            "GET",
            "/v1/agent/check/pass/minio-dc1-a-ttl?note=via-GET",
            "pass",
            MethodNotAllowed,
            "method GET not allowed",
        ),
        (
            "08_errors.json",
            "PUT",
            "/v1/agent/service/register",
            "register",
            BadRequest,
            "Request decode failed: unexpected EOF",
        ),
        ("08_errors.json", "GET", "/v1/nope", "health", NotFound, ""),
    ],
)
async def test_recorded_error_answers_map_to_typed_errors(
    replay: ReplayServer,
    file: str,
    method: str,
    path: str,
    call: str,
    exc: type[ConsulHTTPError],
    message: str,
) -> None:
    replay.replay(file, method, path)
    async with client_for(replay) as consul:
        with pytest.raises(exc) as info:
            if call == "health":
                await consul.health_service("storage-object-minio")
            elif call == "execute":
                await consul.query_execute("q")
            elif call == "pass":
                await consul.agent_check_pass("c")
            else:
                await consul.agent_service_register({"Name": "x"})
    assert info.value.message == message
    assert info.value.status == golden(file, method, path)["response"]["status"]
    if message:
        assert message in str(info.value)


async def test_server_error_recognisers(replay: ReplayServer) -> None:
    replay.replay("08_errors.json", "GET", SVC + "?dc=nope")
    failure = golden("10_dc2_failure.json", "GET", SVC + "?dc=dc2&index=82&wait=60s")
    replay.answer(Planned.recorded(failure))
    replay.replay("08_errors.json", "PUT", "/v1/agent/check/pass/no-such-check")
    async with client_for(replay) as consul:
        with pytest.raises(ServerError) as first:
            await consul.health_service("storage-object-minio", dc="nope")
        with pytest.raises(ServerError) as second:
            await consul.health_service("storage-object-minio", dc="dc2", index=82, wait=1)
        with pytest.raises(ServerError) as third:
            await consul.agent_check_pass("no-such-check")
    assert first.value.no_path_to_datacenter and not first.value.check_has_no_ttl
    assert second.value.message == "rpc error making call: EOF"
    assert second.value.no_path_to_datacenter
    assert third.value.check_has_no_ttl and not third.value.no_path_to_datacenter


async def test_permission_denied(replay: ReplayServer) -> None:
    # Not recorded (the agents ran without ACLs): Consul answers 403 "Permission denied".
    replay.answer(
        Planned(
            status=403,
            body=b"Permission denied",
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
    )
    async with client_for(replay, token=TOKEN) as consul:
        with pytest.raises(PermissionDenied) as info:
            await consul.agent_service_register({"Name": "x"})
    assert info.value.message == "Permission denied" and TOKEN not in str(info.value)


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (b"[{not json", {"X-Consul-Index": "5"}, "invalid JSON"),
        (b'{"a": 1}', {"X-Consul-Index": "5"}, "expected a JSON array"),
        (
            b'[{"Node": {"Node": "n"}, "Service": {}}]',
            {"X-Consul-Index": "5"},
            "Node.Address: expected a string",
        ),
        (
            b'[{"Node": {"Node": "n", "Address": "a"}, "Service": {"ID": "i", "Service": "s",'
            b' "Port": "80"}}]',
            {"X-Consul-Index": "5"},
            "Service.Port: expected an integer",
        ),
        (b"[]", {"X-Consul-Index": "abc"}, "X-Consul-Index: expected an integer"),
        (b"[]", {}, "has no X-Consul-Index"),
    ],
)
async def test_bad_answers_raise_protocol_errors(
    replay: ReplayServer, body: bytes, headers: dict[str, str], message: str
) -> None:
    replay.answer(Planned(body=body, headers=headers))
    async with client_for(replay) as consul:
        with pytest.raises(ConsulProtocolError, match=message):
            await consul.health_service("svc", index=1, wait=1)


async def test_token_is_sent_and_never_logged(
    replay: ReplayServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    replay.replay("02_reads.json", "GET", SVC)
    replay.replay("08_errors.json", "GET", SVC + "?dc=nope")
    dead = f"127.0.0.1:{closed_port()}"
    async with client_for(dead, replay, token=TOKEN) as consul:
        await consul.health_service("storage-object-minio")
        with pytest.raises(ServerError) as info:
            await consul.health_service("storage-object-minio", dc="nope")
        texts = [repr(consul), str(info.value), repr(info.value)]
    assert replay.seen[0].headers["X-Consul-Token"] == TOKEN
    records = [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]
    assert records, "the client logs its requests at DEBUG"
    for text in texts + records:
        assert TOKEN not in text


async def test_no_token_header_without_a_token(replay: ReplayServer) -> None:
    replay.replay("00_topology.json", "GET", "/v1/status/leader")
    async with client_for(replay) as consul:
        await consul.status_leader()
    assert "X-Consul-Token" not in replay.seen[0].headers


async def test_moves_to_the_next_agent_and_sticks_to_it(
    replay: ReplayServer, replay2: ReplayServer
) -> None:
    dead = f"127.0.0.1:{closed_port()}"
    for _ in range(2):
        replay.replay("00_topology.json", "GET", "/v1/status/leader")
    async with client_for(dead, replay, replay2) as consul:
        assert await consul.status_leader() == "127.0.0.1:8320"
        assert consul.current_address.base_url == replay.url
        await consul.status_leader()
        # replay2 answered back only if replay had failed: the client stuck to replay.
        assert len(replay.seen) == 2 and not replay2.seen
        await replay.stop()
        replay2.replay("00_topology.json", "GET", "/v1/status/leader")
        assert await consul.status_leader() == "127.0.0.1:8320"
        assert consul.current_address.base_url == replay2.url


async def test_all_agents_down_lists_what_was_tried() -> None:
    ports = [closed_port(), closed_port()]
    async with client_for(*(f"127.0.0.1:{p}" for p in ports)) as consul:
        with pytest.raises(ConsulUnavailable) as info:
            await consul.status_leader()
    assert [url for url, _ in info.value.tried] == [f"http://127.0.0.1:{p}" for p in ports]
    assert all(reason for _, reason in info.value.tried)
    assert "no Consul agent reachable for GET /v1/status/leader" in str(info.value)


async def test_dropped_connection_retries_reads_elsewhere_but_not_posts(
    replay: ReplayServer, replay2: ReplayServer
) -> None:
    replay.drop_all = True
    replay2.replay("00_topology.json", "GET", "/v1/status/leader")
    async with client_for(replay, replay2) as consul:
        assert await consul.status_leader() == "127.0.0.1:8320"
    async with client_for(replay, replay2) as consul:
        with pytest.raises(ConsulUnavailable, match="connection lost during POST"):
            await consul.query_create({"Service": {"Service": "x"}})
    assert [s.method for s in replay2.seen] == ["GET"]  # the POST was not repeated


async def test_timeout_is_typed_and_next_call_tries_the_next_agent(
    replay: ReplayServer, replay2: ReplayServer
) -> None:
    replay.answer(Planned(delay=2.0, body=b'"x"'))
    replay2.replay("00_topology.json", "GET", "/v1/status/leader")
    async with client_for(replay, replay2, request_timeout=0.3) as consul:
        with pytest.raises(ConsulTimeout) as info:
            await consul.status_leader()
        assert info.value.tried[-1][0] == replay.url
        assert await consul.status_leader() == "127.0.0.1:8320"
    assert len(replay2.seen) == 1


async def test_closed_client_refuses_calls() -> None:
    consul = client_for("127.0.0.1:1")
    await consul.aclose()
    with pytest.raises(Exception, match="closed"):
        await consul.status_leader()


async def test_check_register_and_deregister_against_the_emulator() -> None:
    async with ConsulEmulator(["dc1"]) as emulator:
        dc1 = emulator.dc("dc1")
        api = AgentHttpApi.of(dc1)
        async with client_for(dc1.http_url) as consul:
            await consul.agent_service_register({"Name": "svc", "ID": "svc-1", "Port": 9001})
            check = {
                "CheckID": "svc-1-maintenance",
                "Name": "maintenance flag of svc-1",
                "ServiceID": "svc-1",
                "TTL": "24h",
                "Status": "passing",
            }
            await consul.agent_check_register(check)
            assert api.requests_served("/v1/agent/check/register") == 1
            checks = await consul.agent_checks()
            registered = checks["svc-1-maintenance"]
            assert registered["ServiceID"] == "svc-1" and registered["Status"] == "passing"
            assert len((await consul.health_service("svc", passing=True)).value) == 1
            await consul.agent_check_fail("svc-1-maintenance", note="drained")
            assert (await consul.health_service("svc", passing=True)).value == ()
            await consul.agent_check_register({**check, "Status": "warning"})  # replaces it
            assert (await consul.agent_checks())["svc-1-maintenance"]["Status"] == "warning"
            await consul.agent_check_deregister("svc-1-maintenance")
            assert "svc-1-maintenance" not in await consul.agent_checks()
            assert len((await consul.health_service("svc", passing=True)).value) == 1
            await consul.agent_check_deregister("svc-1-maintenance")  # unknown: not an error
            assert api.requests_served("/v1/agent/check/deregister/svc-1-maintenance") == 2


@pytest.mark.parametrize(
    ("definition", "error", "message"),
    [
        ({"CheckID": "x", "TTL": "10s"}, BadRequest, "Missing check name"),
        ({"Name": "x", "ServiceID": "nope", "TTL": "10s"}, ServerError, 'ServiceID "nope"'),
        ({"Name": "x", "TTL": "10s", "Status": "bogus"}, BadRequest, "Invalid check status"),
    ],
)
async def test_check_register_refusals_are_typed(
    definition: dict[str, str], error: type[ConsulHTTPError], message: str
) -> None:
    async with (
        ConsulEmulator(["dc1"]) as emulator,
        client_for(emulator.dc("dc1").http_url) as consul,
    ):
        with pytest.raises(error) as raised:
            await consul.agent_check_register(definition)
    assert message in raised.value.message
