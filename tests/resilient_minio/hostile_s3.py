"""A hostile S3 node for tests: a loopback relay in front of one real storage node whose next
answers are scripted (byte-exact), for the shapes the fault proxy cannot produce.

Each connection carries one request (the relay adds ``Connection: close`` upstream and closes
after answering). For every request the next scripted :class:`Answer` is used, or a plain relay
when the script is empty:

* ``relay=True``: the request goes to the real node (it executes); its real answer is sent, or
  ``forged`` instead when given (an error after executing);
* ``relay=False``: the request never reaches the node; ``forged`` is sent;
* ``cut`` (or ``cut_after``): only the first ``cut`` bytes of the answer are sent, then the
  connection is reset (``reset=True``) or closed.

``SignedHeaders`` of minio's SigV4 never include ``Connection``, so adding it keeps the
signature valid.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading
from collections import deque
from dataclasses import dataclass

_MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class Answer:
    """What the hostile node does with one request."""

    relay: bool = True
    forged: bytes | None = None
    cut: int | None = None
    reset: bool = True
    cut_after: bytes | None = None
    """Cut one byte after the first occurrence of these bytes in the answer (instead of
    ``cut``): ``b"Content-Length: "`` keeps the first digit of the length only."""


def _recv_until(sock: socket.socket, buffer: bytearray, marker: bytes) -> int:
    while True:
        index = buffer.find(marker)
        if index >= 0:
            return index
        if len(buffer) > _MAX_HEAD:
            raise ConnectionError("request head too large")
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before the request head ended")
        buffer += data


def _read_request(sock: socket.socket) -> bytes:
    """One request (head and Content-Length body), with ``Connection: close`` added."""
    buffer = bytearray()
    end = _recv_until(sock, buffer, b"\r\n\r\n")
    head = bytes(buffer[:end])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = bytearray(buffer[end + 4 :])
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed mid-body")
        body += data
    lines = [
        line
        for line in head.split(b"\r\n")
        if line.partition(b":")[0].strip().lower() != b"connection"
    ]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + bytes(body[:length])


def _exchange(upstream: tuple[str, int], request: bytes) -> bytes:
    with socket.create_connection(upstream, timeout=10.0) as sock:
        sock.sendall(request)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class HostileS3:
    """The hostile node (a threading TCP server on 127.0.0.1, port 0)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._script: deque[Answer] = deque()
        self._lock = threading.Lock()
        self.requests: list[tuple[bytes, Answer]] = []
        hostile = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                hostile._handle(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> HostileS3:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def script(self, answers: list[Answer]) -> None:
        """Answer the next requests with ``answers`` (then relay untouched)."""
        with self._lock:
            self._script = deque(answers)
            self.requests = []

    def _next(self) -> Answer:
        with self._lock:
            return self._script.popleft() if self._script else Answer()

    def _handle(self, sock: socket.socket) -> None:
        try:
            request = _read_request(sock)
        except (OSError, ValueError):
            _reset(sock)
            return
        answer = self._next()
        with self._lock:
            self.requests.append((request.split(b"\r\n", 1)[0], answer))
        try:
            response = _exchange(self.upstream, request) if answer.relay else b""
            if answer.forged is not None:
                response = answer.forged
            cut = answer.cut
            if answer.cut_after is not None and answer.cut_after in response:
                cut = response.index(answer.cut_after) + len(answer.cut_after) + 1
            if cut is not None:
                sock.sendall(response[:cut])
                if answer.reset:
                    _reset(sock)
                return
            sock.sendall(response)
        except OSError:
            _reset(sock)
