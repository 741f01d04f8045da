"""What a failed MinIO call raises (pure): quorum answers need a second node's confirmation;
a write that may have executed is an unknown outcome; a cluster condition is one type whatever
the pool's size; Retry-After never breaks the arithmetic."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minio.error import S3Error
from urllib3 import HTTPHeaderDict
from urllib3.response import HTTPResponse

from mcresolve.endpoint import Endpoint
from mcresolve.errors import (
    AttemptsExhausted,
    CallFailed,
    ClusterUnavailable,
    DeadlineExceeded,
    McResolveError,
)
from mcresolve.minio.classify import (
    MAX_RETRY_AFTER,
    QUORUM_CODES,
    Outcome,
    StorageClusterDegraded,
    Transport,
    classify,
    classify_exception,
    parse_retry_after,
)
from mcresolve.minio.errors import (
    ClusterDegradedWriteOutcomeUnknown,
    TriedAttempt,
    UploadNotRetryable,
    WriteOutcomeUnknown,
    failure_of_call,
)
from mcresolve.pool.planner import AttemptRecord, Fault

EPS = [Endpoint("10.0.0.1", 9000 + i) for i in range(3)]


def s3_error(status: int, code: str, retry_after: str | None = None) -> S3Error:
    headers = HTTPHeaderDict({"Retry-After": retry_after} if retry_after is not None else {})
    response = HTTPResponse(body=b"", headers=headers, status=status)
    return S3Error(response, code, "message", "/b/k", "req", "host", "b", "k")


def tried_of(
    errors: list[BaseException], method: str = "PUT", *, pool_size: int | None = None
) -> list[TriedAttempt]:
    """Classify a call's failed attempts in order, as ResilientMinio's classifier does."""
    size = pool_size if pool_size is not None else len(errors)
    tried: list[TriedAttempt] = []
    for i, error in enumerate(errors):
        endpoint = EPS[i % size]
        verdict = classify_exception(
            error,
            method=method,
            from_every_endpoint=i + 1 >= size,
            confirmed_elsewhere=any(
                t.verdict.error_class is Fault.CLUSTER and t.endpoint != endpoint for t in tried
            ),
        )
        tried.append(TriedAttempt(endpoint, error, verdict))
    return tried


def records(tried: list[TriedAttempt]) -> tuple[AttemptRecord, ...]:
    return tuple(AttemptRecord(t.endpoint, 0.0, 1.0, t.error, t.verdict) for t in tried)


# --- confirmation of quorum answers -----------------------------------------------------------


@pytest.mark.parametrize("code", sorted(QUORUM_CODES))
def test_quorum_answer_is_one_nodes_view_until_confirmed(code: str) -> None:
    alone = classify(Outcome("GET", status=503, code=code, retry_after=120.0))
    assert alone.error_class is Fault.CLUSTER
    assert not alone.confirmed and alone.unconfirmed_cluster
    assert "own view" in alone.reason
    for confirming in ({"from_every_endpoint": True}, {"confirmed_elsewhere": True}):
        verdict = classify(Outcome("GET", status=503, code=code, **confirming))  # type: ignore[arg-type]
        assert verdict.error_class is Fault.CLUSTER and verdict.confirmed


@pytest.mark.parametrize("code", ["SlowDown", "SlowDownRead", "ServerBusy", "TooManyRequests"])
def test_throttling_is_cluster_wide_from_the_first_node(code: str) -> None:
    assert classify(Outcome("GET", status=503, code=code)).confirmed


def test_only_cluster_verdicts_can_be_unconfirmed() -> None:
    for outcome in (
        Outcome("GET", transport=Transport.RESET),
        Outcome("GET", status=404, code="NoSuchKey"),
        Outcome("GET", status=503, code="XMinioServerNotInitialized"),
    ):
        assert classify(outcome).confirmed


# --- one condition, one type --------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3])
def test_write_quorum_lost_maps_to_storage_cluster_degraded_whatever_the_pool_size(
    size: int,
) -> None:
    tried = tried_of([s3_error(503, "XMinioWriteQuorum", "120")] * size)
    assert tried[-1].verdict.confirmed
    for failure in (
        ClusterUnavailable("wait passes the deadline", records(tried), tried[-1].verdict),
        DeadlineExceeded("deadline passed", records(tried)),
        AttemptsExhausted("gave up", records(tried)),
    ):
        error = failure_of_call(failure, tried, operation="put_object", http_method="PUT")
        assert type(error) is StorageClusterDegraded, (size, failure)
        assert isinstance(error, McResolveError)
        assert error.writes_affected and error.code == "XMinioWriteQuorum"
        assert error.retry_after == 120 and error.attempts == size


def test_an_unconfirmed_quorum_view_is_not_the_cluster() -> None:
    """One node said quorum, the other one was unreachable: no cluster condition is known."""
    refused = ConnectionRefusedError(111, "refused")
    tried = tried_of([s3_error(503, "XMinioReadQuorum", "120"), refused], "GET", pool_size=3)
    failure = DeadlineExceeded("deadline passed", records(tried))
    assert failure_of_call(failure, tried, operation="get_object", http_method="GET") is failure


# --- unknown outcomes ---------------------------------------------------------------------------


def test_a_write_whose_answer_was_lost_is_an_unknown_outcome() -> None:
    tried = tried_of([TimeoutError("timed out"), ConnectionRefusedError(111, "refused")])
    failure = AttemptsExhausted("gave up", records(tried))
    error = failure_of_call(
        failure,
        tried,
        operation="put_object",
        http_method="PUT",
        bucket_name="b",
        object_name="k",
        expected_etag="abc",
    )
    assert type(error) is WriteOutcomeUnknown
    assert error.may_have_executed and error.endpoint == EPS[0]
    assert error.tried == tuple(tried) and error.cause is failure
    assert error.bucket_name == "b" and error.object_name == "k" and error.expected_etag == "abc"
    text = str(error)
    assert "may or may not have happened" in text and "stat_object('b', 'k')" in text
    assert "abc" in text and EPS[0].host_port in text and EPS[1].host_port in text


def test_an_unknown_write_in_a_degraded_cluster_is_catchable_as_both() -> None:
    tried = tried_of([TimeoutError("timed out"), TimeoutError("timed out")])  # hung PUTs
    assert tried[-1].verdict.error_class is Fault.CLUSTER
    failure = DeadlineExceeded("deadline passed", records(tried))
    error = failure_of_call(failure, tried, operation="put_object", http_method="PUT")
    assert isinstance(error, ClusterDegradedWriteOutcomeUnknown)
    assert isinstance(error, WriteOutcomeUnknown) and isinstance(error, StorageClusterDegraded)
    assert error.writes_affected and error.attempts == 2 and error.may_have_executed
    assert "may or may not have happened" in str(error) and "degraded" in str(error)


def test_reads_and_intermediate_steps_are_never_unknown_outcomes() -> None:
    tried = tried_of([TimeoutError("timed out"), ConnectionRefusedError(111, "refused")])
    failure = AttemptsExhausted("gave up", records(tried))
    assert failure_of_call(failure, tried, operation="get_object", http_method="GET") is failure
    part = failure_of_call(
        failure, tried, operation="put_object", http_method="PUT", outcome_matters=False
    )
    assert part is failure


def test_nothing_sent_is_not_an_unknown_outcome() -> None:
    tried = tried_of([ConnectionRefusedError(111, "refused")] * 2)
    failure = DeadlineExceeded("deadline passed", records(tried))
    assert failure_of_call(failure, tried, operation="put_object", http_method="PUT") is failure


def test_answers_pass_through() -> None:
    answer = s3_error(404, "NoSuchBucket")
    tried = tried_of([TimeoutError("timed out"), answer])
    assert failure_of_call(answer, tried, operation="put_object", http_method="PUT") is answer
    bug = ValueError("not a storage failure")
    assert failure_of_call(bug, [], operation="put_object", http_method="PUT") is bug


def test_unsafe_replays_say_why_they_were_not_sent_again() -> None:
    reset = ConnectionResetError(104, "reset")
    verdict = classify_exception(reset, method="PUT", idempotent=False)
    tried = [TriedAttempt(EPS[0], reset, verdict)]
    error = failure_of_call(reset, tried, operation="append_object", http_method="PUT")
    assert type(error) is WriteOutcomeUnknown and error.may_have_executed
    assert "append_object is not idempotent" in str(error)
    consumed = classify_exception(reset, method="PUT", body_replayable=False)
    tried = [TriedAttempt(EPS[0], reset, consumed)]
    error = failure_of_call(
        reset, tried, operation="put_object", http_method="PUT", body_replayable=False
    )
    assert type(error) is UploadNotRetryable and "not seekable" in str(error)
    refused = ConnectionRefusedError(111, "refused")
    unsent = classify_exception(refused, method="PUT", body_replayable=False)
    tried = [TriedAttempt(EPS[0], refused, unsent)]
    error = failure_of_call(
        refused, tried, operation="put_object", http_method="PUT", body_replayable=False
    )
    assert type(error) is UploadNotRetryable and not error.may_have_executed


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                TimeoutError("timed out"),
                ConnectionResetError(104, "reset"),
                ConnectionRefusedError(111, "refused"),
                s3_error(503, "XMinioWriteQuorum", "120"),
                s3_error(503, "XMinioReadQuorum", "x"),
                s3_error(500, "InternalError"),
                s3_error(503, "SlowDown", "60"),
            ]
        ),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 3),
    st.sampled_from(["PUT", "GET", "DELETE", "POST"]),
    st.sampled_from(["exhausted", "deadline", "cluster"]),
)
def test_every_failed_call_maps_to_a_documented_error(
    errors: list[BaseException], size: int, method: str, how: str
) -> None:
    tried = tried_of(errors, method, pool_size=size)
    rs = records(tried)
    failure: CallFailed = {
        "exhausted": lambda: AttemptsExhausted("gave up", rs),
        "deadline": lambda: DeadlineExceeded("deadline passed", rs),
        "cluster": lambda: ClusterUnavailable("cluster", rs, tried[-1].verdict),
    }[how]()
    error = failure_of_call(failure, tried, operation="op", http_method=method)
    assert isinstance(error, McResolveError)
    executed = any(t.verdict.may_have_executed for t in tried)
    confirmed_cluster = how == "cluster" or any(
        t.verdict.error_class is Fault.CLUSTER and t.verdict.confirmed for t in tried
    )
    write = method not in ("GET", "HEAD")
    assert isinstance(error, WriteOutcomeUnknown) == (write and executed)
    assert isinstance(error, StorageClusterDegraded) == confirmed_cluster
    if not (write and executed) and not confirmed_cluster:
        assert error is failure


# --- Retry-After --------------------------------------------------------------------------------


@given(st.text(max_size=60))
def test_retry_after_never_raises_and_stays_in_range(value: str) -> None:
    seconds = parse_retry_after(value, now_epoch=1_700_000_000.0)
    assert seconds is None or 0.0 <= seconds <= MAX_RETRY_AFTER


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 60 ", 60.0),
        ("0", 0.0),
        ("9" * 5000, MAX_RETRY_AFTER),  # beyond int()'s digit limit
        ("1" + "0" * 400, MAX_RETRY_AFTER),  # beyond float's range
        ("000000000000000000007", 7.0),
        ("-5", None),
        ("1.5", None),
        ("\u0661\u0662", None),  # Arabic-Indic digits: str.isdigit() but not HTTP
        ("\u00b2", None),  # superscript two: isdigit() but int() rejects it
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER),
        ("Mon, 01 Jan 0001 00:00:00 GMT", 0.0),
        ("garbage", None),
        ("", None),
    ],
)
def test_retry_after_forms(value: str, expected: Any) -> None:
    assert parse_retry_after(value, now_epoch=1_700_000_000.0) == expected
