"""Target strings: every form, the plain-name mapping rule, round-trips and error messages."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcresolve.sources.target import (
    CONSUL_DNS_PORT,
    CommonOptions,
    DnsServer,
    DnsTarget,
    HealthTarget,
    HostPort,
    PreparedQueryTarget,
    Stage,
    StaticTarget,
    Target,
    TargetError,
    format_duration,
    parse_duration,
    parse_target,
)


def test_health_target_with_every_option() -> None:
    target = parse_target(
        "consul://storage-object-minio?tag=minio&dc=dc1&near=_agent&node-meta=k:v"
        "&node-meta=rack:r1&consistency=stale"
    )
    assert target == HealthTarget(
        service="storage-object-minio",
        tag="minio",
        dc="dc1",
        near="_agent",
        node_meta=(("k", "v"), ("rack", "r1")),
        consistency="stale",
    )
    assert target.stage is Stage.HEALTH


def test_health_target_with_explicit_agent() -> None:
    target = parse_target("consul://127.0.0.1:8500/storage-object-minio")
    assert isinstance(target, HealthTarget)
    assert target.agent == HostPort("127.0.0.1", 8500)
    assert target.service == "storage-object-minio"


def test_prepared_query_target() -> None:
    target = parse_target("consul+query://storage-object-minio?dc=dc1&limit=2&refresh=5s")
    assert target == PreparedQueryTarget("storage-object-minio", dc="dc1", limit=2, refresh=5.0)
    assert target.stage is Stage.PREPARED_QUERY


def test_dns_target_servers_default_port_and_several() -> None:
    target = parse_target(
        "dns://storage-object-minio.service.consul?server=127.0.0.1:8600,127.0.0.2&server=[::1]:53"
    )
    assert isinstance(target, DnsTarget)
    assert target.servers == (
        DnsServer("127.0.0.1", 8600),
        DnsServer("127.0.0.2", CONSUL_DNS_PORT),
        DnsServer("::1", 53),
    )
    assert (target.record, target.transport, target.ttl_floor) == ("srv", "auto", 1.0)
    assert target.stage is Stage.DNS


def test_dns_target_without_server_uses_system_resolver() -> None:
    target = parse_target("dns://storage-object-minio.service.consul")
    assert isinstance(target, DnsTarget)
    assert target.servers == ()


def test_dns_target_options() -> None:
    target = parse_target(
        "dns://minio.query.consul?type=a&port=9000&transport=tcp&ttl-floor=250ms"
        "&refresh=1s&timeout=500ms&udp-limit=5"
    )
    assert isinstance(target, DnsTarget)
    assert (target.record, target.transport, target.udp_answer_limit) == ("a", "tcp", 5)
    assert (target.ttl_floor, target.refresh, target.timeout) == (0.25, 1.0, 0.5)
    assert target.options.port == 9000


def test_static_target_with_ipv6_and_hostnames() -> None:
    target = parse_target("static://10.0.0.1:9000,[2001:db8::1]:9000,minio-1.local:9001")
    assert target == StaticTarget(
        (HostPort("10.0.0.1", 9000), HostPort("2001:db8::1", 9000), HostPort("minio-1.local", 9001))
    )
    assert str(target) == "static://10.0.0.1:9000,[2001:db8::1]:9000,minio-1.local:9001"


def test_static_entries_without_port_take_the_port_option() -> None:
    target = parse_target("static://10.0.0.1,10.0.0.2:9001?port=9000")
    assert isinstance(target, StaticTarget)
    assert target.options.port == 9000


# --- plain names: the mapping rule -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("storage-object-minio.service.consul", HealthTarget("storage-object-minio")),
        ("storage-object-minio.service.consul.", HealthTarget("storage-object-minio")),
        ("storage-object-minio.service.dc2.consul", HealthTarget("storage-object-minio", dc="dc2")),
        (
            "minio.storage-object-minio.service.dc1.consul",
            HealthTarget("storage-object-minio", tag="minio", dc="dc1"),
        ),
        ("_storage-object-minio._tcp.service.consul", HealthTarget("storage-object-minio")),
        (
            "_storage-object-minio._primary.service.consul",
            HealthTarget("storage-object-minio", tag="primary"),
        ),
        ("storage-object-minio.query.consul", PreparedQueryTarget("storage-object-minio")),
        (
            "storage-object-minio.query.dc1.consul",
            PreparedQueryTarget("storage-object-minio", dc="dc1"),
        ),
        (
            "storage-object-minio.query.consul:9000",
            PreparedQueryTarget("storage-object-minio", options=CommonOptions(port=9000)),
        ),
        ("10.0.0.1:9000", StaticTarget((HostPort("10.0.0.1", 9000),))),
        (
            "10.0.0.1:9000,[::1]:9001",
            StaticTarget((HostPort("10.0.0.1", 9000), HostPort("::1", 9001))),
        ),
        (
            "minio.example.com:9000",
            DnsTarget("minio.example.com", record="a", options=CommonOptions(port=9000)),
        ),
    ],
)
def test_plain_names_map_to_their_stage(text: str, expected: Target) -> None:
    assert parse_target(text) == expected


def test_plain_name_options_apply_to_the_mapped_scheme() -> None:
    target = parse_target("storage-object-minio.service.consul?near=_agent&fallback=10.0.0.1:9000")
    assert isinstance(target, HealthTarget)
    assert target.near == "_agent"
    assert target.options.fallback == StaticTarget((HostPort("10.0.0.1", 9000),))


def test_option_in_query_wins_over_the_name() -> None:
    target = parse_target("v1.storage-object-minio.service.dc2.consul?dc=dc1")
    assert isinstance(target, HealthTarget)
    assert (target.tag, target.dc) == ("v1", "dc1")


# --- common options and the fallback chain ---------------------------------------------------


def test_fallback_takes_the_rest_of_the_string_and_nests() -> None:
    target = parse_target(
        "consul://svc?dc=dc1&fallback=dns://svc.service.consul?server=127.0.0.1"
        "&fallback=static://10.0.0.1:9000"
    )
    assert isinstance(target, HealthTarget)
    assert target.dc == "dc1"
    dns_fallback = target.options.fallback
    assert isinstance(dns_fallback, DnsTarget)
    assert dns_fallback.servers == (DnsServer("127.0.0.1", 8600),)
    assert dns_fallback.options.fallback == StaticTarget((HostPort("10.0.0.1", 9000),))


def test_percent_encoded_fallback() -> None:
    target = parse_target("consul://svc?fallback=static%3A%2F%2F10.0.0.1%3A9000")
    assert target.options.fallback == StaticTarget((HostPort("10.0.0.1", 9000),))


def test_common_options() -> None:
    target = parse_target(
        "consul+query://q?snapshot=/var/lib/app/q.json&fallback-after=1m30s"
        "&empty-hold=0&empty-confirm=5&port=9000"
    )
    assert target.options == CommonOptions(
        port=9000,
        snapshot="/var/lib/app/q.json",
        fallback_after=90.0,
        empty_hold=0.0,
        empty_confirm=5,
    )


def test_defaults() -> None:
    options = parse_target("consul://svc").options
    assert options == CommonOptions()
    assert (options.fallback_after, options.empty_hold, options.empty_confirm) == (None, 10.0, 3)


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a target such as consul://"),
        ("   ", "expected a target such as consul://"),
        ("http://svc", "unknown scheme 'http': expected consul://, consul+query://, dns://"),
        ("consul://", "expected a service name"),
        ("consul+query://", "expected a prepared query name or ID"),
        ("dns://", "expected a DNS name"),
        ("static://", "expected at least one host:port"),
        ("static://10.0.0.1", "has no port; expected host:port or a port=<n> option"),
        ("static://10.0.0.1:0", "expected a port number 1..65535"),
        ("static://10.0.0.1:70000", "expected a port number 1..65535"),
        ("static://10.0.0.1:http", "expected a port number 1..65535"),
        ("static://::1:9000", "IPv6 addresses in brackets"),
        ("static://[::1:9000", "missing ']'"),
        ("static://[nope]:9000", "expected an IPv6 address in brackets"),
        ("static://10.0.0.1:9000,", "got an empty entry"),
        ("static://bad_host!:9000", "expected a DNS host name"),
        ("consul://svc?bogus=1", "unknown option 'bogus'; expected one of"),
        ("consul://svc?consistency=weird", "consistency: expected one of default, stale"),
        ("consul://svc?tag=a&tag=b", "option tag given 2 times; expected once"),
        ("consul://svc?node-meta=novalue", "node-meta: expected key:value"),
        ("consul://svc?dc=dc.1", "dc: expected a datacenter name"),
        ("consul://svc name", "consul://: expected a service name"),
        ("consul://a/b/c", "expected consul://<service> or consul://<agent host:port>/<service>"),
        ("consul://127.0.0.1/svc", "expected the agent as host:port"),
        ("consul+query://127.0.0.1/q", "consul+query://127.0.0.1/...: expected the agent as"),
        ("consul+query://q?limit=0", "limit: expected an integer >= 1"),
        ("consul+query://q?limit=two", "limit: expected an integer"),
        ("consul+query://q?refresh=0", "refresh: expected a positive duration"),
        ("consul+query://q?standby=-1", "standby: expected an integer from 0 to 16"),
        ("consul+query://q?standby=17", "standby: expected an integer from 0 to 16"),
        ("consul+query://q?standby=one", "standby: expected an integer"),
        ("consul://svc?failover=", "failover: expected datacenter names separated by commas"),
        ("consul://svc?failover=dc2,,dc3", "failover: expected datacenter names separated"),
        ("consul://svc?failover=dc.2", "failover: expected a datacenter name"),
        ("consul://svc?failover=dc2,DC2", "failover: expected each datacenter once"),
        ("consul://svc?dc=dc2&failover=dc2", "failover: 'dc2' is the target's own datacenter"),
        ("consul://svc?peer=p&failover=dc2", "failover: cannot be combined with peer="),
        ("consul://svc?failover=dc2&failover=dc3", "option failover given 2 times"),
        ("consul://svc?empty-hold=5", "empty-hold: expected a duration such as 500ms"),
        ("consul://svc?empty-confirm=0", "empty-confirm: expected an integer >= 1"),
        ("consul://svc?fallback-after=soon", "fallback-after: expected a duration"),
        ("consul://svc?port=99999", "port: expected a port number 1..65535"),
        ("consul://svc?snapshot=", "snapshot: expected a file path"),
        ("consul://svc?fallback=nope://x", "fallback: unknown scheme 'nope'"),
        ("consul://svc?fallback=static://", "fallback: static://: expected at least one"),
        ("dns://svc.service.consul?type=a", "type=a: expected a port=<n> option"),
        ("dns://svc.service.consul?type=mx", "type: expected one of srv, a"),
        ("dns://svc.service.consul?transport=quic", "transport: expected one of auto, udp, tcp"),
        ("dns://svc.service.consul?server=consul.local", "server: expected an IP address"),
        ("dns://svc.service.consul?udp-limit=0", "udp-limit: expected an integer >= 1"),
        ("dns://svc.service.consul?refresh=0", "refresh: expected a positive duration"),
        ("storage-object-minio", "is not a Consul name: expected <service>.service"),
        ("minio.example.com", "is not a Consul name"),
        ("10.0.0.1", "expected ip:port"),
        ("svc.consul", "expected a Consul name <service>.service[.<dc>].consul"),
        ("a.b.query.consul", "expected a Consul name"),
        ("a.b.c.service.consul", "expected a Consul name"),
    ],
)
def test_invalid_targets_say_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(TargetError, match=None) as info:
        parse_target(text)
    assert message in str(info.value)


def test_filter_peer_ns_partition_options() -> None:
    target = parse_target(
        "consul://api?filter=Service.Meta.version%20%3D%3D%20%222%22&peer=east&ns=team&partition=p1"
    )
    assert isinstance(target, HealthTarget)
    assert target.filter == 'Service.Meta.version == "2"'
    assert (target.peer, target.ns, target.partition) == ("east", "team", "p1")
    assert str(target) == (
        "consul://api?filter=Service.Meta.version%20%3D%3D%20%222%22&peer=east&ns=team&partition=p1"
    )
    plain = parse_target("consul://api")
    assert isinstance(plain, HealthTarget)
    assert (plain.filter, plain.peer, plain.ns, plain.partition) == (None, None, None, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("api.service.east.peer.consul", "consul://api?peer=east"),
        ("v1.api.service.east.peer.consul.", "consul://api?tag=v1&peer=east"),
        ("_api._v1.service.dc2.dc.consul", "consul://api?tag=v1&dc=dc2"),
        ("q.query.dc2.dc.consul", "consul+query://q?dc=dc2"),
        ("api.service.east.peer.consul?peer=west", "consul://api?peer=west"),
        ("a.b.service.peer.consul", "consul://b?tag=a&dc=peer"),  # a datacenter named peer
    ],
)
def test_labelled_locality_names(text: str, expected: str) -> None:
    assert str(parse_target(text)) == expected


def test_a_query_has_no_peer_name() -> None:
    with pytest.raises(TargetError, match=re.escape("<service>.service.<peer>.peer.consul")):
        parse_target("q.query.east.peer.consul")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("consul://api?filter=", "filter: expected a filter expression"),
        ("consul://api?filter=%20", "filter: expected a filter expression"),
        ("consul://api?filter=a%00b", "filter: expected printable text"),
        ("consul://api?filter=" + "x" * 2049, "filter: expected at most 2048"),
        ("consul://api?peer=a%20b", "peer: expected a peer name"),
        ("consul://api?ns=", "ns: expected a ns name"),
        ("consul://api?address=public", "address: expected one of lan, wan, auto"),
        ("consul://api?filter=a&filter=b", "option filter given 2 times"),
        ("consul+query://q?filter=a", "option filter is ignored by Consul's prepared-query"),
    ],
)
def test_bad_modern_options(text: str, message: str) -> None:
    with pytest.raises(TargetError, match=re.escape(message)):
        parse_target(text)


def test_target_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown scheme"):
        parse_target("ftp://x")


def test_non_string_is_rejected() -> None:
    with pytest.raises(TargetError, match="expected a target string, got int"):
        parse_target(42)  # type: ignore[arg-type]


def test_direct_construction_is_validated() -> None:
    with pytest.raises(TargetError, match="expected at least one host:port"):
        StaticTarget(())
    with pytest.raises(TargetError, match="expected a service name"):
        HealthTarget("")
    with pytest.raises(TargetError, match="empty-confirm"):
        CommonOptions(empty_confirm=0)


def test_specs_are_frozen_and_hashable() -> None:
    target = parse_target("consul://svc?tag=v1")
    with pytest.raises(AttributeError):
        target.tag = "v2"  # type: ignore[misc, union-attr]
    assert hash(target) == hash(parse_target("consul://svc?tag=v1"))


def test_consul_name_of_dns_target() -> None:
    target = parse_target("dns://v1.storage-object-minio.service.dc2.consul")
    assert isinstance(target, DnsTarget)
    meaning = target.consul_name
    assert meaning is not None
    assert (meaning.kind, meaning.name, meaning.tag, meaning.dc) == (
        "service",
        "storage-object-minio",
        "v1",
        "dc2",
    )
    plain = parse_target("dns://minio.example.com?type=a&port=1")
    assert isinstance(plain, DnsTarget)
    assert plain.consul_name is None


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("250ms", 0.25), ("5s", 5.0), ("1m30s", 90.0), ("2.5s", 2.5), ("1h", 3600.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "abc", "5S", "-1s", "1d", "s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(TargetError, match="expected a duration such as 500ms"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**9).map(lambda ms: ms / 1000))
def test_duration_round_trip(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


# --- property: every spec prints to a string that parses back to it ----------------------------

_label = st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,14}\Z")
_names = st.builds(lambda a, b: f"{a}-{b}" if b else a, _label, st.one_of(st.just(""), _label))
_dc = st.one_of(st.none(), st.from_regex(r"\Adc[0-9]{1,2}\Z"))
_durations = st.integers(min_value=1, max_value=10**6).map(lambda ms: ms / 1000)
_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str)
_ports = st.integers(min_value=1, max_value=65535)
_paths = st.from_regex(r"\A/[a-z0-9_./ -]{1,20}\Z")


@st.composite
def _common(draw: st.DrawFn, fallback: bool = True) -> CommonOptions:
    return CommonOptions(
        port=draw(st.one_of(st.none(), _ports)),
        snapshot=draw(st.one_of(st.none(), _paths)),
        fallback=draw(st.one_of(st.none(), _static_targets(fallback=False))) if fallback else None,
        fallback_after=draw(st.one_of(st.none(), _durations)),
        empty_hold=draw(st.one_of(st.just(10.0), _durations)),
        empty_confirm=draw(st.integers(min_value=1, max_value=9)),
    )


@st.composite
def _static_targets(draw: st.DrawFn, fallback: bool = True) -> StaticTarget:
    hosts = draw(st.lists(st.one_of(_ipv4, _ipv6, _names.map(lambda n: n + ".local")), min_size=1))
    return StaticTarget(
        tuple(HostPort(h, draw(_ports)) for h in hosts), draw(_common(fallback=fallback))
    )


@st.composite
def _health_targets(draw: st.DrawFn) -> HealthTarget:
    dc = draw(_dc)
    peer = draw(st.one_of(st.none(), _label))
    failover: tuple[str, ...] = ()
    if peer is None:
        names = st.from_regex(r"\A[a-z][a-z0-9_-]{0,8}\Z").filter(lambda n: n != dc)
        failover = tuple(draw(st.lists(names, unique=True, max_size=3)))
    return HealthTarget(
        service=draw(_names),
        tag=draw(st.one_of(st.none(), _label)),
        dc=dc,
        near=draw(st.one_of(st.none(), st.just("_agent"), _label)),
        node_meta=tuple(draw(st.lists(st.tuples(_label, _label), max_size=3))),
        consistency=draw(st.sampled_from(["default", "stale", "consistent", "cached"])),
        agent=draw(st.one_of(st.none(), st.builds(HostPort, _ipv4, _ports))),
        options=draw(_common()),
        filter=draw(st.one_of(st.none(), _filters)),
        peer=peer,
        ns=draw(st.one_of(st.none(), _label)),
        partition=draw(st.one_of(st.none(), _label)),
        address=draw(st.sampled_from(["lan", "wan", "auto"])),
        failover=failover,
    )


#: Hostile but valid filter expressions: any printable text (quotes, %, &, =, non-ASCII).
_filters = st.text(
    st.one_of(
        st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), st.sampled_from(" \t\n")
    ),
    min_size=1,
    max_size=60,
).filter(lambda t: bool(t.strip()) and all(c.isprintable() or c in " \t\n" for c in t))


@st.composite
def _query_targets(draw: st.DrawFn) -> PreparedQueryTarget:
    return PreparedQueryTarget(
        query=draw(_names),
        dc=draw(_dc),
        limit=draw(st.one_of(st.none(), st.integers(min_value=1, max_value=100))),
        near=draw(st.one_of(st.none(), st.just("_agent"))),
        refresh=draw(st.one_of(st.just(10.0), _durations)),
        options=draw(_common()),
        standby=draw(st.integers(min_value=0, max_value=16)),
    )


@st.composite
def _dns_targets(draw: st.DrawFn) -> DnsTarget:
    record = draw(st.sampled_from(["srv", "a"]))
    options = draw(_common())
    if record == "a" and options.port is None:
        options = CommonOptions(port=9000, fallback=options.fallback)
    return DnsTarget(
        name=draw(_names) + draw(st.sampled_from([".service.consul", ".query.dc1.consul", ".lan"])),
        servers=tuple(
            draw(st.lists(st.builds(DnsServer, st.one_of(_ipv4, _ipv6), _ports), max_size=3))
        ),
        record=record,
        transport=draw(st.sampled_from(["auto", "udp", "tcp"])),
        udp_answer_limit=draw(st.integers(min_value=1, max_value=10)),
        ttl_floor=draw(st.one_of(st.just(0.0), _durations)),
        refresh=draw(_durations),
        timeout=draw(_durations),
        options=options,
    )


@given(st.one_of(_static_targets(), _health_targets(), _query_targets(), _dns_targets()))
def test_round_trip(target: Target) -> None:
    text = str(target)
    assert parse_target(text) == target
    assert str(parse_target(text)) == text
