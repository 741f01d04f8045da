"""The HTTP classifier as pure functions: statuses × methods × failures × request facts, and the
exception tables of httpx and aiohttp."""

from __future__ import annotations

import ssl

import aiohttp
import httpx
import pytest
from aiohttp.client_reqrep import ConnectionKey
from hypothesis import given
from hypothesis import strategies as st

from mcresolve.balancer.outlier import FailureKind
from mcresolve.endpoint import Endpoint
from mcresolve.http.aiohttp import describe_aiohttp_error
from mcresolve.http.failover import (
    IDEMPOTENT_METHODS,
    HttpFailoverPolicy,
    RequestFacts,
    StatusFailure,
    TransportFailure,
    classify_http,
    failed_status,
    is_idempotent,
    parse_retry_after,
    route_for,
)
from mcresolve.http.httpx import describe_httpx_error
from mcresolve.pool.planner import AttemptContext, Fault
from mcresolve.sources.target import TargetError

POLICY = HttpFailoverPolicy()
METHODS = st.sampled_from(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "POST", "PATCH"])
FAILURES = st.one_of(
    st.none(),
    st.sampled_from(list(TransportFailure)),
    st.builds(
        StatusFailure,
        st.integers(500, 599),
        st.one_of(st.none(), st.floats(0, 1e6)),
        st.none(),
    ),
)


def context(every_endpoint_tried: bool = False, timed_out: bool = False) -> AttemptContext:
    return AttemptContext(Endpoint("127.0.0.1", 8080), 1, True, every_endpoint_tried, timed_out)


@given(
    failure=FAILURES,
    method=METHODS,
    keyed=st.booleans(),
    override=st.one_of(st.none(), st.booleans()),
    body_replayable=st.booleans(),
    every=st.booleans(),
)
def test_classification_invariants(
    failure: TransportFailure | StatusFailure[object] | None,
    method: str,
    keyed: bool,
    override: bool | None,
    body_replayable: bool,
    every: bool,
) -> None:
    headers = {"idempotency-key": "k"} if keyed else {}
    idempotent = is_idempotent(method, headers, POLICY, override)
    facts = RequestFacts(method, idempotent, body_replayable)
    verdict = classify_http(failure, facts, context(every), POLICY)
    fault = verdict.error_class
    nothing_sent = failure in (TransportFailure.REFUSED, TransportFailure.CONNECT_TIMEOUT)
    # A request that may have reached a server is replayed only if idempotent and replayable.
    if verdict.replay_safe and not nothing_sent:
        assert idempotent and body_replayable
        assert override is not False
        assert method in IDEMPOTENT_METHODS or keyed or override
    # Nothing sent: always replayable, counted against the node.
    if nothing_sent:
        assert verdict.replay_safe and fault is Fault.NODE
    if failure is TransportFailure.REFUSED:
        assert verdict.failure_kind is FailureKind.CONNECT  # not charged against max_attempts
    # Only a status in the retry set is ever replayed among answers; CLUSTER only after every
    # endpoint of the round answered so.
    if isinstance(failure, StatusFailure):
        if failure.status not in POLICY.retry_statuses:
            assert fault is Fault.NODE and not verdict.replay_safe
            assert verdict.failure_kind is FailureKind.SERVER_ERROR
        elif every:
            assert fault is Fault.CLUSTER and verdict.retry_after == failure.retry_after
        else:
            assert fault is Fault.NODE and verdict.failure_kind is FailureKind.GATEWAY
        if fault is Fault.CLUSTER:
            assert every
    if failure in (None, TransportFailure.CERTIFICATE, TransportFailure.LOCAL):
        assert fault is Fault.CLIENT and not verdict.replay_safe


@given(status=st.integers(100, 599))
def test_failed_status_is_every_5xx_and_only_those(status: int) -> None:
    assert failed_status(status) is (status >= 500)


@given(method=METHODS, header=st.sampled_from(["Idempotency-Key", "idempotency-key", "X-Other"]))
def test_idempotency(method: str, header: str) -> None:
    marked = header.lower() == "idempotency-key"
    assert is_idempotent(method, {header: "1"}, POLICY) is (method in IDEMPOTENT_METHODS or marked)
    off = HttpFailoverPolicy(idempotency_header=None)
    assert is_idempotent(method, {header: "1"}, off) is (method in IDEMPOTENT_METHODS)
    assert is_idempotent(method, {}, POLICY, override=False) is False


@given(text=st.text(max_size=40))
def test_retry_after_never_fails_and_is_never_negative(text: str) -> None:
    value = parse_retry_after(text, now=lambda: 1_700_000_000.0)
    assert value is None or value >= 0


def test_retry_after_forms() -> None:
    now = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now=lambda: now) == 60.0
    assert parse_retry_after("Sun, 06 Nov 1994 08:48:37 GMT", now=lambda: now) == 0.0
    assert parse_retry_after("-5") is None and parse_retry_after(None) is None


def test_routes() -> None:
    targets = {"billing": "consul+query://billing"}
    assert route_for("http", "billing", None, targets, POLICY).target == "consul+query://billing"  # type: ignore[union-attr]
    assert route_for("http", "Billing.Service.Consul", None, {}, POLICY).target == (  # type: ignore[union-attr]
        "Billing.Service.Consul"
    )
    assert route_for("https", "v2.billing.service.dc2.consul", 8443, {}, POLICY).target == (  # type: ignore[union-attr]
        "v2.billing.service.dc2.consul:8443"
    )
    route = route_for("consul+query", "billing", None, {}, POLICY)
    assert route is not None and route.scheme == "http" and route.host == "billing"
    assert route_for("http", "example.org", None, {}, POLICY) is None
    assert (
        route_for(
            "http", "billing.service.consul", None, {}, HttpFailoverPolicy(consul_names=False)
        )
        is None
    )
    with pytest.raises(TargetError):
        route_for("http", "a.b.c.d.service.consul", None, {}, POLICY)


@given(host=st.text(min_size=1, max_size=60), scheme=st.sampled_from(["http", "https", "ftp"]))
def test_route_for_hostile_hosts(host: str, scheme: str) -> None:
    try:
        route = route_for(scheme, host, None, {}, POLICY)
    except TargetError:
        assert host.lower().rstrip(".").endswith(".consul")
        return
    if route is not None:
        assert host.lower().rstrip(".").endswith(".consul") and scheme != "ftp"


def _cert_error() -> ssl.SSLCertVerificationError:
    return ssl.SSLCertVerificationError(1, "certificate verify failed")


def _chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


KEY = ConnectionKey("127.0.0.1", 1, False, True, None, None, None)

HTTPX_TABLE: list[tuple[BaseException, TransportFailure | None]] = [
    (httpx.ConnectError("refused"), TransportFailure.REFUSED),
    (_chained(httpx.ConnectError("tls"), _cert_error()), TransportFailure.CERTIFICATE),
    (httpx.ConnectTimeout("slow"), TransportFailure.CONNECT_TIMEOUT),
    (httpx.ReadTimeout("slow"), TransportFailure.TIMEOUT),
    (httpx.WriteTimeout("slow"), TransportFailure.TIMEOUT),
    (httpx.PoolTimeout("full"), TransportFailure.LOCAL),
    (httpx.ReadError("reset"), TransportFailure.RESET),
    (httpx.WriteError("reset"), TransportFailure.RESET),
    (httpx.RemoteProtocolError("closed"), TransportFailure.RESET),
    (httpx.LocalProtocolError("bad"), None),
    (httpx.UnsupportedProtocol("ftp"), None),
    (TimeoutError(), TransportFailure.TIMEOUT),
    (ConnectionRefusedError(), TransportFailure.REFUSED),
    (ValueError("bug"), None),
]

AIOHTTP_TABLE: list[tuple[BaseException, TransportFailure | None]] = [
    (aiohttp.ClientConnectorError(KEY, ConnectionRefusedError(111, "x")), TransportFailure.REFUSED),
    (aiohttp.ClientConnectorCertificateError(KEY, _cert_error()), TransportFailure.CERTIFICATE),
    (aiohttp.ConnectionTimeoutError("slow"), TransportFailure.CONNECT_TIMEOUT),
    (aiohttp.SocketTimeoutError("slow"), TransportFailure.TIMEOUT),
    (aiohttp.ServerTimeoutError("slow"), TransportFailure.TIMEOUT),
    (aiohttp.ServerDisconnectedError(), TransportFailure.RESET),
    (aiohttp.ClientOSError(104, "reset"), TransportFailure.RESET),
    (aiohttp.ClientPayloadError("cut"), TransportFailure.RESET),
    (aiohttp.InvalidURL("x"), None),
    (ConnectionResetError(), TransportFailure.RESET),
    (ValueError("bug"), None),
]


@pytest.mark.parametrize(("exc", "expected"), HTTPX_TABLE, ids=lambda v: type(v).__name__)
def test_httpx_exceptions(exc: BaseException, expected: TransportFailure | None) -> None:
    assert describe_httpx_error(exc) is expected


@pytest.mark.parametrize(("exc", "expected"), AIOHTTP_TABLE, ids=lambda v: type(v).__name__)
def test_aiohttp_exceptions(exc: BaseException, expected: TransportFailure | None) -> None:
    assert describe_aiohttp_error(exc) is expected


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="5xx"):
        HttpFailoverPolicy(retry_statuses=frozenset({404}))
    with pytest.raises(ValueError, match="host_header"):
        HttpFailoverPolicy(host_header="other")  # type: ignore[arg-type]
