"""S3/MinIO error classification: exhaustive table, properties, mapping of real exceptions."""

from __future__ import annotations

import email.utils
import errno
import http.client
import socket
import ssl
from typing import Any

import pytest
import urllib3
import urllib3.exceptions as u3
from hypothesis import given, settings
from hypothesis import strategies as st
from minio.error import InvalidResponseError, S3Error, ServerError

from mcresolve.balancer.outlier import FailureKind
from mcresolve.minio.classify import (
    CLUSTER_CODES,
    NODE_LOCAL_CODES,
    Affects,
    Outcome,
    StorageClusterDegraded,
    Transport,
    classify,
    classify_exception,
    outcome_from_exception,
    parse_retry_after,
    transport_of,
)
from mcresolve.pool.planner import Fault, fault_of

NODE, CLUSTER, CLIENT = Fault.NODE, Fault.CLUSTER, Fault.CLIENT
R, W, RW = Affects.READS, Affects.WRITES, Affects.READS_AND_WRITES


# --- the table --------------------------------------------------------------------------------

CASES: list[tuple[dict[str, Any], Fault, FailureKind | None, Affects | None]] = [
    # Transport failures: this node.
    ({"transport": Transport.REFUSED}, NODE, FailureKind.CONNECT, None),
    ({"transport": Transport.TLS}, NODE, FailureKind.CONNECT, None),
    ({"transport": Transport.CONNECT_TIMEOUT}, NODE, FailureKind.TIMEOUT, None),
    ({"transport": Transport.READ_TIMEOUT}, NODE, FailureKind.TIMEOUT, None),
    ({"transport": Transport.RESET}, NODE, FailureKind.RESET, None),
    ({"transport": Transport.BROKEN_RESPONSE}, NODE, FailureKind.RESET, None),
    # ... from every node.
    (
        {"transport": Transport.REFUSED, "from_every_endpoint": True},
        NODE,
        FailureKind.CONNECT,
        None,
    ),
    (
        {"transport": Transport.CONNECT_TIMEOUT, "from_every_endpoint": True},
        NODE,
        FailureKind.TIMEOUT,
        None,
    ),
    ({"transport": Transport.RESET, "from_every_endpoint": True}, NODE, FailureKind.RESET, None),
    ({"transport": Transport.READ_TIMEOUT, "from_every_endpoint": True}, CLUSTER, None, R),
    (
        {"transport": Transport.READ_TIMEOUT, "from_every_endpoint": True, "method": "PUT"},
        CLUSTER,
        None,
        W,
    ),
    ({"transport": Transport.TLS, "from_every_endpoint": True}, CLIENT, None, None),
    # MinIO 2019: 503 + Retry-After 120.
    ({"status": 503, "code": "XMinioReadQuorum"}, CLUSTER, None, RW),
    ({"status": 503, "code": "XMinioWriteQuorum", "method": "PUT"}, CLUSTER, None, W),
    ({"status": 503, "code": "XMinioServerNotInitialized"}, NODE, FailureKind.GATEWAY, None),
    (
        {"status": 503, "code": "XMinioServerNotInitialized", "from_every_endpoint": True},
        CLUSTER,
        None,
        RW,
    ),
    ({"status": 503, "code": "SlowDown"}, CLUSTER, None, R),
    ({"status": 503, "code": "SlowDown", "method": "PUT"}, CLUSTER, None, W),
    # Current MinIO: 503/429 + Retry-After 60.
    ({"status": 503, "code": "SlowDownRead", "method": "PUT"}, CLUSTER, None, R),
    ({"status": 503, "code": "SlowDownWrite"}, CLUSTER, None, W),
    ({"status": 503, "code": "ServerBusy", "method": "DELETE"}, CLUSTER, None, W),
    ({"status": 503, "code": "RequestTimeout"}, CLUSTER, None, R),
    ({"status": 400, "code": "RequestTimeout", "method": "PUT"}, CLUSTER, None, W),
    ({"status": 429, "code": "TooManyRequests"}, CLUSTER, None, R),
    ({"status": 429}, CLUSTER, None, R),
    ({"status": 408, "method": "PUT"}, CLUSTER, None, W),
    ({"status": 507, "code": "XMinioStorageFull", "method": "PUT"}, CLUSTER, None, W),
    ({"status": 503, "code": "XMinioBackendDown"}, NODE, FailureKind.GATEWAY, None),
    # Gateways and other 5xx.
    ({"status": 502}, NODE, FailureKind.GATEWAY, None),
    ({"status": 504}, NODE, FailureKind.GATEWAY, None),
    ({"status": 502, "from_every_endpoint": True}, CLUSTER, None, R),
    ({"status": 503, "method": "HEAD"}, NODE, FailureKind.SERVER_ERROR, None),
    ({"status": 503, "method": "HEAD", "from_every_endpoint": True}, CLUSTER, None, R),
    ({"status": 503, "code": "ServiceUnavailable"}, NODE, FailureKind.SERVER_ERROR, None),
    ({"status": 500, "code": "InternalError"}, NODE, FailureKind.SERVER_ERROR, None),
    (
        {"status": 500, "code": "InternalError", "method": "PUT", "from_every_endpoint": True},
        CLUSTER,
        None,
        W,
    ),
    ({"status": 505}, NODE, FailureKind.SERVER_ERROR, None),
    ({"status": 501, "code": "MethodNotAllowed"}, CLIENT, None, None),
    # Answers.
    ({"status": 404, "code": "NoSuchKey"}, CLIENT, None, None),
    ({"status": 404, "code": "NoSuchBucket", "from_every_endpoint": True}, CLIENT, None, None),
    ({"status": 403, "code": "AccessDenied"}, CLIENT, None, None),
    ({"status": 403, "code": "RequestTimeTooSkewed"}, CLIENT, None, None),
    ({"status": 400, "code": "InvalidArgument"}, CLIENT, None, None),
    ({"status": 409, "code": "BucketNotEmpty", "method": "DELETE"}, CLIENT, None, None),
    ({"status": 412, "code": "PreconditionFailed"}, CLIENT, None, None),
    ({"status": 416, "code": "InvalidRange"}, CLIENT, None, None),
    ({"status": 404, "method": "HEAD"}, CLIENT, None, None),
    ({"status": 304}, CLIENT, None, None),
    ({"status": 301, "code": "PermanentRedirect"}, CLIENT, None, None),
    ({"status": 200}, CLIENT, None, None),
    ({}, CLIENT, None, None),  # not a storage failure
]


@pytest.mark.parametrize(("fields", "expected", "kind", "affects"), CASES)
def test_classification_table(
    fields: dict[str, Any], expected: Fault, kind: FailureKind | None, affects: Affects | None
) -> None:
    outcome = Outcome(**{"method": "GET", **fields})
    verdict = classify(outcome)
    assert verdict.error_class is expected
    assert verdict.failure_kind is kind
    assert verdict.affects is affects
    assert verdict.node_ok is (expected is CLIENT)
    assert verdict.reason


def test_every_known_code_is_covered_by_the_table() -> None:
    tabled = {fields.get("code") for fields, *_ in CASES}
    assert set(CLUSTER_CODES) - {"XMinioServerBusy"} <= tabled
    assert tabled >= NODE_LOCAL_CODES


@pytest.mark.parametrize(
    ("fields", "replay_safe", "executed"),
    [
        # Nothing sent: any request may be replayed, even a POST.
        ({"transport": Transport.REFUSED, "method": "POST"}, True, False),
        ({"transport": Transport.CONNECT_TIMEOUT, "method": "POST"}, True, False),
        ({"transport": Transport.TLS, "method": "POST"}, True, False),
        # Maybe executed: only idempotent requests.
        ({"transport": Transport.RESET, "method": "GET"}, True, True),
        ({"transport": Transport.RESET, "method": "PUT"}, True, True),
        ({"transport": Transport.READ_TIMEOUT, "method": "POST"}, False, True),
        ({"transport": Transport.READ_TIMEOUT, "method": "POST", "idempotent": True}, True, True),
        ({"transport": Transport.BROKEN_RESPONSE, "method": "GET"}, True, True),
        ({"status": 500, "method": "POST"}, False, True),
        ({"status": 502, "method": "DELETE"}, True, True),
        ({"status": 504, "method": "PUT", "idempotent": False}, False, True),
        # Rejected before executing: replayable even for POST.
        ({"status": 503, "code": "XMinioServerNotInitialized", "method": "POST"}, True, False),
        ({"status": 503, "code": "XMinioWriteQuorum", "method": "POST"}, True, False),
        ({"status": 429, "method": "POST"}, True, False),
        # A 503 with no code saying so (a proxy's, a gateway's) may come after executing.
        ({"status": 503, "method": "POST"}, False, True),
        ({"status": 503, "method": "PUT"}, True, True),
        ({"status": 503, "code": "ServiceUnavailable", "method": "POST"}, False, True),
        # A consumed one-shot body can never be replayed.
        ({"transport": Transport.REFUSED, "method": "PUT", "body_replayable": False}, False, False),
        (
            {"status": 503, "code": "SlowDown", "method": "PUT", "body_replayable": False},
            False,
            False,
        ),
        # Answers are never replayed.
        ({"status": 404, "code": "NoSuchKey", "method": "GET"}, False, False),
    ],
)
def test_replay_safety(fields: dict[str, Any], replay_safe: bool, executed: bool) -> None:
    verdict = classify(Outcome(**fields))
    assert verdict.replay_safe is replay_safe
    assert verdict.may_have_executed is executed


def test_retry_direction_follows_the_class() -> None:
    node = classify(Outcome("GET", transport=Transport.REFUSED))
    assert node.error_class is Fault.NODE and node.replay_safe
    cluster = classify(Outcome("GET", status=503, code="SlowDown", retry_after=60.0))
    assert cluster.error_class is Fault.CLUSTER and cluster.replay_safe
    assert cluster.retry_after == 60.0
    client = classify(Outcome("GET", status=404, code="NoSuchKey"))
    assert client.error_class is Fault.CLIENT and not client.replay_safe
    unsafe = classify(Outcome("POST", transport=Transport.READ_TIMEOUT))
    assert not unsafe.replay_safe


def test_reason_mentions_the_answer_and_detail() -> None:
    verdict = classify(Outcome("PUT", status=503, code="XMinioWriteQuorum", detail="S3Error: x"))
    assert "503 XMinioWriteQuorum" in verdict.reason and "S3Error: x" in verdict.reason


# --- cluster retry delay -----------------------------------------------------------------------


# --- Retry-After --------------------------------------------------------------------------------


def test_parse_retry_after() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 60 ") == 60.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None
    date = email.utils.formatdate(1_000_060.0, usegmt=True)
    assert parse_retry_after(date) is None  # needs the wall clock
    assert parse_retry_after(date, now_epoch=1_000_000.0) == 60.0
    assert parse_retry_after(date, now_epoch=2_000_000.0) == 0.0
    assert parse_retry_after("Mon, 99 Foo 2020", now_epoch=0.0) is None


# --- the degraded error -------------------------------------------------------------------------


def test_degraded_error_says_what_is_affected() -> None:
    err = StorageClusterDegraded(
        Affects.WRITES,
        "cluster answered 503 XMinioWriteQuorum",
        code="XMinioWriteQuorum",
        status=503,
        retry_after=120.0,
        attempts=2,
    )
    assert err.writes_affected and not err.reads_affected
    text = str(err)
    assert "storage cluster degraded: writes affected" in text
    assert "503 XMinioWriteQuorum" in text and "120 s" in text and "2 attempt" in text
    both = StorageClusterDegraded(Affects.READS_AND_WRITES, "quorum")
    assert both.reads_affected and both.writes_affected
    assert str(both) == "storage cluster degraded: reads and writes affected (quorum)"


# --- properties -----------------------------------------------------------------------------------

outcomes = st.builds(
    Outcome,
    method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE"]),
    transport=st.none() | st.sampled_from(list(Transport)),
    status=st.none() | st.integers(100, 599),
    code=st.none()
    | st.sampled_from(
        [*CLUSTER_CODES, *NODE_LOCAL_CODES, "NoSuchKey", "AccessDenied", "InternalError", "X"]
    ),
    retry_after=st.none() | st.floats(0.0, 300.0),
    from_every_endpoint=st.booleans(),
    body_replayable=st.booleans(),
    idempotent=st.none() | st.booleans(),
)


@settings(max_examples=500, deadline=None)
@given(outcome=outcomes)
def test_classification_is_total_and_consistent(outcome: Outcome) -> None:
    verdict = classify(outcome)
    assert verdict.error_class in set(Fault)
    # CLIENT: never retried, never counted against the node.
    if verdict.error_class is CLIENT:
        assert not verdict.replay_safe and verdict.failure_kind is None and verdict.node_ok
    # NODE always says what to report; CLUSTER reports nothing and says what is affected.
    if verdict.error_class is NODE:
        assert verdict.failure_kind is not None and not verdict.node_ok
        assert verdict.affects is None
    if verdict.error_class is CLUSTER:
        assert verdict.failure_kind is None and not verdict.node_ok
        assert verdict.affects is not None
    # A consumed body is never replayed; nothing sent means replayable when the body is.
    if not outcome.body_replayable:
        assert not verdict.replay_safe
    if verdict.error_class is not CLIENT and not verdict.may_have_executed:
        assert verdict.replay_safe == outcome.body_replayable
    # Cluster-wide codes are never blamed on a node.
    if outcome.transport is None and outcome.code in CLUSTER_CODES:
        assert verdict.error_class is CLUSTER
    # 4xx answers (other than throttling/timeouts) are always CLIENT.
    if (
        outcome.transport is None
        and outcome.status is not None
        and 400 <= outcome.status < 500
        and outcome.status not in (408, 429)
        and outcome.code not in CLUSTER_CODES
        and outcome.code not in NODE_LOCAL_CODES
    ):
        assert verdict.error_class is CLIENT
    assert verdict.retry_after == outcome.retry_after


# --- mapping real exception objects ------------------------------------------------------------


def s3_error(status: int, code: str, headers: dict[str, str] | None = None) -> S3Error:
    """An S3Error as minio builds it: ``S3Error.fromxml`` on a urllib3 response with XML body."""
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>m</Message><Key>k</Key><BucketName>b</BucketName><Resource>/b/k</Resource>"
        f"<RequestId>r</RequestId><HostId>h</HostId></Error>"
    ).encode()
    response = urllib3.HTTPResponse(
        body=body,
        headers={"Content-Type": "application/xml", **(headers or {})},
        status=status,
        preload_content=True,
    )
    return S3Error.fromxml(response)


CONN = urllib3.connection.HTTPConnection("127.0.0.1", 9)
POOL = urllib3.HTTPConnectionPool("127.0.0.1", 9)


def refused() -> u3.NewConnectionError:
    return u3.NewConnectionError(
        CONN, f"Failed to establish a new connection: {ConnectionRefusedError(111, 'refused')}"
    )


EXCEPTIONS: list[tuple[BaseException, Transport | None]] = [
    (refused(), Transport.REFUSED),
    (u3.MaxRetryError(POOL, "/b/k", reason=refused()), Transport.REFUSED),
    (
        u3.NameResolutionError("minio.invalid", CONN, socket.gaierror(-2, "Name unknown")),
        Transport.REFUSED,
    ),
    (
        u3.ConnectTimeoutError(CONN, "Connection to 10.0.0.1 timed out. (connect timeout=1)"),
        Transport.CONNECT_TIMEOUT,
    ),
    (u3.ReadTimeoutError(POOL, "/b/k", "Read timed out. (read timeout=1)"), Transport.READ_TIMEOUT),
    (
        u3.MaxRetryError(POOL, "/b/k", reason=u3.ReadTimeoutError(POOL, "/b/k", "Read timed out.")),
        Transport.READ_TIMEOUT,
    ),
    (
        u3.SSLError(ssl.SSLCertVerificationError(1, "certificate verify failed")),
        Transport.TLS,
    ),
    (ssl.SSLError(1, "wrong version number"), Transport.TLS),
    (
        u3.ProtocolError(
            "Connection aborted.",
            http.client.RemoteDisconnected("Remote end closed connection without response"),
        ),
        Transport.RESET,
    ),
    (
        u3.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset by peer")),
        Transport.RESET,
    ),
    (u3.ProtocolError("Connection aborted.", BrokenPipeError(32, "pipe")), Transport.RESET),
    (u3.ProtocolError("Connection aborted."), Transport.RESET),
    (
        u3.ProtocolError(
            "Connection broken: IncompleteRead(10 bytes read, 90 more expected)",
            u3.IncompleteRead(10, 90),
        ),
        Transport.BROKEN_RESPONSE,
    ),
    (
        u3.ProtocolError(
            "Connection broken: ConnectionResetError(104, 'reset')",
            ConnectionResetError(104, "reset"),
        ),
        Transport.BROKEN_RESPONSE,
    ),
    (u3.ProtocolError("Response ended prematurely"), Transport.BROKEN_RESPONSE),
    (u3.IncompleteRead(10, 90), Transport.BROKEN_RESPONSE),
    (http.client.IncompleteRead(b"abc", 10), Transport.BROKEN_RESPONSE),
    (u3.DecodeError("bad gzip"), Transport.BROKEN_RESPONSE),
    (u3.ProxyError("Unable to connect to proxy", refused()), Transport.REFUSED),
    (ConnectionRefusedError(111, "Connection refused"), Transport.REFUSED),
    (ConnectionResetError(104, "reset"), Transport.RESET),
    (ConnectionAbortedError(103, "aborted"), Transport.RESET),
    (ConnectionError("generic"), Transport.RESET),
    (TimeoutError(), Transport.READ_TIMEOUT),
    (socket.gaierror(-2, "Name or service not known"), Transport.REFUSED),
    (OSError(errno.EHOSTUNREACH, "No route to host"), Transport.REFUSED),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), Transport.REFUSED),
    (OSError(errno.ETIMEDOUT, "Connection timed out"), Transport.READ_TIMEOUT),
    (OSError(errno.ECONNRESET, "reset"), Transport.RESET),
    # Not transport failures: the caller's file, programming errors, pool misuse.
    (FileNotFoundError(errno.ENOENT, "no such file"), None),
    (OSError(errno.EIO, "I/O error"), None),
    (OSError("no errno"), None),
    (ValueError("bucket name invalid"), None),
    (KeyError("x"), None),
    (u3.ClosedPoolError(POOL, "Pool is closed."), None),
    (u3.LocationParseError("::bad"), None),
    (u3.MaxRetryError(POOL, "/b/k", reason=None), None),
]


@pytest.mark.parametrize(("exc", "transport"), EXCEPTIONS, ids=lambda v: type(v).__name__)
def test_transport_of_real_exceptions(exc: BaseException, transport: Transport | None) -> None:
    assert transport_of(exc) is transport
    outcome = outcome_from_exception(exc, method="get")
    assert outcome.method == "GET"
    assert outcome.transport is transport and outcome.status is None
    assert type(exc).__name__ in outcome.detail


def test_s3_error_maps_status_code_and_retry_after() -> None:
    exc = s3_error(503, "XMinioWriteQuorum", {"Retry-After": "120"})
    outcome = outcome_from_exception(exc, method="PUT")
    assert (outcome.status, outcome.code, outcome.retry_after) == (503, "XMinioWriteQuorum", 120.0)
    verdict = classify_exception(exc, method="PUT")
    assert verdict.error_class is CLUSTER and verdict.affects is W
    assert verdict.retry_after == 120.0


def test_s3_error_node_local_and_answers() -> None:
    not_init = s3_error(503, "XMinioServerNotInitialized", {"Retry-After": "60"})
    verdict = classify_exception(not_init, method="GET")
    assert verdict.error_class is NODE and verdict.failure_kind is FailureKind.GATEWAY
    assert classify_exception(not_init, method="GET", from_every_endpoint=True).error_class is (
        CLUSTER
    )
    assert classify_exception(s3_error(404, "NoSuchKey"), method="GET").error_class is CLIENT
    assert classify_exception(s3_error(403, "AccessDenied"), method="PUT").error_class is CLIENT


def test_s3_error_without_response_headers_still_classifies() -> None:
    exc = S3Error(None, "SlowDown", "slow", "/b", "r", "h")  # type: ignore[arg-type]
    outcome = outcome_from_exception(exc, method="GET")
    assert outcome.status is None and outcome.code == "SlowDown" and outcome.retry_after is None
    assert classify(outcome).error_class is CLUSTER


def test_server_error_from_head_has_status_only() -> None:
    exc = ServerError("server failed with HTTP status code 503", 503)
    outcome = outcome_from_exception(exc, method="HEAD")
    assert (outcome.status, outcome.code) == (503, None)
    assert classify(outcome).failure_kind is FailureKind.SERVER_ERROR
    every = classify_exception(exc, method="HEAD", from_every_endpoint=True)
    assert every.error_class is CLUSTER and every.affects is R


def test_invalid_response_error_uses_the_status() -> None:
    exc = InvalidResponseError(502, "text/html", "<html>Bad Gateway</html>")
    verdict = classify_exception(exc, method="GET")
    assert verdict.error_class is NODE and verdict.failure_kind is FailureKind.GATEWAY
    answer = InvalidResponseError(400, "text/plain", "nope")
    assert classify_exception(answer, method="GET").error_class is CLIENT


def test_mapping_passes_the_call_context_through() -> None:
    exc = u3.ReadTimeoutError(POOL, "/b/k", "Read timed out.")
    verdict = classify_exception(exc, method="post", body_replayable=True, idempotent=True)
    assert verdict.replay_safe
    verdict = classify_exception(exc, method="PUT", body_replayable=False)
    assert not verdict.replay_safe
    date = email.utils.formatdate(1_000_030.0, usegmt=True)
    dated = s3_error(503, "SlowDown", {"Retry-After": date})
    assert outcome_from_exception(dated, method="GET", now_epoch=1_000_000.0).retry_after == 30.0


def test_unknown_exceptions_are_client_errors() -> None:
    verdict = classify_exception(RuntimeError("bug"), method="GET")
    assert verdict.error_class is CLIENT and "RuntimeError: bug" in verdict.reason


def test_verdicts_speak_the_planners_fault() -> None:
    """One vocabulary: the classifier's verdict carries the planner's Fault itself."""
    verdict = classify(Outcome("GET", status=503, code="XMinioServerNotInitialized"))
    assert type(verdict.error_class) is Fault
    assert fault_of(verdict) is verdict.error_class


def test_error_class_is_a_deprecated_alias_of_fault() -> None:
    import mcresolve.minio.classify as classify_module

    with pytest.warns(DeprecationWarning, match="ErrorClass is deprecated"):
        alias = classify_module.ErrorClass  # type: ignore[attr-defined]
    assert alias is Fault
    with pytest.raises(AttributeError):
        classify_module.NoSuchName  # type: ignore[attr-defined]  # noqa: B018
