"""``ResumableResponse.read()`` on a real loopback HTTP server (no storage cluster): a small
body is read with one read of the wrapped response, and a body cut mid-way is resumed with a
Range request from the last byte delivered, for small bodies (one read) and large ones (read in
steps)."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from urllib3.response import BaseHTTPResponse

from mcresolve.endpoint import Endpoint
from mcresolve.minio import HttpPolicy, ResumableResponse, make_http_client

ETAG = '"0123456789abcdef"'


class ObjectServer(http.server.ThreadingHTTPServer):
    """Serves one object at ``/obj`` (Range, Content-Range and If-Match as S3 does);
    ``cut_after`` makes the next response announce the full length but close the connection
    after that many bytes."""

    daemon_threads = True

    def __init__(self, body: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.body = body
        self.cut_after: int | None = None
        self.send_length = True
        self.ranges: list[str | None] = []
        self.if_match: list[str | None] = []


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ObjectServer

    def do_GET(self) -> None:
        body = self.server.body
        requested = self.headers.get("Range")
        self.server.ranges.append(requested)
        self.server.if_match.append(self.headers.get("If-Match"))
        status = 200
        content_range = None
        if requested is not None:
            first, _, last = requested.removeprefix("bytes=").partition("-")
            start = int(first)
            body = body[start : int(last) + 1 if last else None]
            status = 206
            total = len(self.server.body)
            content_range = f"bytes {start}-{start + len(body) - 1}/{total}"
        cut, self.server.cut_after = self.server.cut_after, None
        self.send_response(status)
        if content_range is not None:
            self.send_header("Content-Range", content_range)
        if self.server.send_length:
            self.send_header("Content-Length", str(len(body)))
        else:  # the body ends when the connection closes
            self.send_header("Connection", "close")
            self.close_connection = True
        self.send_header("ETag", ETAG)
        self.end_headers()
        if cut is None:
            self.wfile.write(body)
        else:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[tuple[ObjectServer, threading.Thread]] = []

    def start(body: bytes) -> ObjectServer:
        server = ObjectServer(body)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((server, thread))
        return server

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


class CountingReads:
    """Counts the reads made on the wrapped responses (a spy around real responses)."""

    def __init__(self) -> None:
        self.sizes: list[int | None] = []

    def watch(self, response: BaseHTTPResponse) -> BaseHTTPResponse:
        read = response.read

        def counted(amt: int | None = None, *args: Any, **kwargs: Any) -> bytes:
            self.sizes.append(amt)
            return read(amt, *args, **kwargs)

        response.read = counted  # type: ignore[method-assign]
        return response


def open_object(server: ObjectServer, reads: CountingReads) -> ResumableResponse:
    http = make_http_client(HttpPolicy(connect_timeout=2.0, read_timeout=5.0))
    endpoint = Endpoint("127.0.0.1", server.server_address[1])
    url = f"http://{endpoint.host_port}/obj"
    failures: list[BaseException] = []

    def reopen(start: int, size: int, etag: str | None) -> tuple[BaseHTTPResponse, Endpoint]:
        last = "" if size == 0 else str(start + size - 1)
        headers = {"Range": f"bytes={start}-{last}", "If-Match": etag or ""}
        response = http.request("GET", url, headers=headers, preload_content=False)
        return reads.watch(response), endpoint

    first = http.request("GET", url, preload_content=False)
    return ResumableResponse(
        reads.watch(first),
        endpoint,
        bucket="b",
        object_name="obj",
        offset=0,
        reopen=reopen,
        report_failure=lambda _e, exc: failures.append(exc),
    )


def test_small_body_is_read_with_one_read_and_its_connection_released(serve: Any) -> None:
    body = os.urandom(1024)
    server = serve(body)
    reads = CountingReads()
    response = open_object(server, reads)
    assert response.read() == body
    assert reads.sizes == [len(body)]  # no second read to find the end
    assert response.inner.connection is None  # back in urllib3's pool
    assert response.read() == b"" and response.position == len(body)
    assert response.resumes == 0


def test_small_body_cut_mid_way_resumes_and_is_complete(serve: Any) -> None:
    body = os.urandom(10_000)
    server = serve(body)
    server.cut_after = 3_000
    reads = CountingReads()
    response = open_object(server, reads)
    assert response.read() == body
    assert response.resumes == 1
    # The one read failed as a whole: the resume starts at the last byte delivered (0).
    assert server.ranges == [None, f"bytes=0-{len(body) - 1}"]
    assert server.if_match == [None, ETAG]


def test_large_body_cut_mid_way_resumes_from_the_last_step_delivered(serve: Any) -> None:
    step = 1024 * 1024
    body = os.urandom(2 * step + 12_345)
    server = serve(body)
    server.cut_after = step + step // 2  # the second step breaks
    reads = CountingReads()
    response = open_object(server, reads)
    assert response.read() == body
    assert response.resumes == 1
    assert server.ranges == [None, f"bytes={step}-{len(body) - 1}"]
    assert reads.sizes[0] == step


def test_sized_reads_after_a_partial_read_still_end_exactly(serve: Any) -> None:
    body = os.urandom(5_000)
    server = serve(body)
    reads = CountingReads()
    response = open_object(server, reads)
    head = response.read(1_000)
    assert head + response.read() == body
    assert reads.sizes == [1_000, 4_000]


def test_unknown_length_is_read_in_chunks_to_the_end(serve: Any) -> None:
    body = os.urandom(3_000)
    server = serve(body)
    server.send_length = False
    reads = CountingReads()
    response = open_object(server, reads)
    assert response.read() == body
    assert reads.sizes[-1] == 64 * 1024 and len(reads.sizes) >= 2  # the last one finds the end
