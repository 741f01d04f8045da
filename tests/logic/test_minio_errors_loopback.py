"""Classification of the exceptions a real ``minio.Minio`` client raises, produced by a scripted
loopback HTTP server (127.0.0.1): proves the mapping matches what minio and urllib3 really raise
with the short-timeout, no-retry ``http_client`` the wrapper uses."""

from __future__ import annotations

import io
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import urllib3
from minio import Minio

from mcresolve.balancer.outlier import FailureKind
from mcresolve.minio.classify import Transport, classify_exception, transport_of
from mcresolve.pool.planner import Fault

XML = "application/xml"


@dataclass
class Script:
    """What the server does with the next request."""

    action: str = "respond"  # respond | hang | close | truncate
    status: int = 200
    content_type: str = XML
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


def s3_body(code: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>m</Message>'
        f"<Resource>/bucket/key</Resource><RequestId>r</RequestId><HostId>h</HostId></Error>"
    ).encode()


class ScriptedServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.script = Script()
        self.release = threading.Event()


class ScriptedHandler(socketserver.StreamRequestHandler):
    server: ScriptedServer

    def handle(self) -> None:
        length = 0
        while True:
            line = self.rfile.readline(65536)
            if not line or line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length:
            self.rfile.read(length)
        script = self.server.script
        if script.action == "hang":
            self.server.release.wait(30)
            return
        if script.action == "close":
            return
        extra = "".join(f"{k}: {v}\r\n" for k, v in script.headers)
        declared = len(script.body) * (10 if script.action == "truncate" else 1)
        head = (
            f"HTTP/1.1 {script.status} X\r\nContent-Type: {script.content_type}\r\n"
            f"Content-Length: {declared}\r\n{extra}Connection: close\r\n\r\n"
        )
        self.wfile.write(head.encode() + script.body)
        self.wfile.flush()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(10)


def client(port: int, retries: urllib3.Retry | bool = False, read_timeout: float = 10.0) -> Minio:
    """A minio client as the wrapper builds it: own PoolManager, no urllib3 retries. The read
    timeout is generous (slow shared machine) except where a timeout is the point."""
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=5.0, read=read_timeout), retries=retries, maxsize=2
    )
    return Minio(
        f"127.0.0.1:{port}",
        access_key="access",
        secret_key="secret",
        secure=False,
        region="us-east-1",
        http_client=http,
    )


def raised(call: Callable[[], object]) -> BaseException:
    """The exception ``call`` raises, which must come from minio or urllib3 (not e.g. a
    ValueError about the arguments, which would make the test meaningless)."""
    with pytest.raises(Exception) as info:
        call()
    assert type(info.value).__module__.split(".")[0] in ("minio", "urllib3"), info.value
    return info.value


def put(mc: Minio) -> object:
    return mc.put_object("bucket", "key", io.BytesIO(b"0123456789"), 10)


def test_write_quorum_503_is_cluster_writes_with_retry_after(server: ScriptedServer) -> None:
    server.script = Script(
        status=503, body=s3_body("XMinioWriteQuorum"), headers=(("Retry-After", "120"),)
    )
    exc = raised(lambda: put(client(server.server_address[1])))
    verdict = classify_exception(exc, method="PUT")
    assert type(exc).__name__ == "S3Error"
    assert verdict.error_class is Fault.CLUSTER
    assert verdict.affects is not None and verdict.affects.writes and not verdict.affects.reads
    assert verdict.retry_after == 120.0 and verdict.replay_safe


def test_head_503_is_a_server_error_without_code(server: ScriptedServer) -> None:
    server.script = Script(status=503, body=b"", headers=(("Retry-After", "60"),))
    exc = raised(lambda: client(server.server_address[1]).stat_object("bucket", "key"))
    assert type(exc).__name__ == "ServerError"
    verdict = classify_exception(exc, method="HEAD")
    assert verdict.error_class is Fault.NODE
    assert verdict.failure_kind is FailureKind.SERVER_ERROR
    every = classify_exception(exc, method="HEAD", from_every_endpoint=True)
    assert every.error_class is Fault.CLUSTER


def test_no_such_key_is_a_client_answer(server: ScriptedServer) -> None:
    server.script = Script(status=404, body=s3_body("NoSuchKey"))
    exc = raised(lambda: client(server.server_address[1]).get_object("bucket", "key"))
    verdict = classify_exception(exc, method="GET")
    assert verdict.error_class is Fault.CLIENT and verdict.node_ok
    assert not verdict.replay_safe


def test_head_404_is_a_client_answer(server: ScriptedServer) -> None:
    server.script = Script(status=404)
    exc = raised(lambda: client(server.server_address[1]).stat_object("bucket", "key"))
    assert classify_exception(exc, method="HEAD").error_class is Fault.CLIENT


def test_proxy_html_502_is_a_gateway_failure(server: ScriptedServer) -> None:
    server.script = Script(status=502, content_type="text/html", body=b"<html>bad gateway</html>")
    exc = raised(lambda: client(server.server_address[1]).get_object("bucket", "key"))
    assert type(exc).__name__ == "InvalidResponseError"
    verdict = classify_exception(exc, method="GET")
    assert verdict.error_class is Fault.NODE
    assert verdict.failure_kind is FailureKind.GATEWAY


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("retries", [False, urllib3.Retry(total=0, redirect=0)])
def test_refused_connection_is_node_connect(retries: urllib3.Retry | bool) -> None:
    exc = raised(lambda: put(client(closed_port(), retries)))
    assert transport_of(exc) is Transport.REFUSED
    verdict = classify_exception(exc, method="POST")
    assert verdict.error_class is Fault.NODE
    assert verdict.failure_kind is FailureKind.CONNECT
    assert verdict.replay_safe and not verdict.may_have_executed


def test_silent_node_is_a_read_timeout(server: ScriptedServer) -> None:
    server.script = Script(action="hang")
    silent = client(server.server_address[1], read_timeout=0.3)
    exc = raised(lambda: silent.stat_object("bucket", "key"))
    assert transport_of(exc) is Transport.READ_TIMEOUT
    verdict = classify_exception(exc, method="HEAD")
    assert verdict.failure_kind is FailureKind.TIMEOUT
    assert classify_exception(exc, method="PUT", from_every_endpoint=True).error_class is (
        Fault.CLUSTER
    )


def test_connection_closed_without_answer_is_a_reset(server: ScriptedServer) -> None:
    server.script = Script(action="close")
    exc = raised(lambda: put(client(server.server_address[1])))
    assert transport_of(exc) is Transport.RESET
    verdict = classify_exception(exc, method="PUT")
    assert verdict.failure_kind is FailureKind.RESET and verdict.may_have_executed
    assert verdict.replay_safe  # PUT is idempotent and the body is bytes
    assert not classify_exception(exc, method="POST").replay_safe


def test_body_cut_mid_stream_is_a_broken_response(server: ScriptedServer) -> None:
    server.script = Script(
        action="truncate", status=200, content_type="application/octet-stream", body=b"x" * 10
    )
    response = client(server.server_address[1]).get_object("bucket", "key")
    try:
        exc = raised(response.read)
    finally:
        response.close()
        response.release_conn()
    assert transport_of(exc) is Transport.BROKEN_RESPONSE
    verdict = classify_exception(exc, method="GET")
    assert verdict.error_class is Fault.NODE and verdict.replay_safe
