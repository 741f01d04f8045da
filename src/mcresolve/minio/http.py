"""The HTTP client each per-endpoint ``minio.Minio`` uses: short timeouts, no hidden retries.

``minio.Minio``'s default ``urllib3.PoolManager`` waits 300 s to connect and 300 s per read and
retries 5 times (also on 500/502/503/504 answers): one dead node costs 6 s, a blackholed one about
30 min and a node answering 503 with ``Retry-After: 120`` ten minutes (measured, see
``docs/minio.md``). A failover wrapper must do the retrying itself, across endpoints, so the
client below never retries and gives up on one node quickly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import certifi
import urllib3
from urllib3.util import Retry, Timeout

__all__ = ["HttpPolicy", "make_http_client"]


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
    attempt timeout (:class:`~mcresolve.call_policy.CallPolicy`): a blackholed node costs exactly
    one of these before it is ejected. MinIO answers time-to-first-byte in milliseconds even for
    large objects; raise it for servers that compute before answering (``SelectObjectContent``
    over huge objects, ``ComposeObject`` server-side copies)."""
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


def make_http_client(policy: HttpPolicy) -> urllib3.PoolManager:
    """A ``urllib3.PoolManager`` for one endpoint's ``minio.Minio`` client."""
    return urllib3.PoolManager(
        timeout=Timeout(connect=policy.connect_timeout, read=policy.read_timeout),
        maxsize=policy.max_connections,
        block=policy.block,
        cert_reqs="CERT_REQUIRED" if policy.cert_check else "CERT_NONE",
        ca_certs=policy.ca_certs or os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=NO_RETRIES,
    )
