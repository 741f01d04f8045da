"""Child processes of the demo (storefront instances, the seeding command): each in its own
process group, killed with its parent (``setpriv --pdeathsig KILL`` when available), always reaped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STOREFRONT_EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "storefront"
"""Where the example storefront lives in a source checkout."""
PACKAGED_STOREFRONT = "mcresolve.demo.storefront"
"""The same storefront as shipped inside the wheel (``mcresolve[demo]``)."""


@dataclass(frozen=True)
class StorefrontCode:
    """How to run the storefront: ``python -m <module>`` (and ``<module>.seed``), with
    ``path`` prepended to ``PYTHONPATH`` (``None``: importable as installed)."""

    module: str
    path: str | None


def storefront_code(example: Path = STOREFRONT_EXAMPLE) -> StorefrontCode:
    """The example in a source checkout when there is one (what its tests and docs edit),
    else the copy the wheel ships as :data:`PACKAGED_STOREFRONT`."""
    if (example / "storefront" / "__init__.py").is_file():
        return StorefrontCode("storefront", str(example))
    if importlib.util.find_spec(PACKAGED_STOREFRONT) is not None:
        return StorefrontCode(PACKAGED_STOREFRONT, None)
    raise ProcessError(
        "the demo's storefront is missing: run the demo from a source checkout or install "
        "the mcresolve wheel with its [demo] extra"
    )


class ProcessError(RuntimeError):
    """A child process failed to start or exited with an error (the message has its output)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (so that a restarted process can keep its port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def child_env(extra: Mapping[str, str], code: StorefrontCode | None = None) -> dict[str, str]:
    """The environment of a storefront child: ours, the storefront's code on ``PYTHONPATH``
    (from a checkout), ``extra``."""
    env = dict(os.environ)
    path = (code or storefront_code()).path
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([path, *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def _command(args: Sequence[str]) -> list[str]:
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
    return [*prefix, sys.executable, *args]


class ChildProcess:
    """One child process whose output is kept (last lines) and watched for a ready line."""

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> None:
        self.name = name
        self.args = list(args)
        self.env = dict(env)
        self.process: asyncio.subprocess.Process | None = None
        self.output: collections.deque[str] = collections.deque(maxlen=40)
        self._reader: asyncio.Task[None] | None = None
        self._ready_line: str | None = None
        self._ready = asyncio.Event()
        self._ready_prefix = ""

    @property
    def pid(self) -> int | None:
        """The child's PID while it runs."""
        return self.process.pid if self.process and self.process.returncode is None else None

    @property
    def running(self) -> bool:
        """Started and not exited."""
        return self.process is not None and self.process.returncode is None

    def describe_output(self) -> str:
        """The last lines the child printed."""
        return "\n".join(f"    {line}" for line in self.output) or "    (no output)"

    async def start(self, *, ready_prefix: str = "", within: float = 30.0) -> str:
        """Start it; with ``ready_prefix``, wait for the line starting with it and return the
        line's remainder (otherwise return '')."""
        if self.running:
            raise ProcessError(f"{self.name} is already running")
        self._ready = asyncio.Event()
        self._ready_line = None
        self._ready_prefix = ready_prefix
        self.output.clear()
        self.process = await asyncio.create_subprocess_exec(
            *_command(self.args),
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = asyncio.create_task(self._read(self.process))
        if not ready_prefix:
            return ""
        exited = asyncio.create_task(self.process.wait())
        ready = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait({exited, ready}, timeout=within, return_when="FIRST_COMPLETED")
        finally:
            exited.cancel()
            ready.cancel()
        if self._ready_line is None:
            await self.kill()
            raise ProcessError(
                f"{self.name} did not print {ready_prefix!r} within {within:.0f} s "
                f"(exit status {self.process.returncode}):\n{self.describe_output()}"
            )
        return self._ready_line

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while True:
            raw = await process.stdout.readline()
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip()
            self.output.append(line)
            if (
                self._ready_line is None
                and self._ready_prefix
                and line.startswith(self._ready_prefix)
            ):
                self._ready_line = line[len(self._ready_prefix) :].strip()
                self._ready.set()

    async def wait(self, within: float) -> int:
        """Wait for the exit (``ProcessError`` after ``within`` seconds; the child is killed)."""
        assert self.process is not None
        try:
            async with asyncio.timeout(within):
                code = await self.process.wait()
        except TimeoutError:
            await self.kill()
            raise ProcessError(
                f"{self.name} did not finish within {within:.0f} s:\n{self.describe_output()}"
            ) from None
        await self._finish_reader()
        return code

    def _signal_group(self, signum: int) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    async def _finish_reader(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._reader
            self._reader.cancel()
            self._reader = None

    async def kill(self) -> None:
        """SIGKILL the process group and reap (what a crash looks like)."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        await self.process.wait()
        await self._finish_reader()

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM (the storefront drains and deregisters), SIGKILL after ``grace``; reaped."""
        if self.process is None:
            return
        if self.process.returncode is None:
            self._signal_group(signal.SIGTERM)
            deadline = time.monotonic() + grace
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self.process.wait()
        await self.kill()


def kill_now(children: Sequence[ChildProcess]) -> None:
    """Synchronous last resort (atexit / finally without a loop): SIGKILL every child group."""
    for child in children:
        if child.process is not None and child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)
