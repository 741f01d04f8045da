"""``address=lan|wan|auto``: which address of each instance stage 2 connects to, from Consul
1.x's ``Service.TaggedAddresses`` objects and ``Node.TaggedAddresses`` (1.0.8 has no service
tagged addresses: every mode gives the LAN address there)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.errors import ConsulProtocolError
from mcresolve.consul.models import ServiceEntry, choose_address, convert_entries, parse_entries
from mcresolve.consul.watch import WatchRegistry
from mcresolve.sources import Resolution, from_target
from mcresolve.testing.consul import ConsulEmulator
from support import FAST_WATCH

from .helpers import next_matching

PUBLISHED = Path(__file__).parents[1] / "emulator" / "data" / "consul_1_21_3_health_service.json"


@pytest.fixture(params=["1.0.8", "1.21"])
def consul_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def bed(consul_version: str) -> AsyncIterator[WatchRegistry]:
    async with ConsulEmulator(["dc1", "dc2"], version=consul_version) as consul:
        clients = [
            ConsulClient(
                ConsulConfig.for_addresses(
                    consul.dc(dc).http_url, connect_timeout=0.5, request_timeout=2.0
                )
            )
            for dc in ("dc1", "dc2")
        ]
        registry = WatchRegistry(clients[0], FAST_WATCH)
        try:
            for client, (service_id, port, wan) in zip(
                clients, [("api-1", 9501, "127.0.0.3"), ("api-2", 9601, "127.0.0.2")], strict=True
            ):
                await client.agent_service_register(
                    {
                        "Name": "api",
                        "ID": service_id,
                        "Port": port,
                        "Address": "127.0.0.1",
                        "TaggedAddresses": {"wan_ipv4": {"Address": wan, "Port": port + 1}},
                        "Check": {"TTL": "15m", "Status": "passing"},
                    }
                )
            yield registry
        finally:
            await registry.aclose()
            for client in clients:
                await client.aclose()


def where(resolution: Resolution) -> set[tuple[str, int]]:
    return {(e.address, e.port) for e in resolution.endpoints}


@pytest.mark.parametrize(
    ("options", "modern", "old"),
    [
        ("dc=dc2", {("127.0.0.1", 9601)}, {("127.0.0.1", 9601)}),
        ("dc=dc2&address=lan", {("127.0.0.1", 9601)}, {("127.0.0.1", 9601)}),
        ("dc=dc2&address=wan", {("127.0.0.2", 9602)}, {("127.0.0.1", 9601)}),
        ("dc=dc2&address=auto", {("127.0.0.2", 9602)}, {("127.0.0.1", 9601)}),
        ("address=auto", {("127.0.0.1", 9501)}, {("127.0.0.1", 9501)}),  # the agent's own dc
        ("address=wan", {("127.0.0.3", 9502)}, {("127.0.0.1", 9501)}),
    ],
)
async def test_address_modes(
    bed: WatchRegistry, consul_version: str, options: str, modern: set[Any], old: set[Any]
) -> None:
    async with from_target(f"consul://api?{options}", registry=bed) as source:
        resolution = await next_matching(source, lambda r: bool(r.endpoints))
    assert where(resolution) == (old if consul_version == "1.0.8" else modern)
    assert resolution.error is None


def _entry(service: dict[str, Any], node: dict[str, Any] | None = None) -> ServiceEntry:
    return ServiceEntry.from_json(
        {
            "Node": {"Node": "n2", "Address": "127.0.0.1", "Datacenter": "dc2"} | (node or {}),
            "Service": {"ID": "s", "Service": "api", "Port": 9000} | service,
            "Checks": [],
        }
    )


def test_the_published_1_21_3_answer_parses_with_its_tagged_address_objects() -> None:
    entries = parse_entries(json.loads(PUBLISHED.read_text())["body"])
    tagged = entries[0].service.tagged_addresses
    assert set(tagged) >= {"lan_ipv4", "wan_ipv4"}
    assert all(isinstance(t.port, int) and t.address for t in tagged.values())


def test_rules_of_choice() -> None:
    own_wan = _entry(
        {"Address": "127.0.0.1", "TaggedAddresses": {"wan": {"Address": "127.0.0.2", "Port": 0}}}
    )
    assert choose_address(own_wan, "wan") == ("127.0.0.2", 9000)  # port 0: the service's
    assert choose_address(own_wan, "auto", "dc1") == ("127.0.0.2", 9000)
    assert choose_address(own_wan, "auto", "dc2") == ("127.0.0.1", 9000)
    assert choose_address(own_wan, "auto", None) == ("127.0.0.1", 9000)  # unknown: LAN
    inherits = _entry({}, {"TaggedAddresses": {"lan": "127.0.0.1", "wan": "127.0.0.4"}})
    assert choose_address(inherits, "wan") == ("127.0.0.4", 9000)  # the node's WAN address
    own_lan_only = _entry({"Address": "127.0.0.5"}, {"TaggedAddresses": {"wan": "127.0.0.4"}})
    assert choose_address(own_lan_only, "wan") == ("127.0.0.5", 9000)  # as Consul translates


def test_a_bad_wan_address_rejects_that_instance_only_when_chosen() -> None:
    bad = _entry(
        {"Address": "127.0.0.1", "TaggedAddresses": {"wan_ipv4": {"Address": "x y", "Port": 1}}}
    )
    good = _entry({"ID": "t", "Address": "127.0.0.1"})
    assert len(convert_entries([bad, good]).endpoints) == 2  # lan: the tagged one is unused
    wan = convert_entries([bad, good], address="wan")
    assert [e.service_id for e in wan.endpoints] == ["t"]
    assert len(wan.rejected) == 1 and "service 's'" in wan.rejected[0].what
    huge = _entry({"TaggedAddresses": {"wan": {"Address": "127.0.0.2", "Port": 70000}}})
    assert len(convert_entries([huge], address="wan").rejected) == 1


@pytest.mark.parametrize(
    "tagged",
    [
        {"wan_ipv4": "127.0.0.2"},  # a string (1.0.8's node shape) where Consul 1.x has an object
        {"wan_ipv4": {"Address": 1, "Port": 1}},
        {"wan_ipv4": {"Address": "127.0.0.2", "Port": "1"}},
        ["wan_ipv4"],
    ],
)
def test_a_tagged_address_of_the_wrong_type_is_not_consuls_answer(tagged: object) -> None:
    with pytest.raises(ConsulProtocolError, match="TaggedAddresses"):
        _entry({"TaggedAddresses": tagged})
