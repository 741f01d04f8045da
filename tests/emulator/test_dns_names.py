"""Parsing Consul DNS names (pure): every recorded name form, Consul's quirks, properties."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcresolve.testing.consul.dns_names import (
    AddrLookup,
    InvalidName,
    Lookup,
    NodeLookup,
    QueryLookup,
    ServiceLookup,
    in_domain,
    normalize_domain,
    parse_lookup,
)

SVC = "storage-object-minio"


@pytest.mark.parametrize(
    ("qname", "srv", "expected"),
    [
        (f"{SVC}.service.consul", False, ServiceLookup(SVC, "", None)),
        (f"{SVC}.service.consul.", True, ServiceLookup(SVC, "", None)),
        (f"{SVC}.service.dc1.consul", True, ServiceLookup(SVC, "", "dc1")),
        (f"{SVC}.service.dc2.consul", False, ServiceLookup(SVC, "", "dc2")),
        (f"{SVC}.service.nodc.consul", True, ServiceLookup(SVC, "", "nodc")),
        (f"primary.{SVC}.service.consul", True, ServiceLookup(SVC, "primary", None)),
        (f"V1.{SVC}.service.consul", True, ServiceLookup(SVC, "v1", None)),
        (f"primary.{SVC}.service.dc2.consul", True, ServiceLookup(SVC, "primary", "dc2")),
        (f"a.b.{SVC}.service.consul", True, ServiceLookup(SVC, "a.b", None)),
        (f"_{SVC}._tcp.service.consul", True, ServiceLookup(SVC, "", None)),
        (f"_{SVC}._primary.service.consul", True, ServiceLookup(SVC, "primary", None)),
        (f"_{SVC}._primary.service.dc2.consul", True, ServiceLookup(SVC, "primary", "dc2")),
        # SRV questions may leave out the "service" label of RFC 2782 names
        (f"_{SVC}._tcp.consul", True, ServiceLookup(SVC, "", None)),
        (f"_{SVC}._udp.dc2.consul", True, ServiceLookup(SVC, "udp", "dc2")),
        (f"_{SVC}._tcp.consul", False, InvalidName()),
        # only the exact _svc._tag shape is RFC 2782; otherwise the leading label is a tag
        (f"_x.{SVC}.service.consul", True, ServiceLookup(SVC, "_x", None)),
        ("STORAGE-OBJECT-MINIO.service.consul", True, ServiceLookup(SVC, "", None)),
        ("no-such-service.service.consul", False, ServiceLookup("no-such-service", "", None)),
        ("n1.node.consul", False, NodeLookup("n1", None)),
        ("minio-node-x1.node.dc1.consul", False, NodeLookup("minio-node-x1", "dc1")),
        ("n2.node.dc2.consul", False, NodeLookup("n2", "dc2")),
        ("host.example.node.consul", False, NodeLookup("host.example", None)),
        (f"{SVC}.query.consul", True, QueryLookup(SVC, None)),
        (f"{SVC}.query.dc2.consul", True, QueryLookup(SVC, "dc2")),
        (
            "f1582195-1c73-c571-d697-e554726e51c2.query.consul",
            True,
            QueryLookup("f1582195-1c73-c571-d697-e554726e51c2", None),
        ),
        ("7f000001.addr.consul", False, AddrLookup(ipaddress.IPv4Address("127.0.0.1"))),
        ("7f000001.addr.dc1.consul", False, AddrLookup(ipaddress.IPv4Address("127.0.0.1"))),
        (
            "20010db8000000000000000000000001.addr.consul",
            False,
            AddrLookup(ipaddress.IPv6Address("2001:db8::1")),
        ),
        ("7f0000.addr.consul", False, AddrLookup(None)),
        ("7f00000g.addr.consul", False, InvalidName()),
        ("7f000001a.addr.consul", False, InvalidName()),
        ("x.7f000001.addr.consul", False, InvalidName()),
        # the recorded malformed name and other invalid ones
        (f"{SVC}.consul", False, InvalidName()),
        ("consul", False, InvalidName()),
        ("consul.", True, InvalidName()),
        ("service.consul", False, InvalidName()),
        ("node.consul", False, InvalidName()),
        ("query.dc1.consul", False, InvalidName()),
        (f"{SVC}.service.dc1.extra.consul", False, InvalidName()),
    ],
)
def test_recorded_and_documented_name_forms(qname: str, srv: bool, expected: Lookup) -> None:
    assert parse_lookup(qname, "consul", srv_question=srv) == expected


def test_custom_domain_is_case_insensitive() -> None:
    assert parse_lookup("Web.Service.Example.ORG.", "example.org", srv_question=False) == (
        ServiceLookup("web", "", None)
    )
    assert normalize_domain("Example.ORG") == "example.org."


@pytest.mark.parametrize(
    ("qname", "inside"),
    [
        ("consul.", True),
        ("CONSUL", True),
        ("a.service.consul", True),
        ("a.service.consul.", True),
        ("notconsul.", False),
        ("a.notconsul", False),
        ("1.0.0.127.in-addr.arpa.", False),
        ("example.com.", False),
    ],
)
def test_in_domain(qname: str, inside: bool) -> None:
    assert in_domain(qname, "consul") is inside


LABEL = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True).filter(
    lambda label: label not in {"service", "node", "query", "addr"}
)


@given(service=LABEL, tag=st.one_of(st.just(""), LABEL), dc=st.one_of(st.none(), LABEL))
def test_service_names_round_trip_in_any_case(service: str, tag: str, dc: str | None) -> None:
    parts = [tag] if tag else []
    parts += [service, "service"]
    parts += [dc] if dc else []
    name = ".".join([*parts, "consul"])
    expected = ServiceLookup(service, tag, dc)
    assert parse_lookup(name, "consul", srv_question=False) == expected
    assert parse_lookup(name.upper(), "consul", srv_question=True) == expected


@given(node=LABEL, dc=st.one_of(st.none(), LABEL), kind=st.sampled_from(["node", "query"]))
def test_node_and_query_names_round_trip(node: str, dc: str | None, kind: str) -> None:
    name = ".".join([node, kind, *([dc] if dc else []), "consul"])
    lookup = parse_lookup(name, "consul", srv_question=False)
    expected: Lookup = NodeLookup(node, dc) if kind == "node" else QueryLookup(node, dc)
    assert lookup == expected


@given(labels=st.lists(st.text(alphabet="abcz019-_.", min_size=0, max_size=8), max_size=6))
def test_any_name_inside_the_domain_parses_to_a_lookup(labels: list[str]) -> None:
    name = ".".join([*labels, "consul"])
    for srv in (False, True):
        result = parse_lookup(name, "consul", srv_question=srv)
        assert isinstance(
            result, ServiceLookup | NodeLookup | QueryLookup | AddrLookup | InvalidName
        )
        if isinstance(result, ServiceLookup):
            assert (result.service and "service" in name) or srv


@given(address=st.ip_addresses())
def test_addr_names_decode_any_address(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    name = f"{address.packed.hex()}.addr.consul"
    assert parse_lookup(name, "consul", srv_question=False) == AddrLookup(address)
