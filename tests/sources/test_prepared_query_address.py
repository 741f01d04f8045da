"""Stage 3's ``address=lan|wan|auto`` and its refusal of ``filter=``.

The address of each ``Nodes`` entry of a prepared-query execution is chosen by the rule health
answers use (``choose_address``): the end-to-end tests run on both emulator profiles (1.0.8 has
no service tagged addresses, so every mode gives the LAN address there), the property test
checks that stage 2 and stage 3 make the same choice over any answer, with or without tagged
addresses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.models import (
    ADDRESS_MODES,
    HealthAnswer,
    PreparedQueryResult,
    QueryMeta,
    ServiceEntry,
    choose_address,
)
from mcresolve.consul.watch import WatchRegistry
from mcresolve.sources import Resolution, from_target
from mcresolve.sources.target import PreparedQueryTarget, TargetError, parse_target
from mcresolve.testing.consul import ConsulEmulator
from support import FAST_WATCH

from .helpers import next_matching

#: (datacenter, service ID, port, the service's WAN address); every LAN address is 127.0.0.1.
INSTANCES = [("dc1", "api-1", 9501, "127.0.0.3"), ("dc2", "api-2", 9601, "127.0.0.2")]


@pytest.fixture(params=["1.0.8", "1.21"])
def consul_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Bed:
    consul: ConsulEmulator
    registry: WatchRegistry


@pytest.fixture
async def bed(consul_version: str) -> AsyncIterator[Bed]:
    async with ConsulEmulator(["dc1", "dc2"], version=consul_version) as consul:
        clients = {
            dc: ConsulClient(
                ConsulConfig.for_addresses(
                    consul.dc(dc).http_url, connect_timeout=0.5, request_timeout=2.0
                )
            )
            for dc in ("dc1", "dc2")
        }
        registry = WatchRegistry(clients["dc1"], FAST_WATCH)
        try:
            for dc, service_id, port, wan in INSTANCES:
                await clients[dc].agent_service_register(
                    {
                        "Name": "api",
                        "ID": service_id,
                        "Port": port,
                        "Address": "127.0.0.1",
                        "TaggedAddresses": {"wan_ipv4": {"Address": wan, "Port": port + 1}},
                        "Check": {"TTL": "15m", "Status": "passing", "CheckID": service_id},
                    }
                )
            await clients["dc1"].query_create(
                {
                    "Name": "api",
                    "Service": {
                        "Service": "api",
                        "OnlyPassing": True,
                        "Failover": {"Datacenters": ["dc2"]},
                    },
                }
            )
            yield Bed(consul, registry)
        finally:
            await registry.aclose()
            for client in clients.values():
                await client.aclose()


def where(resolution: Resolution) -> set[tuple[str, int]]:
    """The addresses of the endpoints the execution answered (warm standby ones left out)."""
    return {
        (e.address, e.port) for e in resolution.endpoints if e.datacenter == resolution.datacenter
    }


def standby_where(resolution: Resolution) -> set[tuple[str, int]]:
    """The addresses of the warm standby endpoints (another datacenter than the answer's)."""
    return {
        (e.address, e.port) for e in resolution.endpoints if e.datacenter != resolution.datacenter
    }


LOCAL_LAN = {("127.0.0.1", 9501)}
LOCAL_WAN = {("127.0.0.3", 9502)}
REMOTE_LAN = {("127.0.0.1", 9601)}
REMOTE_WAN = {("127.0.0.2", 9602)}


@pytest.mark.parametrize(
    ("address", "failover", "modern", "old"),
    [
        ("lan", False, LOCAL_LAN, LOCAL_LAN),
        ("wan", False, LOCAL_WAN, LOCAL_LAN),
        ("auto", False, LOCAL_LAN, LOCAL_LAN),  # answered by the agent's own datacenter
        ("lan", True, REMOTE_LAN, REMOTE_LAN),
        ("wan", True, REMOTE_WAN, REMOTE_LAN),
        ("auto", True, REMOTE_WAN, REMOTE_LAN),  # failed over: another datacenter
    ],
)
async def test_address_modes_on_execution_answers(
    bed: Bed,
    consul_version: str,
    address: str,
    failover: bool,
    modern: set[tuple[str, int]],
    old: set[tuple[str, int]],
) -> None:
    if failover:
        bed.consul.dc("dc1").set_check_status("api-1", "critical")
    target = f"consul+query://api?refresh=5m&address={address}"
    async with from_target(target, registry=bed.registry) as source:
        resolution = await next_matching(source, lambda r: bool(r.endpoints))
    assert resolution.datacenter == ("dc2" if failover else "dc1")
    assert where(resolution) == (old if consul_version == "1.0.8" else modern)
    assert resolution.error is None


async def test_auto_follows_a_failover_and_the_way_back(bed: Bed, consul_version: str) -> None:
    dc1 = bed.consul.dc("dc1")
    async with from_target("consul+query://api?refresh=5m&address=auto", registry=bed.registry) as (
        source
    ):
        assert where(await next_matching(source, lambda r: bool(r.endpoints))) == LOCAL_LAN
        # the warm standby endpoints of dc2 follow the same address rule (another datacenter)
        warm = await next_matching(source, lambda r: bool(standby_where(r)))
        assert standby_where(warm) == (REMOTE_LAN if consul_version == "1.0.8" else REMOTE_WAN)
        dc1.set_check_status("api-1", "critical")
        remote = await next_matching(source, lambda r: r.datacenter == "dc2")
        assert where(remote) == (REMOTE_LAN if consul_version == "1.0.8" else REMOTE_WAN)
        dc1.set_check_status("api-1", "passing")
        back = await next_matching(source, lambda r: r.datacenter == "dc1")
        assert where(back) == LOCAL_LAN


def test_address_option_round_trips_and_defaults_to_lan() -> None:
    plain = parse_target("consul+query://api")
    assert isinstance(plain, PreparedQueryTarget) and plain.address == "lan"
    for mode in ADDRESS_MODES:
        spec = parse_target(f"consul+query://api?address={mode.upper()}")
        assert isinstance(spec, PreparedQueryTarget) and spec.address == mode
        assert parse_target(str(spec)) == spec
    dns_form = parse_target("api.query.dc2.consul?address=wan")
    assert isinstance(dns_form, PreparedQueryTarget)
    assert (dns_form.dc, dns_form.address) == ("dc2", "wan")
    with pytest.raises(TargetError, match="address: expected one of lan, wan, auto"):
        parse_target("consul+query://api?address=public")


@pytest.mark.parametrize(
    "text",
    [
        "consul+query://api?filter=Service.Meta.v%20%3D%3D%20%222%22",
        "api.query.consul?filter=x",
        "consul+query://api?dc=dc2&filter=",
    ],
)
def test_filter_is_refused_naming_the_parameter_and_the_definition(text: str) -> None:
    with pytest.raises(TargetError) as caught:
        parse_target(text)
    message = str(caught.value)
    assert "\n" not in message
    assert "option filter is ignored by Consul's prepared-query execution" in message
    assert "query definition's own Service.Tags" in message


# --- the same decision as stage 2, over any answer ------------------------------------------

_ADDR = st.sampled_from(["127.0.0.1", "127.0.0.2", "::1", "", "host-a", "x y"])
_PORT = st.integers(0, 70000)
_DCS = st.sampled_from(["", "dc1", "dc2"])
_SERVICE_TAGGED = st.dictionaries(
    st.sampled_from(["lan", "lan_ipv4", "wan", "wan_ipv4", "wan_ipv6"]),
    st.fixed_dictionaries({"Address": _ADDR, "Port": _PORT}),
    max_size=3,
)
_NODE_TAGGED = st.dictionaries(
    st.sampled_from(["lan", "lan_ipv4", "wan", "wan_ipv4"]), _ADDR, max_size=3
)


@st.composite
def entries(draw: st.DrawFn) -> dict[str, Any]:
    service: dict[str, Any] = {"Service": "api", "Port": draw(_PORT)}
    if draw(st.booleans()):
        service["Address"] = draw(_ADDR)
    if draw(st.booleans()):  # absent (1.0.8), null, or 1.x objects
        service["TaggedAddresses"] = draw(st.none() | _SERVICE_TAGGED)
    node: dict[str, Any] = {"Node": "n", "Address": draw(_ADDR), "Datacenter": draw(_DCS)}
    if draw(st.booleans()):
        node["TaggedAddresses"] = draw(st.none() | _NODE_TAGGED)
    return {"Node": node, "Service": service, "Checks": []}


@given(
    raw=st.lists(entries(), max_size=5),
    answered_by=st.sampled_from(["dc1", "dc2"]),
    local=st.sampled_from([None, "dc1", "dc2"]),
    port=st.none() | st.integers(1, 65535),
)
def test_stage_3_chooses_addresses_exactly_as_stage_2(
    raw: list[dict[str, Any]], answered_by: str, local: str | None, port: int | None
) -> None:
    parsed = tuple(
        ServiceEntry.from_json(e | {"Service": e["Service"] | {"ID": f"s{i}"}})
        for i, e in enumerate(raw)
    )
    result = PreparedQueryResult("api", parsed, answered_by, 1, "", QueryMeta())
    for mode in ADDRESS_MODES:
        stage3 = result.convert(port, address=mode, local_datacenter=local)
        stage2 = HealthAnswer.decode(
            parsed, answered_by, port, address=mode, local_datacenter=local
        ).converted
        assert stage3.endpoints == stage2.endpoints
        assert len(stage3.rejected) == len(stage2.rejected)
        assert len(stage3.endpoints) + len(stage3.rejected) == len(parsed)
        for endpoint in stage3.endpoints:
            entry = next(e for e in parsed if e.service.id == endpoint.service_id)
            assert endpoint.address
            # an instance answered by the agent's own datacenter keeps its LAN address on auto
            if mode == "lan" or (
                mode == "auto" and (entry.node.datacenter or answered_by) == local
            ):
                assert endpoint.address == entry.address
            without_wan = not any(k.startswith("wan") for k in entry.service.tagged_addresses)
            if without_wan and not any(
                k.startswith("wan") for k in entry.node.tagged_addresses
            ):  # nothing tagged WAN: every mode is the LAN address
                assert endpoint.address == entry.address
    lan = result.convert(port)
    assert lan.endpoints == result.convert(port, address="lan", local_datacenter=local).endpoints
    for entry in parsed:
        assert choose_address(entry, "lan") == (entry.address, entry.service.port)
