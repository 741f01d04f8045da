"""The conversion of Consul's entries into endpoints is pure and total: whatever well-typed
entries say, it never raises, every endpoint it returns is valid, and every instance it leaves
out is reported (never silently dropped)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.consul.models import (
    HealthAnswer,
    NodeInfo,
    ServiceEntry,
    ServiceInfo,
    convert_entries,
    to_endpoints,
)
from mcresolve.endpoint import endpoint_problem

ADDRESSES = st.one_of(
    st.sampled_from(["", "10.0.0.1", "::1", "a b", "x\r\ny", "[::1]", "999.0.0.1", "h.example"]),
    st.text(max_size=20),
)
PORTS = st.one_of(st.integers(-5, 70000), st.sampled_from([0, 65536, 10**30, -(10**30), 2**63]))


@st.composite
def entries(draw: st.DrawFn) -> ServiceEntry:
    return ServiceEntry(
        NodeInfo(draw(st.text(max_size=8)), draw(ADDRESSES), draw(st.sampled_from(["", "dc1"]))),
        ServiceInfo(draw(st.text(max_size=8)), "web", draw(PORTS), draw(ADDRESSES)),
    )


@settings(max_examples=300, deadline=None)
@given(listed=st.lists(entries(), max_size=8), default_port=st.none() | st.integers(1, 65535))
def test_convert_entries_is_total_and_loses_nothing(
    listed: list[ServiceEntry], default_port: int | None
) -> None:
    converted = convert_entries(listed, "dc9", default_port)
    assert all(endpoint_problem(e.address, e.port) is None for e in converted.endpoints)
    usable = [
        e
        for e in listed
        if endpoint_problem(
            e.address, default_port if e.service.port == 0 and default_port else e.service.port
        )
        is None
    ]
    # every instance is either an endpoint (duplicates merged) or a rejection
    assert len(converted.rejected) == len(listed) - len(usable)
    assert {e.key for e in converted.endpoints} == {
        (e.address, e.service.port if e.service.port else default_port) for e in usable
    }
    assert converted.rejected_whole == (bool(listed) and not usable)
    assert to_endpoints(listed, "dc9") == convert_entries(listed, "dc9").endpoints
    answer = HealthAnswer.decode(listed, "dc9", default_port)
    assert list(answer) == listed and len(answer) == len(listed)
    assert answer.endpoints == converted.endpoints


def test_a_port_less_instance_takes_the_port_option_else_is_rejected() -> None:
    entry = ServiceEntry(NodeInfo("n1", "10.0.0.1"), ServiceInfo("web-1", "web", 0))
    assert [e.port for e in convert_entries([entry], default_port=9000).endpoints] == [9000]
    rejected = convert_entries([entry]).rejected
    assert len(rejected) == 1 and "without a port" in rejected[0].reason
