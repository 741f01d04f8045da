"""ResilientMinio over a pool whose endpoints all refuse connections (a datacenter's storage
lost before Consul noticed): the call keeps going, without charging the refused attempts against
``max_attempts``, until the source publishes a live endpoint. Real loopback sockets: the dead
endpoints are bound ports that never listen; the live one is a minimal S3-ish HTTP server."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from manual_source import ManualSource
from mcresolve.endpoint import Endpoint
from mcresolve.minio import ResilientMinio
from mcresolve.pool import EndpointPool
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.pool.planner import AttemptRecord
from mcresolve.timing import BackoffPolicy, Jitter


class _HeadOk(http.server.BaseHTTPRequestHandler):
    """Answers every HEAD with 200 (``bucket_exists`` → True)."""

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def live_endpoint() -> Iterator[Endpoint]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HeadOk)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Endpoint("127.0.0.1", server.server_address[1], datacenter="dc2")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def dead_endpoints() -> Iterator[tuple[Endpoint, ...]]:
    sockets = [socket.socket() for _ in range(2)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        yield tuple(Endpoint("127.0.0.1", s.getsockname()[1], datacenter="dc1") for s in sockets)
    finally:
        for sock in sockets:
            sock.close()


async def test_dead_datacenter_does_not_use_up_attempts_until_the_new_set_arrives(
    live_endpoint: Endpoint, dead_endpoints: tuple[Endpoint, ...]
) -> None:
    source = ManualSource()
    source.answer(dead_endpoints, "dc1")
    policy = CallPolicy(
        deadline=10.0,
        attempt_timeout=2.0,
        max_attempts=2,
        backoff=BackoffPolicy(base=0.01, cap=0.02, jitter=Jitter.NONE),
    )
    async with EndpointPool(source, local_datacenter="dc1") as pool:
        loop = asyncio.get_running_loop()
        refused: list[AttemptRecord] = []

        def on_attempt(record: AttemptRecord) -> None:
            if record.refused:
                refused.append(record)
                if len(refused) == 8:  # Consul's checks turned critical: dc2 answers
                    loop.call_soon_threadsafe(source.answer, [live_endpoint], "dc2")

        pool.add_attempt_listener(on_attempt)
        client = ResilientMinio(
            pool,
            access_key="k",
            secret_key="s",
            secure=False,
            region="us-east-1",
            call_policy=policy,
        )
        try:
            assert await asyncio.to_thread(client.bucket_exists, "bucket") is True
        finally:
            client.close()
        assert len(refused) >= 8 > policy.max_attempts
        assert {r.endpoint for r in refused} == set(dead_endpoints)
        assert source.refreshes >= 1  # every endpoint ejected: the source was asked again
