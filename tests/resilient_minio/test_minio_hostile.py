"""The S3 boundary invariant, with hypothesis: whatever a node answers (status, S3 error code,
``Retry-After`` in any form, truncated or garbage bodies, resets at any byte, an error after
executing), ResilientMinio returns the correct data or raises one of its documented errors; an
acknowledged write is readable; a read never returns bytes that are not the object's.

The hostile node (:mod:`hostile_s3`) relays to a real SeaweedFS node and scripts its next
answers; the pool also holds a healthy real node."""

from __future__ import annotations

import contextlib
import io
import os
import string
from collections.abc import Iterator

import pytest
from hostile_s3 import Answer, HostileS3
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from minio.error import MinioException
from resilient_minio_bed import make_client, unique

from mcresolve.balancer.picker import PickStrategy
from mcresolve.errors import McResolveError
from mcresolve.minio import HttpPolicy, ResilientMinio
from mcresolve.pool import PoolPolicy
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.testing.storage import StorageCluster

#: What ResilientMinio documents it raises: its own errors (under McResolveError: pool
#: failures, StorageClusterDegraded, WriteOutcomeUnknown, ...) and minio's answers (S3Error,
#: ServerError, InvalidResponseError) for a node's 4xx/3xx.
DOCUMENTED = (McResolveError, MinioException)
HTTP = HttpPolicy(connect_timeout=0.5, read_timeout=1.0)
CALLS = CallPolicy(deadline=2.5, attempt_timeout=1.0, max_attempts=4)
ROUND_ROBIN = PoolPolicy(strategy=PickStrategy.ROUND_ROBIN)
STABLE = os.urandom(20_000)  # long enough for a cut to land mid-body

CODES = [
    "XMinioReadQuorum",
    "XMinioWriteQuorum",
    "XMinioServerNotInitialized",
    "SlowDown",
    "SlowDownWrite",
    "ServerBusy",
    "TooManyRequests",
    "RequestTimeout",
    "InternalError",
    "NoSuchKey",
    "AccessDenied",
    "PreconditionFailed",
]
STATUSES = [301, 304, 307, 400, 403, 404, 408, 409, 412, 429, 499, 500, 501, 502, 503, 504]
STATUSES += [507, 599, 600, 999]
RETRY_AFTERS = [
    "0",
    "1",
    "120",
    "-5",
    "1.5",
    "9" * 5000,
    "1" + "0" * 400,
    "soon",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Mon, 01 Jan 1990 00:00:00 GMT",
    "\u0661\u0662",
    "\u00b2",
    "",
]


def _xml(code: str | None) -> bytes:
    inner = f"<Code>{code}</Code>" if code is not None else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{inner}<Message>m</Message>'
        "<Resource>/b/k</Resource><RequestId>1</RequestId><HostId>h</HostId></Error>"
    ).encode()


@st.composite
def forged_answers(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from(STATUSES))
    code = draw(
        st.one_of(
            st.none(),
            st.sampled_from(CODES),
            st.text(alphabet=string.ascii_letters, min_size=1, max_size=12),
        )
    )
    kind = draw(st.sampled_from(["xml", "truncated", "garbage", "empty", "html"]))
    xml = _xml(code)
    body = {
        "xml": xml,
        "truncated": xml[: draw(st.integers(0, len(xml) - 1))],
        "garbage": draw(st.binary(max_size=200)),
        "empty": b"",
        "html": b"<html><body>Bad Gateway</body></html>",
    }[kind]
    headers = [f"HTTP/1.1 {status} Whatever".encode()]
    content_type = draw(st.sampled_from(["application/xml", "text/html", None]))
    if content_type is not None:
        headers.append(f"Content-Type: {content_type}".encode())
    retry_after = draw(st.one_of(st.none(), st.sampled_from(RETRY_AFTERS)))
    if retry_after is not None:
        headers.append(b"Retry-After: " + retry_after.encode())
    framing = draw(st.sampled_from(["exact", "short", "none"]))
    if framing == "exact":
        headers.append(f"Content-Length: {len(body)}".encode())
    elif framing == "short":  # announces more than it sends, then the connection closes
        headers.append(f"Content-Length: {len(body) + 10}".encode())
    headers.append(b"Connection: close")
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


answers = st.builds(
    Answer,
    relay=st.booleans(),
    forged=st.one_of(st.none(), forged_answers()),
    cut=st.one_of(st.none(), st.integers(0, 25_000)),
    reset=st.booleans(),
)


@pytest.fixture(scope="module")
def hostile(mcresolve_storage_cluster: StorageCluster) -> Iterator[HostileS3]:
    node = mcresolve_storage_cluster.nodes_in("dc1")[0]
    server = HostileS3((node.address, node.s3_port)).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def stable(mcresolve_storage_cluster: StorageCluster, bucket: str) -> str:
    name = unique("stable")
    mcresolve_storage_cluster.nodes[0].client().put_object(
        bucket, name, io.BytesIO(STABLE), len(STABLE)
    )
    return name


def _healthy(storage_cluster: StorageCluster) -> str:
    return storage_cluster.nodes_in("dc1")[1].endpoint


@settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "50")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=st.lists(answers, min_size=1, max_size=4), payload=st.binary(max_size=3000))
def test_whatever_a_node_answers_the_caller_gets_the_data_or_a_documented_error(
    mcresolve_storage_cluster: StorageCluster,
    bucket: str,
    hostile: HostileS3,
    stable: str,
    script: list[Answer],
    payload: bytes,
) -> None:
    hostile.script(script)
    direct = mcresolve_storage_cluster.nodes_in("dc1")[1].client()
    name = unique("hostile")
    client: ResilientMinio
    with make_client(
        mcresolve_storage_cluster,
        f"static://{hostile.endpoint},{_healthy(mcresolve_storage_cluster)}",
        http=HTTP,
        call_policy=CALLS,
        pool_policy=ROUND_ROBIN,
    ) as client:
        try:
            client.put_object(bucket, name, io.BytesIO(payload), len(payload))
        except DOCUMENTED as exc:
            event(f"put: {type(exc).__name__}")
        else:
            event("put: ok")  # acknowledged: readable, byte-identical
            response = direct.get_object(bucket, name)
            try:
                assert response.read() == payload
            finally:
                response.close()
                response.release_conn()
        try:
            response = client.get_object(bucket, stable)
            try:
                data = response.read()
            finally:
                response.close()
        except DOCUMENTED as exc:
            event(f"get: {type(exc).__name__}")
        else:
            event("get: ok")
            assert data == STABLE, f"read {len(data)} bytes that are not the object's"
        with contextlib.suppress(DOCUMENTED):
            assert client.stat_object(bucket, stable).size == len(STABLE)
        try:
            names = [o.object_name for o in client.list_objects(bucket, prefix=stable)]
        except DOCUMENTED as exc:
            event(f"list: {type(exc).__name__}")
        else:
            assert names == [stable]
    event(f"hostile node asked {min(len(hostile.requests), 3)}+ times")


# --- the shapes the invariant found, pinned ---------------------------------------------------


def _client_over(hostile: HostileS3, storage_cluster: StorageCluster) -> ResilientMinio:
    """Hostile node first: round robin starts anywhere, so one warm-up call decides."""
    return make_client(
        storage_cluster,
        f"static://{hostile.endpoint},{_healthy(storage_cluster)}",
        http=HTTP,
        call_policy=CALLS,
        pool_policy=ROUND_ROBIN,
    )


def _read_twice(client: ResilientMinio, bucket: str, name: str) -> list[bytes]:
    """Two reads: with round robin over two nodes one of them starts on the hostile node."""
    out = []
    for _ in range(2):
        response = client.get_object(bucket, name)
        try:
            out.append(response.read())
        finally:
            response.close()
    return out


@pytest.mark.parametrize(
    "answer",
    [
        # An error body that says XML and is not: ParseError inside minio.
        Answer(
            relay=False,
            forged=b"HTTP/1.1 503 Busy\r\nContent-Type: application/xml\r\n"
            b"Content-Length: 9\r\nConnection: close\r\n\r\n<Error><C",
        ),
        # The head cut right after the status line: an empty "object".
        Answer(relay=True, cut=len(b"HTTP/1.1 200"), reset=False),
        # The head cut inside Content-Length ("20000" -> "2"), then closed.
        Answer(relay=True, cut_after=b"Content-Length: ", reset=False),
    ],
    ids=["truncated-xml", "cut-after-status", "cut-inside-length"],
)
def test_pinned_hostile_answers_never_yield_wrong_bytes(
    mcresolve_storage_cluster: StorageCluster,
    bucket: str,
    hostile: HostileS3,
    stable: str,
    answer: Answer,
) -> None:
    hostile.script([answer, answer])
    with _client_over(hostile, mcresolve_storage_cluster) as client:
        assert _read_twice(client, bucket, stable) == [STABLE, STABLE]
    assert len(hostile.requests) >= 1  # the hostile answer was given


def test_an_answer_minio_cannot_parse_is_retried_elsewhere(
    mcresolve_storage_cluster: StorageCluster, bucket: str, hostile: HostileS3, stable: str
) -> None:
    """A bodiless 409 to a HEAD: minio's own error table raises ValueError (a 1-tuple where it
    unpacks two), which escaped as is."""
    forged = b"HTTP/1.1 409 Conflict\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    hostile.script([Answer(relay=False, forged=forged)] * 2)
    with _client_over(hostile, mcresolve_storage_cluster) as client:
        sizes = [client.stat_object(bucket, stable).size for _ in range(2)]
    assert sizes == [len(STABLE)] * 2
    assert len(hostile.requests) >= 1
