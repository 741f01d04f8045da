"""DnsResponder (pure decision logic, no sockets) on in-test cluster views."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest
from emulator_fakes import FakeCluster, FakeDatacenter
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.testing.consul.contracts import (
    EmulatorError,
    HealthEntry,
)
from mcresolve.testing.consul.dns_records import (
    meta_txt,
    sync_extra,
    uncompressed_length,
)
from mcresolve.testing.consul.dns_responder import DnsResponder, query_dns_ttl

NOW = 1_700_000_000.0
AGENT_META = {"consul-network-segment": ""}


def make_entry(
    node: str,
    port: int,
    *,
    tags: Sequence[str] = (),
    status: str = "passing",
    node_status: str | None = None,
    address: str = "",
    node_address: str = "127.0.0.1",
    meta: dict[str, str] | None = None,
    service: str = "web",
    dc: str = "dc1",
) -> HealthEntry:
    checks = []
    if node_status is not None:
        checks.append({"CheckID": "serfHealth", "Status": node_status})
    checks.append({"CheckID": f"{node}-{port}", "Status": status})
    return {
        "Node": {"Node": node, "Address": node_address, "Datacenter": dc, "Meta": meta},
        "Service": {
            "ID": f"{service}-{port}",
            "Service": service,
            "Tags": list(tags),
            "Address": address,
            "Port": port,
        },
        "Checks": checks,
    }


def six_instances() -> list[HealthEntry]:
    return [
        make_entry("n1", 9001, tags=["primary", "v1"], meta=AGENT_META, node_status="passing"),
        make_entry("n1", 9002, tags=["secondary", "v1"], meta=AGENT_META, node_status="passing"),
        make_entry("n1", 9003, tags=["v2"], meta=AGENT_META, node_status="passing"),
        make_entry("n1", 9004, tags=["http", "V1"], meta=AGENT_META, node_status="passing"),
        make_entry("x1", 9005, tags=["external", "v1"], meta={}),
        make_entry("x2", 9006, tags=["external", "v2"], meta=None),
    ]


def responder(*views: FakeDatacenter, seed: int = 1, **kwargs: Any) -> DnsResponder:
    return DnsResponder(
        "dc1", FakeCluster(views), rng=random.Random(seed), clock=lambda: NOW, **kwargs
    )


def ask(
    resp: DnsResponder,
    qname: str,
    qtype: str = "SRV",
    transport: str = "udp",
    payload: int | None = None,
    rd: bool = True,
) -> dns.message.Message:
    query = dns.message.make_query(
        qname, qtype, use_edns=payload is not None, payload=payload or 1232
    )
    if not rd:
        query.flags &= ~dns.flags.RD
    wire = resp.respond_wire(query.to_wire(), "tcp" if transport == "tcp" else "udp")
    assert wire is not None
    answer = dns.message.from_wire(wire, one_rr_per_rrset=True)
    assert answer.id == query.id
    return answer


def records(message: dns.message.Message, section: str = "answer") -> list[str]:
    return [rdata.to_text() for rrset in getattr(message, section) for rdata in rrset]


def types(message: dns.message.Message, section: str) -> list[str]:
    return [dns.rdatatype.to_text(rrset.rdtype) for rrset in getattr(message, section)]


def soa_only(message: dns.message.Message) -> bool:
    return types(message, "authority") == ["SOA"] and records(message, "authority") == [
        f"ns.consul. hostmaster.consul. {int(NOW)} 3600 600 86400 0"
    ]


# -- header ---------------------------------------------------------------------------------


def test_flags_are_qr_aa_and_the_questions_rd_never_ra() -> None:
    resp = responder(FakeDatacenter("dc1", six_instances()))
    with_rd = ask(resp, "web.service.consul")
    assert with_rd.flags == dns.flags.QR | dns.flags.AA | dns.flags.RD
    without_rd = ask(resp, "web.service.consul", rd=False)
    assert without_rd.flags == dns.flags.QR | dns.flags.AA


def test_edns_payload_is_echoed_and_absent_without_edns() -> None:
    resp = responder(FakeDatacenter("dc1", six_instances()))
    assert ask(resp, "web.service.consul", payload=1232).payload == 1232
    assert ask(resp, "web.service.consul", payload=4096).payload == 4096
    assert ask(resp, "web.service.consul").edns == -1


# -- service lookups -------------------------------------------------------------------------


def test_udp_without_edns_answers_three_srv_with_one_address_per_target() -> None:
    message = ask(responder(FakeDatacenter("dc1", six_instances())), "web.service.consul")
    assert len(message.answer) == 3
    targets = [rrset[0].target.to_text() for rrset in message.answer]
    extra_names = [rrset.name.to_text() for rrset in message.additional]
    assert extra_names == list(dict.fromkeys(targets))
    assert set(types(message, "additional")) == {"A"}


@pytest.mark.parametrize(("payload", "expected"), [(None, 3), (100, 3), (512, 3), (1232, 6)])
def test_udp_answer_limit_applies_only_to_plain_512_byte_udp(
    payload: int | None, expected: int
) -> None:
    message = ask(
        responder(FakeDatacenter("dc1", six_instances())), "web.service.consul", payload=payload
    )
    assert len(message.answer) == expected


@pytest.mark.parametrize(("transport", "payload"), [("tcp", None), ("udp", 4096)])
def test_tcp_and_large_edns_answer_every_instance_with_txt_per_answer(
    transport: str, payload: int | None
) -> None:
    message = ask(
        responder(FakeDatacenter("dc1", six_instances())),
        "web.service.consul",
        "SRV",
        transport,
        payload,
    )
    assert sorted(rrset[0].port for rrset in message.answer) == list(range(9001, 9007))
    # like Consul: the node's A and TXT are repeated for each of its four answers
    assert types(message, "additional").count("TXT") == 4
    assert types(message, "additional").count("A") == 6
    txt_owners = {rrset.name.to_text() for rrset in message.additional if rrset.rdtype == 16}
    assert txt_owners == {"n1.node.dc1.consul."}
    assert records(message, "additional").count('"consul-network-segment="') == 4


def test_srv_rdata_is_priority_1_weight_1_and_target_names_the_datacenter() -> None:
    message = ask(
        responder(FakeDatacenter("dc1", six_instances())), "web.service.consul", "SRV", "tcp"
    )
    assert sorted(records(message)) == sorted(
        [f"1 1 {port} n1.node.dc1.consul." for port in (9001, 9002, 9003, 9004)]
        + ["1 1 9005 x1.node.dc1.consul.", "1 1 9006 x2.node.dc1.consul."]
    )
    assert {rrset.ttl for rrset in [*message.answer, *message.additional]} == {0}


def test_a_records_are_deduplicated_by_address() -> None:
    entries = [*six_instances(), make_entry("x3", 9007, address="10.0.0.7")]
    message = ask(responder(FakeDatacenter("dc1", entries)), "web.service.consul", "A", "tcp")
    assert sorted(records(message)) == ["10.0.0.7", "127.0.0.1"]
    assert message.additional == []


def test_udp_limit_also_applies_to_distinct_addresses() -> None:
    entries = [make_entry(f"n{i}", 1, node_address=f"10.0.0.{i}") for i in range(5)]
    resp = responder(FakeDatacenter("dc1", entries))
    assert len(records(ask(resp, "web.service.consul", "A"))) == 3
    assert len(records(ask(resp, "web.service.consul", "A", "tcp"))) == 5


def test_any_answers_addresses_only_and_txt_aaaa_of_ipv4_give_soa() -> None:
    resp = responder(FakeDatacenter("dc1", six_instances()))
    assert records(ask(resp, "web.service.consul", "ANY")) == ["127.0.0.1"]
    for qtype in ("AAAA", "TXT"):
        message = ask(resp, "web.service.consul", qtype)
        assert message.rcode() == dns.rcode.NOERROR
        assert message.answer == []
        assert soa_only(message)


def test_ipv6_service_address_gives_aaaa() -> None:
    entries = [make_entry("n1", 1, address="2001:db8::1")]
    message = ask(responder(FakeDatacenter("dc1", entries)), "web.service.consul", "AAAA")
    assert records(message) == ["2001:db8::1"]
    assert ask(responder(FakeDatacenter("dc1", entries)), "web.service.consul", "A").answer == []


def test_hostname_service_address_gives_cname() -> None:
    entries = [make_entry("n1", 1, address="storage.example.com")]
    resp = responder(FakeDatacenter("dc1", entries))
    assert records(ask(resp, "web.service.consul", "A")) == ["storage.example.com."]
    srv = ask(resp, "web.service.consul", "SRV")
    assert types(srv, "additional") == ["CNAME"]
    assert srv.additional[0].name.to_text() == "n1.node.dc1.consul."


def test_warning_is_returned_and_critical_left_out_including_node_checks() -> None:
    entries = [
        make_entry("n1", 1, status="warning"),
        make_entry("n1", 2, status="critical"),
        make_entry("n2", 3, node_status="critical"),
        make_entry("n3", 4, node_status="warning", status="passing"),
    ]
    message = ask(responder(FakeDatacenter("dc1", entries)), "web.service.consul", "SRV", "tcp")
    assert sorted(rrset[0].port for rrset in message.answer) == [1, 4]


@pytest.mark.parametrize("qtype", ["A", "SRV", "AAAA"])
def test_no_healthy_instance_unknown_service_and_unknown_tag_are_nxdomain(qtype: str) -> None:
    critical = [make_entry("n1", 1, status="critical")]
    resp = responder(FakeDatacenter("dc1", critical), FakeDatacenter("dc2", six_instances()))
    for name in ("web.service.consul", "nope.service.consul", "x.web.service.dc2.consul"):
        message = ask(resp, name, qtype)
        assert message.rcode() == dns.rcode.NXDOMAIN
        assert message.answer == [] and message.additional == []
        assert soa_only(message)


def test_service_lookup_never_fails_over() -> None:
    critical = [make_entry("n1", 1, status="critical")]
    resp = responder(FakeDatacenter("dc1", critical), FakeDatacenter("dc2", six_instances()))
    assert ask(resp, "web.service.consul").rcode() == dns.rcode.NXDOMAIN
    assert ask(resp, "web.service.dc2.consul").rcode() == dns.rcode.NOERROR


def test_tags_names_and_datacenters_match_case_insensitively() -> None:
    resp = responder(FakeDatacenter("dc1", six_instances()), FakeDatacenter("dc2", six_instances()))
    message = ask(resp, "V1.WEB.service.DC2.consul", "SRV", "tcp")
    assert sorted(rrset[0].port for rrset in message.answer) == [9001, 9002, 9004, 9005]
    assert {rrset.name.to_text() for rrset in message.answer} == {"V1.WEB.service.DC2.consul."}
    assert all("dc2" in rrset[0].target.to_text() for rrset in message.answer)


def test_rfc2782_names() -> None:
    resp = responder(FakeDatacenter("dc1", six_instances()))
    tcp = ask(resp, "_web._tcp.service.consul", "SRV", "tcp")
    assert len(tcp.answer) == 6
    primary = ask(resp, "_web._primary.service.consul", "SRV", "tcp")
    assert [rrset[0].port for rrset in primary.answer] == [9001]
    # A question: the "service" label may not be left out
    assert ask(resp, "_web._tcp.consul", "A").rcode() == dns.rcode.NXDOMAIN


def test_unreachable_or_unknown_datacenter_is_servfail_with_empty_sections() -> None:
    cluster = FakeCluster(
        [FakeDatacenter("dc1", six_instances()), FakeDatacenter("dc2", six_instances())]
    )
    cluster.down.add("dc2")
    resp = DnsResponder("dc1", cluster, rng=random.Random(1), clock=lambda: NOW)
    for name in ("web.service.dc2.consul", "web.service.nodc.consul", "n1.node.dc2.consul"):
        message = ask(resp, name, "A", payload=1232)
        assert message.rcode() == dns.rcode.SERVFAIL
        assert message.flags & dns.flags.AA
        assert message.answer == message.authority == message.additional == []
        assert message.payload == 1232


def test_emulator_errors_become_servfail() -> None:
    view = FakeDatacenter("dc1", [])
    view.queries["boom"] = EmulatorError(500, "rpc error")
    message = ask(responder(view), "boom.query.consul")
    assert message.rcode() == dns.rcode.SERVFAIL


def test_duplicate_instances_give_one_srv() -> None:
    entries = [make_entry("n1", 1), make_entry("n1", 1)]
    message = ask(responder(FakeDatacenter("dc1", entries)), "web.service.consul", "SRV", "tcp")
    assert records(message) == ["1 1 1 n1.node.dc1.consul."]


def test_udp_answers_are_cut_to_512_bytes_and_lose_their_txt() -> None:
    long_node = "n" * 60
    entries = [
        make_entry(f"{long_node}{i}", 9000 + i, meta={"k" * 50: "v" * 100}) for i in range(3)
    ]
    message = ask(responder(FakeDatacenter("dc1", entries)), "web.service.consul", "SRV")
    assert 0 < len(message.answer) < 3
    assert set(types(message, "additional")) == {"A"}
    assert len(message.to_wire()) <= 512
    # with room (TCP), all three and their TXT records are there
    tcp = ask(responder(FakeDatacenter("dc1", entries)), "web.service.consul", "SRV", "tcp")
    assert len(tcp.answer) == 3 and types(tcp, "additional").count("TXT") == 3


def test_tcp_caps_srv_answers_and_size() -> None:
    entries = [make_entry(f"node-{i:04d}", 1000 + i) for i in range(900)]
    message = ask(responder(FakeDatacenter("dc1", entries)), "web.service.consul", "SRV", "tcp")
    assert 0 < len(message.answer) <= 640
    assert len(message.to_wire()) <= 65535


def test_order_and_subset_are_random_on_every_answer() -> None:
    resp = DnsResponder(
        "dc1",
        FakeCluster([FakeDatacenter("dc1", six_instances())]),
        rng=random.Random(3),
        clock=lambda: NOW,
    )
    orders = set()
    seen_ports: set[int] = set()
    for _ in range(30):
        message = ask(resp, "web.service.consul", "SRV")
        ports = tuple(rrset[0].port for rrset in message.answer)
        orders.add(ports)
        seen_ports.update(ports)
    assert len(orders) >= 20
    assert seen_ports == set(range(9001, 9007))


# -- nodes, addr ----------------------------------------------------------------------------


def test_node_lookups() -> None:
    resp = responder(FakeDatacenter("dc1", six_instances()))
    assert records(ask(resp, "n1.node.consul", "A")) == ["127.0.0.1"]
    assert records(ask(resp, "N1.node.dc1.consul", "TXT")) == ['"consul-network-segment="']
    assert records(ask(resp, "n1.node.consul", "ANY")) == [
        "127.0.0.1",
        '"consul-network-segment="',
    ]
    for qtype in ("AAAA", "SRV"):
        empty = ask(resp, "n1.node.consul", qtype)
        assert empty.rcode() == dns.rcode.NOERROR
        assert empty.answer == empty.authority == []
    unknown = ask(resp, "nope.node.consul", "A")
    assert unknown.rcode() == dns.rcode.NXDOMAIN and soa_only(unknown)


def test_addr_lookups() -> None:
    resp = responder(FakeDatacenter("dc1", []))
    assert records(ask(resp, "7f000001.addr.consul", "A")) == ["127.0.0.1"]
    assert records(ask(resp, "20010db8000000000000000000000001.addr.dc1.consul", "A")) == [
        "2001:db8::1"
    ]
    assert ask(resp, "7f.addr.consul", "A").answer == []
    assert ask(resp, "zz000001.addr.consul", "A").rcode() == dns.rcode.NXDOMAIN


def test_malformed_names_are_nxdomain_with_soa() -> None:
    resp = responder(FakeDatacenter("dc1", six_instances()))
    for name in ("web.consul", "consul", "service.consul", "a.b.c.service.dc1.x.consul"):
        message = ask(resp, name, "A")
        assert message.rcode() == dns.rcode.NXDOMAIN and soa_only(message)


# -- prepared queries -----------------------------------------------------------------------


def query_result(entries: list[HealthEntry], dc: str = "dc1", ttl: str = "") -> dict[str, Any]:
    return {"Service": "web", "Nodes": entries, "DNS": {"TTL": ttl}, "Datacenter": dc}


def test_prepared_query_ttl_and_failover_datacenter() -> None:
    view = FakeDatacenter("dc1", [])
    remote = [make_entry("n2", 9101, dc="dc2", meta=AGENT_META)]
    view.queries["q"] = query_result(remote, dc="dc2", ttl="10s")
    message = ask(responder(view), "q.query.consul", "SRV")
    assert records(message) == ["1 1 9101 n2.node.dc2.consul."]
    assert {rrset.ttl for rrset in [*message.answer, *message.additional]} == {10}
    assert types(message, "additional") == ["A", "TXT"]


@pytest.mark.parametrize(("ttl", "seconds"), [("", 0), ("1m30s", 90), ("1.9s", 1), ("ten", 0)])
def test_prepared_query_ttl_parsing(ttl: str, seconds: int) -> None:
    view = FakeDatacenter("dc1", [])
    view.queries["q"] = query_result([make_entry("n1", 1)], ttl=ttl)
    assert ask(responder(view), "q.query.consul", "A").answer[0].ttl == seconds


def test_prepared_query_not_found_or_empty_is_nxdomain_and_remote_lookup_servfail() -> None:
    dc1 = FakeDatacenter("dc1", [])
    dc1.queries["empty"] = query_result([])
    dc1.queries["only-here"] = query_result([make_entry("n1", 1)])
    resp = responder(dc1, FakeDatacenter("dc2", []))
    for name in ("nope.query.consul", "empty.query.consul", "nope.query.dc1.consul"):
        message = ask(resp, name)
        assert message.rcode() == dns.rcode.NXDOMAIN and soa_only(message)
    remote = ask(resp, "only-here.query.dc2.consul")
    assert remote.rcode() == dns.rcode.SERVFAIL
    assert remote.answer == remote.authority == []


def test_prepared_query_keeps_the_order_the_query_engine_chose() -> None:
    view = FakeDatacenter("dc1", [])
    entries = [make_entry(f"n{i}", 9000 + i, node_address=f"10.0.0.{i}") for i in range(3)]
    view.queries["q"] = query_result(entries)
    message = ask(responder(view), "q.query.consul", "A", "tcp")
    assert records(message) == ["10.0.0.0", "10.0.0.1", "10.0.0.2"]


# -- other question types and messages ------------------------------------------------------


def test_soa_ns_and_axfr_questions() -> None:
    servers = [make_entry("n1", 8300, service="consul")]
    resp = responder(FakeDatacenter("dc1", servers))
    soa = ask(resp, "consul", "SOA")
    assert types(soa, "answer") == ["SOA"] and types(soa, "authority") == ["NS"]
    assert records(soa, "authority") == ["n1.node.dc1.consul."]
    assert records(soa, "additional") == ["127.0.0.1"]
    ns = ask(resp, "anything.consul", "NS")
    assert records(ns) == ["n1.node.dc1.consul."]
    query = dns.message.make_query("consul", "AXFR")
    wire = resp.respond_wire(query.to_wire(), "tcp")
    assert wire is not None
    assert dns.message.from_wire(wire).rcode() == dns.rcode.NOTIMP


def test_names_outside_the_domain_are_servfail_without_aa() -> None:
    resp = responder(FakeDatacenter("dc1", six_instances()))
    other = ask(resp, "example.com", "A")
    assert other.rcode() == dns.rcode.SERVFAIL
    assert not other.flags & dns.flags.AA
    ptr = ask(resp, "1.0.0.127.in-addr.arpa", "PTR")
    assert ptr.rcode() == dns.rcode.SERVFAIL and ptr.flags & dns.flags.RA


def test_undecodable_messages_and_responses_are_dropped() -> None:
    resp = responder(FakeDatacenter("dc1", six_instances()))
    assert resp.respond_wire(b"\x00\x01garbage", "udp") is None
    query = dns.message.make_query("web.service.consul", "A")
    reply = dns.message.make_response(query)
    assert resp.respond_wire(reply.to_wire(), "udp") is None


def test_message_without_question_is_servfail() -> None:
    query = dns.message.Message(id=7)
    wire = responder(FakeDatacenter("dc1", [])).respond_wire(query.to_wire(), "udp")
    assert wire is not None
    message = dns.message.from_wire(wire)
    assert message.rcode() == dns.rcode.SERVFAIL and message.id == 7


# -- helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("", 0),
        ("10s", 10),
        ("0", 0),
        ("1m30s", 90),
        ("1.9s", 1),
        ("250ms", 0),
        ("1h2m3s4ms", 3723),
        ("-1s", 4294967295),
        ("10", 0),
        ("ten", 0),
    ],
)
def test_query_dns_ttl(text: str, seconds: int) -> None:
    assert query_dns_ttl(text) == seconds


@pytest.mark.parametrize(
    ("key", "value", "txt"),
    [
        ("consul-network-segment", "", "consul-network-segment="),
        ("rack", "r1", "rack=r1"),
        ("rfc1035-x", "raw value", "raw value"),
        ("a=b", "c`d", "a`=b=c``d"),
        ("  sp ", "v", "` ` sp` =v"),
    ],
)
def test_meta_txt_is_rfc1464(key: str, value: str, txt: str) -> None:
    assert meta_txt(key, value) == txt


def test_uncompressed_length_counts_every_name_in_full() -> None:
    query = dns.message.make_query("a.consul", "A")
    message = dns.message.make_response(query)
    assert uncompressed_length(message.question) == 12 + len(b"\x01a\x06consul\x00") + 4


def test_sync_extra_keeps_first_record_per_target_and_follows_cnames() -> None:
    entries = [make_entry("n1", 1, address="alias.consul"), make_entry("n2", 2)]
    resp = responder(FakeDatacenter("dc1", entries))
    message = ask(resp, "web.service.consul", "SRV", "tcp")
    index = {rrset.name.to_text().lower(): rrset for rrset in message.additional}
    extra = sync_extra(list(message.answer), index)
    assert {rrset.name.to_text() for rrset in extra} == {
        "n1.node.dc1.consul.",
        "n2.node.dc1.consul.",
    }


# -- properties -----------------------------------------------------------------------------

INSTANCE = st.builds(
    lambda node, port, status, meta: make_entry(
        f"node{node}", port, status=status, meta={"k": "v"} if meta else None
    ),
    node=st.integers(0, 5),
    port=st.integers(1, 6),
    status=st.sampled_from(["passing", "warning", "critical"]),
    meta=st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(entries=st.lists(INSTANCE, max_size=12), seed=st.integers(0, 2**16))
def test_srv_answers_follow_the_rules_for_any_catalog(
    entries: list[HealthEntry], seed: int
) -> None:
    healthy = {
        (e["Node"]["Node"], e["Service"]["Port"])
        for e in entries
        if all(c["Status"] != "critical" for c in e["Checks"])
    }
    resp = responder(FakeDatacenter("dc1", entries), seed=seed)
    tcp = ask(resp, "web.service.consul", "SRV", "tcp")
    udp = ask(resp, "web.service.consul", "SRV", "udp")
    if not healthy:
        for message in (tcp, udp):
            assert message.rcode() == dns.rcode.NXDOMAIN and soa_only(message)
        return

    def answered(message: dns.message.Message) -> list[tuple[str, int]]:
        return [(rrset[0].target.labels[0].decode(), rrset[0].port) for rrset in message.answer]

    assert sorted(answered(tcp)) == sorted(healthy)
    assert len(answered(udp)) == min(3, len(healthy))
    assert len(set(answered(udp))) == len(answered(udp))
    assert set(answered(udp)) <= healthy
    targets = [rrset[0].target for rrset in udp.answer]
    assert [rrset.name for rrset in udp.additional] == list(dict.fromkeys(targets)) or (
        len(healthy) <= 3
    )
    assert uncompressed_length(udp.question, list(udp.answer), list(udp.additional)) <= 512


@settings(max_examples=60, deadline=None)
@given(name=st.text(min_size=1, max_size=30), qtype=st.sampled_from(["A", "SRV", "TXT", "ANY"]))
def test_any_question_gets_an_answer_with_the_same_id(name: str, qtype: str) -> None:
    try:
        qname = dns.name.from_text(name, origin=dns.name.from_text("consul"))
    except Exception:
        return
    resp = responder(FakeDatacenter("dc1", six_instances()))
    query = dns.message.make_query(qname, qtype)
    wire = resp.respond_wire(query.to_wire(), "udp")
    assert wire is not None
    message = dns.message.from_wire(wire)
    assert message.id == query.id
    assert message.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL)
    assert message.opcode() == dns.opcode.QUERY
