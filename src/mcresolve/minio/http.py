"""The HTTP client each per-endpoint ``minio.Minio`` uses: short timeouts, no hidden retries.

``minio.Minio``'s default ``urllib3.PoolManager`` waits 300 s to connect and 300 s per read and
retries 5 times (also on 500/502/503/504 answers): one dead node costs 6 s, a blackholed one about
30 min and a node answering 503 with ``Retry-After: 120`` ten minutes (measured, see
``docs/minio.md``). A failover wrapper must do the retrying itself, across endpoints, so the
client below never retries and gives up on one node quickly.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import certifi
import urllib3
from urllib3.response import BaseHTTPResponse
from urllib3.util import Retry, Timeout, parse_url

__all__ = ["HttpPolicy", "answers_received", "make_http_client"]


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """Timeouts and connection-pool size of the per-endpoint HTTP clients. Seconds."""

    connect_timeout: float = 2.0
    """TCP connect limit. 2 s: a healthy node on a LAN accepts in well under a millisecond, and a
    refused port fails at once; only a dropped SYN (host gone, firewall) waits this long.
    HAProxy's ``timeout connect`` examples use 5 s; mcresolve's Consul client connects within
    2 s by default."""
    read_timeout: float = 10.0
    """Limit on each socket read (not on a whole transfer). 10 s equals the pool's default
    attempt timeout (:class:`~mcresolve.pool.call_policy.CallPolicy`): a blackholed node costs
    exactly one of these before it is ejected. MinIO answers time-to-first-byte in milliseconds
    even for large objects; raise it for servers that compute before answering
    (``SelectObjectContent`` over huge objects, ``ComposeObject`` server-side copies)."""
    max_connections: int = 16
    """Connections kept per endpoint (urllib3 ``maxsize``). Must be at least the number of threads
    that call concurrently — the asyncio facade sizes its executor and this value together, since
    a 32-thread executor against urllib3's default of 10 logs "Connection pool is full" and opens
    and closes connections at every call."""
    block: bool = False
    """urllib3 ``block``: wait for a free connection instead of opening an extra one."""
    cert_check: bool = True
    """Verify TLS certificates (as ``minio.Minio(cert_check=...)``)."""
    ca_certs: str | None = None
    """CA bundle (default: ``$SSL_CERT_FILE``, else certifi's, as ``minio.Minio`` does)."""

    def __post_init__(self) -> None:
        if not self.connect_timeout > 0 or not self.read_timeout > 0:
            raise ValueError("HttpPolicy timeouts must be > 0 seconds")
        if self.max_connections < 1:
            raise ValueError("HttpPolicy.max_connections must be >= 1")


NO_RETRIES = Retry(
    total=0, connect=0, read=0, redirect=False, status=0, other=0, raise_on_status=False
)
"""urllib3 retries nothing, not even on a stale pooled connection: every failure reaches the
wrapper, which retries on *another* endpoint (``raise_on_status=False`` so that error answers
are returned to minio, which turns them into ``S3Error``; redirects too, which minio
handles itself)."""


_answers = threading.local()


def answers_received() -> int:
    """How many HTTP responses the clients of :func:`make_http_client` have received in the
    calling thread (a running count). Compared before and after an attempt, it tells whether an
    exception came after the node answered (an answer that could not be understood) or before
    (a failure of the caller's own arguments or code)."""
    return int(getattr(_answers, "count", 0))


def _unframed(method: str, url: str, response: BaseHTTPResponse) -> bool:
    """A successful GET/HEAD answer about an *object* (path ``/bucket/key``) without an
    ``ETag``, or with neither ``Content-Length`` nor chunked encoding: its head was cut.

    S3 servers send ``ETag`` and ``Content-Length`` with every object (``GetObject``,
    ``HeadObject``; MinIO and SeaweedFS alike). Without framing the body ends where the
    connection closes, so an answer cut anywhere in its head ("HTTP/1.1 200" and nothing more)
    would read as a complete, empty object, and a HEAD as an object of no size. Go servers
    (MinIO, SeaweedFS) write headers sorted by name, ``Content-Length`` before ``Etag``: a head
    cut inside the length ("20000" -> "2") has no ETag. Listings and bucket calls are left
    alone: a proxy may legitimately delimit those by closing, and a cut one fails to parse.
    """
    if method.upper() not in ("GET", "HEAD") or not 200 <= response.status < 300:
        return False
    bucket, _, key = (parse_url(url).path or "/").lstrip("/").partition("/")
    if not (bucket and key):
        return False
    if response.status == 204:
        return False
    headers = response.headers
    if not headers.get("etag", "").strip():
        return True
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return False
    length = headers.get("content-length")
    return length is None or not length.strip().isdigit()


class _AnswerCountingPoolManager(urllib3.PoolManager):
    def urlopen(  # type: ignore[override]  # PoolManager's own signature
        self, method: str, url: str, redirect: bool = True, **kw: Any
    ) -> BaseHTTPResponse:
        response = super().urlopen(method, url, redirect=redirect, **kw)
        _answers.count = getattr(_answers, "count", 0) + 1
        if _unframed(method, url, response):
            response.drain_conn()
            response.release_conn()
            # A broken response: classified as the node's fault and retried elsewhere.
            raise urllib3.exceptions.ProtocolError(
                f"Connection broken: {response.status} answer to {method} without "
                "Content-Length (cut short?)"
            )
        return response


def make_http_client(policy: HttpPolicy) -> urllib3.PoolManager:
    """A ``urllib3.PoolManager`` for one endpoint's ``minio.Minio`` client (counting the
    answers it receives per thread: :func:`answers_received`)."""
    return _AnswerCountingPoolManager(
        timeout=Timeout(connect=policy.connect_timeout, read=policy.read_timeout),
        maxsize=policy.max_connections,
        block=policy.block,
        cert_reqs="CERT_REQUIRED" if policy.cert_check else "CERT_NONE",
        ca_certs=policy.ca_certs or os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=NO_RETRIES,
    )
