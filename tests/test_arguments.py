"""Every public constructor checks its arguments: a wrong type raises ``TypeError``, a value out
of range ``ValueError``, and the message names the parameter (``Class.field`` for a policy).

The table :data:`ROWS` has one row per checked parameter; adding public API means adding rows.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve import (
    CallPolicy,
    Endpoint,
    EndpointPool,
    OutlierPolicy,
    PoolPolicy,
    RetryBudgetPolicy,
    from_target,
)
from mcresolve.consul import ConsulAddress, ConsulClient, ConsulConfig
from mcresolve.consul.registration import (
    HttpCheck,
    RegistrationPolicy,
    ServiceDefinition,
    TtlCheck,
)
from mcresolve.consul.watch import WatchRegistry
from mcresolve.http.failover import HttpFailoverPolicy
from mcresolve.sidecar import DrainPolicy, TcpProxyPolicy
from mcresolve.sidecar.http_mode import HttpProxyPolicy
from mcresolve.sources import (
    ArbiterPolicy,
    DnsCache,
    DnsPolicy,
    DnsSource,
    HealthSource,
    PreparedQuerySource,
    RefreshDamping,
    ResilientSource,
    StaticSource,
)
from mcresolve.sources.standby import StandbyPolicy
from mcresolve.sources.target import DnsTarget, parse_target
from mcresolve.timing import BackoffPolicy

# --- the values a parameter of each kind must refuse -----------------------------------------

NOT_A_NUMBER = st.one_of(
    st.text(max_size=5),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.builds(object),
)
NEGATIVE = st.floats(max_value=-1e-9, allow_nan=False) | st.integers(max_value=-1)
NAN = st.just(math.nan)
DNS = parse_target("dns://web.service.consul")
assert isinstance(DNS, DnsTarget)


@dataclass(frozen=True)
class Kind:
    """What one kind of parameter refuses: values of the wrong type, values out of range."""

    wrong_type: st.SearchStrategy[object]
    out_of_range: st.SearchStrategy[object]


def seconds(*, zero: bool = False, inf: bool = False, optional: bool = False) -> Kind:
    bad: list[st.SearchStrategy[object]] = [NEGATIVE, NAN]
    if not zero:
        bad.append(st.sampled_from([0, 0.0]))
    if not inf:
        bad.append(st.sampled_from([math.inf, -math.inf]))
    wrong = NOT_A_NUMBER.filter(lambda v: v is not None) if optional else NOT_A_NUMBER
    return Kind(wrong, st.one_of(bad))


def integer(low: int, *, optional: bool = False) -> Kind:
    wrong = st.one_of(NOT_A_NUMBER, st.floats(allow_nan=True))
    return Kind(
        wrong.filter(lambda v: v is not None) if optional else wrong,
        st.integers(max_value=low - 1),
    )


def instance(*, optional: bool = False) -> Kind:
    wrong = st.one_of(st.text(max_size=5), st.integers(), st.booleans(), st.builds(object))
    return Kind(wrong if optional else wrong | st.none(), st.nothing())


@dataclass(frozen=True)
class Row:
    """One checked parameter: how to call with a value for it, the name the error must show."""

    name: str
    call: Callable[[object], object]
    kind: Kind


def _closed_port_config() -> ConsulConfig:
    """An agent address nothing listens on: a check that is missing shows as
    ``ConsulUnavailable``, never as a request answered somewhere."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return ConsulConfig(addresses=(ConsulAddress("127.0.0.1", port),), request_timeout=2.0)


def _consul_read(**arguments: Any) -> object:
    async def run() -> object:
        async with ConsulClient(_closed_port_config()) as consul:
            return await consul.health_service("web", **arguments)

    return asyncio.run(run())


def _consul_call(**arguments: Any) -> object:
    async def run() -> object:
        async with ConsulClient(_closed_port_config()) as consul:
            return await consul.request("GET", "/v1/status/leader", **arguments)

    return asyncio.run(run())


STATIC = "static://127.0.0.1:1"


async def _return_address(endpoint: Endpoint) -> str:
    return endpoint.address


def _pool_call(**arguments: Any) -> object:
    """``pool.call`` on a started pool; a missing check would reach ``fn`` or the policy."""
    fn = arguments.pop("fn", _return_address)

    async def run() -> object:
        async with EndpointPool(STATIC) as pool:
            return await pool.call(fn, **arguments)

    return asyncio.run(run())


def _pool_call_sync(**arguments: Any) -> object:
    fn = arguments.pop("fn", lambda endpoint: endpoint.address)
    pool = EndpointPool.start_in_thread(STATIC)
    try:
        return pool.call_sync(fn, **arguments)
    finally:
        pool.close()


def _policy_rows(cls: Callable[..., object], prefix: str, fields: dict[str, Kind]) -> list[Row]:
    return [
        Row(f"{prefix}.{field}", lambda v, field=field: cls(**{field: v}), kind)
        for field, kind in fields.items()
    ]


ROWS: list[Row] = [
    *_policy_rows(
        CallPolicy,
        "CallPolicy",
        {
            "attempt_timeout": seconds(inf=True),
            "deadline": seconds(inf=True),
            "max_attempts": integer(1),
            "backoff": instance(),
            "cluster_backoff": instance(),
            "hedge_delay": seconds(zero=True, optional=True),
            "max_hedges": integer(0),
        },
    ),
    *_policy_rows(
        PoolPolicy,
        "PoolPolicy",
        {
            "call": instance(),
            "outlier": instance(),
            "retry_budget": instance(),
            "strategy": instance(),
            "failback_hold_down": seconds(zero=True),
            "agent_lookup_timeout": seconds(),
        },
    ),
    *_policy_rows(
        OutlierPolicy,
        "OutlierPolicy",
        {
            **{
                name: integer(0)
                for name in (
                    "connect_failures",
                    "resets",
                    "timeouts",
                    "gateway_failures",
                    "server_errors",
                )
            },
            "base_ejection": seconds(),
            "decay_interval": seconds(),
            "avoid_after_cluster_answer": seconds(zero=True),
        },
    ),
    *_policy_rows(
        RetryBudgetPolicy,
        "RetryBudgetPolicy",
        {
            "ttl": seconds(),
            "percent_can_retry": seconds(zero=True),
            "min_retries_per_second": seconds(zero=True),
            "slots": integer(1),
        },
    ),
    *_policy_rows(BackoffPolicy, "BackoffPolicy", {"base": seconds(), "jitter": instance()}),
    *_policy_rows(RefreshDamping, "RefreshDamping", {"base": seconds()}),
    *_policy_rows(StandbyPolicy, "StandbyPolicy", {"datacenters": integer(0), "reread": seconds()}),
    *_policy_rows(DnsPolicy, "DnsPolicy", {"max_ttl": seconds(zero=True)}),
    *_policy_rows(
        ArbiterPolicy,
        "ArbiterPolicy",
        {
            "empty_hold": seconds(zero=True),
            "empty_confirm": integer(1),
            "fallback_after": seconds(zero=True, optional=True),
        },
    ),
    *_policy_rows(
        ConsulConfig,
        "ConsulConfig",
        {
            "connect_timeout": seconds(),
            "request_timeout": seconds(),
            "body_idle_timeout": seconds(),
            "token_file_check_interval": seconds(),
            "max_answer_bytes": integer(1),
            "verify": Kind(st.one_of(st.integers(), st.text(max_size=3), st.none()), st.nothing()),
        },
    ),
    Row("config", lambda v: ConsulClient(v), instance(optional=True)),  # type: ignore[arg-type]
    Row(
        "rate_limit",
        lambda v: ConsulClient(rate_limit=v),  # type: ignore[arg-type]
        instance(optional=True),
    ),
    Row("endpoints", lambda v: StaticSource(v), instance()),  # type: ignore[arg-type]
    Row(
        "target",
        lambda v: from_target(v),
        instance().__class__(  # type: ignore[arg-type]
            st.one_of(st.integers(), st.booleans(), st.none(), st.builds(object)), st.nothing()
        ),
    ),
    Row("consul", lambda v: from_target("static://127.0.0.1:1", consul=v), instance(optional=True)),  # type: ignore[arg-type]
    Row("maxsize", lambda v: DnsCache(v), integer(1)),  # type: ignore[arg-type]
    Row("target", lambda v: DnsSource(v), instance()),  # type: ignore[arg-type]
    Row("damping", lambda v: DnsSource(DNS, damping=v), instance(optional=True)),  # type: ignore[arg-type]
    Row("target", lambda v: HealthSource(v, None), instance()),  # type: ignore[arg-type]
    Row("target", lambda v: PreparedQuerySource(v, None), instance()),  # type: ignore[arg-type]
    Row("primary", lambda v: ResilientSource(v), instance()),  # type: ignore[arg-type]
    Row(
        "snapshot",
        lambda v: ResilientSource(StaticSource(()), snapshot=v),  # type: ignore[arg-type]
        Kind(st.one_of(st.integers(), st.booleans(), st.builds(object)), st.nothing()),
    ),
    Row("client", lambda v: WatchRegistry(v), instance()),  # type: ignore[arg-type]
    *_policy_rows(
        TtlCheck,
        "TtlCheck",
        {"ttl": seconds(), "deregister_critical_after": seconds(inf=True, optional=True)},
    ),
    *_policy_rows(
        lambda **kw: HttpCheck("http://127.0.0.1:1/health", **kw),
        "HttpCheck",
        {"interval": seconds(), "timeout": seconds()},
    ),
    *_policy_rows(
        lambda **kw: ServiceDefinition("web", **kw), "ServiceDefinition", {"port": integer(0)}
    ),
    *_policy_rows(
        RegistrationPolicy,
        "RegistrationPolicy",
        {"verify_interval": seconds(zero=True), "retry": instance()},
    ),
    Row("index", lambda v: _consul_read(index=v), integer(0, optional=True)),
    Row(
        "wait", lambda v: _consul_read(index=1, wait=v), seconds(zero=True, inf=True, optional=True)
    ),
    Row("time_limit", lambda v: _consul_call(time_limit=v), seconds(optional=True)),
    *_policy_rows(
        HttpFailoverPolicy,
        "HttpFailoverPolicy",
        {
            "retry_statuses": Kind(
                st.one_of(st.integers(), st.none(), st.just(frozenset({"502"}))),
                st.just(frozenset({404})),
            ),
            "consul_names": Kind(st.one_of(st.integers(), st.text(), st.none()), st.nothing()),
        },
    ),
    *_policy_rows(
        TcpProxyPolicy,
        "TcpProxyPolicy",
        {
            "connect_timeout": seconds(),
            "first_byte_timeout": seconds(),
            "establish_deadline": seconds(),
            "idle_timeout": seconds(inf=True),
            "replay_limit": integer(0),
            "max_connections": integer(1),
            "chunk_size": integer(1),
        },
    ),
    *_policy_rows(
        HttpProxyPolicy,
        "HttpProxyPolicy",
        {
            "replay_buffer": integer(0),
            "error_body_limit": integer(0),
            "max_header_bytes": integer(1024),
            "header_timeout": seconds(inf=True),
            "idle_timeout": seconds(inf=True),
            "body_timeout": seconds(inf=True),
            "upstream_idle_per_endpoint": integer(0),
            "report_endpoint": Kind(st.one_of(st.integers(), st.none(), st.text()), st.nothing()),
            "max_connections": integer(1),
        },
    ),
    *_policy_rows(
        DrainPolicy,
        "DrainPolicy",
        {"unready_delay": seconds(zero=True), "grace": seconds(zero=True)},
    ),
    Row("fn", lambda v: _pool_call(fn=v), instance()),
    Row("policy", lambda v: _pool_call(policy=v), instance(optional=True)),
    Row(
        "idempotent",
        lambda v: _pool_call(idempotent=v),
        Kind(st.integers() | st.none(), st.nothing()),
    ),
    Row("CallPolicy.deadline", lambda v: _pool_call(deadline=v), seconds(inf=True, optional=True)),
    Row("fn", lambda v: _pool_call_sync(fn=v), instance()),
    Row("policy", lambda v: _pool_call_sync(policy=v), instance(optional=True)),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_a_wrong_argument_is_refused_naming_the_parameter(row: Row, data: st.DataObject) -> None:
    """Any value of the wrong type raises ``TypeError``, any value out of range ``ValueError``;
    either names the parameter."""
    wrong_type = data.draw(row.kind.wrong_type, label="wrong type")
    with pytest.raises(TypeError) as caught:
        row.call(wrong_type)
    assert row.name in str(caught.value)
    out_of_range = data.draw(st.none() | row.kind.out_of_range, label="out of range")
    if out_of_range is not None:
        with pytest.raises(ValueError) as refused:
            row.call(out_of_range)
        assert row.name in str(refused.value)


# --- the cases that failed before, one by one ------------------------------------------------


def test_consul_client_refuses_a_number_for_its_config() -> None:
    with pytest.raises(TypeError, match=r"^config must be a ConsulConfig or None, not int$"):
        ConsulClient(123)  # type: ignore[arg-type]


def test_consul_config_refuses_a_number_for_its_addresses() -> None:
    with pytest.raises(TypeError, match=r"^ConsulConfig\.addresses must be .*, not int$"):
        ConsulConfig(addresses=5)  # type: ignore[arg-type]


def test_call_policy_refuses_a_string_deadline() -> None:
    with pytest.raises(TypeError, match=r"^CallPolicy\.deadline must be a number of seconds"):
        CallPolicy(deadline="2")  # type: ignore[arg-type]


def test_pool_policy_refuses_a_number_for_its_call_policy() -> None:
    with pytest.raises(TypeError, match=r"^PoolPolicy\.call must be a CallPolicy, not int$"):
        PoolPolicy(call=3)  # type: ignore[arg-type]


def test_static_source_refuses_a_number_for_its_endpoints() -> None:
    with pytest.raises(TypeError, match=r"^endpoints must be .*, not int$"):
        StaticSource(5)  # type: ignore[arg-type]


def test_from_target_refuses_none() -> None:
    with pytest.raises(TypeError, match=r"^target must be .*, not NoneType$"):
        from_target(None)  # type: ignore[arg-type]


def test_infinity_is_accepted_only_where_it_means_no_limit() -> None:
    assert CallPolicy(deadline=math.inf, attempt_timeout=math.inf).deadline == math.inf
    with pytest.raises(ValueError, match=r"^OutlierPolicy\.base_ejection"):
        OutlierPolicy(base_ejection=math.inf)
    with pytest.raises(ValueError, match=r"ConsulConfig\.request_timeout"):
        ConsulConfig(request_timeout=math.inf)


def test_nan_is_refused_where_it_was_accepted() -> None:
    with pytest.raises(ValueError, match=r"^OutlierPolicy\.base_ejection"):
        OutlierPolicy(base_ejection=math.nan)
    with pytest.raises(TypeError, match=r"^RetryBudgetPolicy\.slots must be an int, not bool$"):
        RetryBudgetPolicy(slots=True)
