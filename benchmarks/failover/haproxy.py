"""HAProxy (Debian's ``haproxy``) in front of the storage nodes: configuration and life cycle.

The configuration is the load-balancer-in-the-middle of the reference deployment, tuned the
way a careful operator would: active HTTP health checks (``inter 2s fall 3 rise 2``, HAProxy's
documented defaults), passive health (``observe layer7``: 3 consecutive errors mark a server
down at once), ``retries 3`` with ``option redispatch`` so a retry goes to another server, and
layer-7 retries (``retry-on``) on connection failures, empty answers, response timeouts and
500/502/503/504 answers. The local datacenter's nodes balance round-robin; the remote
datacenter's nodes are ``backup`` servers, used only when every local one is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HAProxyProcess", "HAProxyServer", "HAProxySettings", "find_haproxy", "render_config"]


@dataclass(frozen=True)
class HAProxyServer:
    """One storage node as an HAProxy server line."""

    name: str
    address: str
    port: int
    backup: bool = False


@dataclass(frozen=True)
class HAProxySettings:
    """Timeouts and health-check shape (seconds)."""

    connect_timeout: float = 1.0
    server_timeout: float = 1.0
    check_interval: float = 2.0
    check_fall: int = 3
    check_rise: int = 2
    retries: int = 3
    error_limit: int = 3


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def render_config(
    servers: Sequence[HAProxyServer], listen_port: int, settings: HAProxySettings
) -> str:
    """The whole ``haproxy.cfg`` text (pure)."""
    if not servers:
        raise ValueError("HAProxy needs at least one server")
    lines = [
        "global",
        "    maxconn 2048",
        "",
        "defaults",
        "    mode http",
        f"    timeout connect {_ms(settings.connect_timeout)}",
        "    timeout client 60s",
        f"    timeout server {_ms(settings.server_timeout)}",
        f"    timeout check {_ms(settings.connect_timeout)}",
        f"    retries {settings.retries}",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response response-timeout 500 502 503 504",
        "    option http-keep-alive",
        "",
        "frontend s3",
        f"    bind 127.0.0.1:{listen_port}",
        "    default_backend storage",
        "",
        "backend storage",
        "    balance roundrobin",
        "    option httpchk GET /healthz",
        "    http-check expect status 200",
        (
            f"    default-server inter {_ms(settings.check_interval)} fall {settings.check_fall}"
            f" rise {settings.check_rise} observe layer7 error-limit {settings.error_limit}"
            " on-error mark-down"
        ),
    ]
    for server in servers:
        backup = " backup" if server.backup else ""
        lines.append(f"    server {server.name} {server.address}:{server.port} check{backup}")
    return "\n".join(lines) + "\n"


def find_haproxy() -> str | None:
    """Path of the ``haproxy`` binary (``/usr/sbin`` is not always on ``PATH``), or None."""
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class HAProxyProcess:
    """One ``haproxy -db`` process with a generated configuration; reaped on :meth:`stop`."""

    def __init__(self, servers: Sequence[HAProxyServer], settings: HAProxySettings) -> None:
        binary = find_haproxy()
        if binary is None:
            raise FileNotFoundError("haproxy is not installed (Debian: apt-get install haproxy)")
        self._binary = binary
        self._dir = Path(tempfile.mkdtemp(prefix="mcresolve-haproxy-"))
        self.port = _free_port()
        self.config = render_config(servers, self.port, settings)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, within: float = 10.0) -> None:
        """Spawn HAProxy and wait until its frontend relays a health check to a node."""
        config = self._dir / "haproxy.cfg"
        config.write_text(self.config)
        log = (self._dir / "haproxy.log").open("wb")
        command = [self._binary, "-db", "-f", str(config)]
        setpriv = shutil.which("setpriv")
        if setpriv:
            command = [setpriv, "--pdeathsig", "KILL", "--", *command]
        self._process = subprocess.Popen(  # noqa: ASYNC220 - a fork/exec, milliseconds
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        deadline = time.monotonic() + within
        while True:
            if self._process.poll() is not None:
                text = (self._dir / "haproxy.log").read_text(errors="replace")
                raise RuntimeError(f"haproxy exited with {self._process.returncode}:\n{text}")
            if await _answers(self.port):
                return
            if time.monotonic() > deadline:
                await self.stop()
                raise TimeoutError(f"haproxy did not answer on {self.endpoint} in {within} s")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """SIGTERM, SIGKILL after 2 s; always reaped; directory removed."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 2.0)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 5.0)
        shutil.rmtree(self._dir, ignore_errors=True)


async def _answers(port: int) -> bool:
    with contextlib.suppress(OSError, TimeoutError, asyncio.IncompleteReadError):
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 2.0)
            return line.startswith(b"HTTP/1.1 200")
        finally:
            writer.close()
    return False
