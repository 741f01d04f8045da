"""Test helpers for the Consul client: a replay server answering with Consul's *recorded* answers
(``/work/shared/consul-golden``), so the client is checked against real Consul 1.0.8 output."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import MultiDict

from mcresolve.lifecycle import AsyncStartStop
from mcresolve.testing.consul.golden_files import golden_dir

GOLDEN = golden_dir()


def recorded(file: str) -> list[dict[str, Any]]:
    """Every element of a recording file."""
    items: list[dict[str, Any]] = json.loads((GOLDEN / file).read_text())
    return items


def golden(file: str, method: str, path: str, status: int | None = None) -> dict[str, Any]:
    """The first recorded exchange of ``file`` for ``method path`` (path with query string)."""
    for item in recorded(file):
        request = item.get("request")
        if (
            request
            and (request["method"], request["path"]) == (method, path)
            and (status is None or item["response"]["status"] == status)
        ):
            return dict(item)
    raise LookupError(f"no recorded {method} {path} in {file}")


@dataclass
class Planned:
    """One answer to serve."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False

    @classmethod
    def recorded(cls, exchange: dict[str, Any], delay: float = 0.0) -> Planned:
        """Rebuild a recorded answer as the dev agent sent it (4-space JSON, bare text)."""
        response = exchange["response"]
        fmt = response.get("body_format")
        if fmt in ("json", "json-trimmed"):
            body = (json.dumps(response["body"], indent=4) + "\n").encode()
        elif fmt == "text":
            body = response["body"].encode()
        else:
            body = b""
        headers = {
            k: v
            for k, v in response["headers"].items()
            if k.lower() not in ("content-length", "transfer-encoding")
        }
        return cls(status=response["status"], body=body, headers=headers, delay=delay)


@dataclass
class Seen:
    """A request the server received."""

    method: str
    path: str
    query: MultiDict[str]
    headers: dict[str, str]
    body: bytes
    #: The verified TLS client certificate (``getpeercert()``), if any.
    peer_cert: dict[str, Any] | None = None


class ReplayServer(AsyncStartStop):
    """Serves planned answers in order on 127.0.0.1 and records every request (``async with``
    starts it on a free port and stops it)."""

    def __init__(self) -> None:
        self.plan: deque[Planned] = deque()
        self.seen: list[Seen] = []
        self.port = 0
        #: Drop every connection at once instead of answering (a crashing agent).
        self.drop_all = False
        self._active: set[asyncio.Task[object]] = set()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answer(self, *planned: Planned) -> None:
        self.plan.extend(planned)

    def replay(self, file: str, method: str, path: str, status: int | None = None) -> None:
        self.plan.append(Planned.recorded(golden(file, method, path, status)))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._active.add(task)
        try:
            return await self._answer(request)
        finally:
            self._active.discard(task)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        self.seen.append(
            Seen(
                request.method,
                request.path,
                MultiDict(request.query),
                dict(request.headers),
                body,
                peer or None,
            )
        )
        if self.drop_all:
            self.plan.appendleft(Planned(drop=True))
        if not self.plan:
            return web.Response(status=599, text="replay server: no planned answer")
        planned = self.plan.popleft()
        if planned.delay:
            await asyncio.sleep(planned.delay)
        if planned.drop:
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("dropped on purpose")
        return web.Response(status=planned.status, body=planned.body, headers=planned.headers)

    async def start(self, port: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port or self.port, ssl_context=ssl_context)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for task in list(self._active):  # held (delayed) answers must not delay the shutdown
            task.cancel()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


def closed_port() -> int:
    """A loopback port nothing listens on (bound then closed: connecting is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class CountingProxy:
    """An HTTP proxy on 127.0.0.1 in front of an agent that counts the requests it forwards (the
    server-side view of how many requests a client sends). Stopping it drops in-flight requests
    and refuses new connections, like a stopped agent."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.paths: list[str] = []
        self.port = 0
        self._active: set[asyncio.Task[object]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def count(self, path: str) -> int:
        return sum(1 for p in self.paths if p == path)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._active.add(task)
        try:
            return await self._relay(request)
        finally:
            self._active.discard(task)

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        assert self._session is not None
        async with self._session.request(
            request.method,
            self.upstream + str(request.rel_url),
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            data=await request.read(),
        ) as upstream:
            body = await upstream.read()
            headers = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
            }
            return web.Response(status=upstream.status, body=body, headers=headers)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for task in list(self._active):  # drop in-flight requests, like a stopped agent
            task.cancel()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def make_tls_files(directory: Path, server_name: str = "consul.test") -> dict[str, str]:
    """A throw-away CA, a server certificate for ``server_name`` signed by it and a client
    certificate, made with the ``openssl`` command line. Returns the PEM paths."""
    files = {k: str(directory / f"{k}.pem") for k in ("ca", "ca_key", "cert", "key", "csr")}
    files.update({k: str(directory / f"{k}.pem") for k in ("client", "client_key", "client_csr")})
    ext = directory / "san.cnf"
    ext.write_text(f"subjectAltName=DNS:{server_name}\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        files["ca_key"],
        "-out",
        files["ca"],
    )
    for cert, key, csr, cn in (
        ("cert", "key", "csr", server_name),
        ("client", "client_key", "client_csr", "client"),
    ):
        run(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            f"/CN={cn}",
            "-keyout",
            files[key],
            "-out",
            files[csr],
        )
        run(
            "x509",
            "-req",
            "-in",
            files[csr],
            "-CA",
            files["ca"],
            "-CAkey",
            files["ca_key"],
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            files[cert],
            "-extfile",
            str(ext),
        )
    return files
