"""Debian's chromium, headless, driven through the Chrome DevTools Protocol over aiohttp.

:func:`headless_chromium` starts ``/usr/bin/chromium`` in its own process group with a fresh
profile and ``--remote-debugging-port=0``, reads the port it picked from the profile's
``DevToolsActivePort`` file, and connects to the browser's websocket. The whole process group is
SIGKILLed and reaped on exit, whatever happened. :class:`Page` is one tab attached with a flat
session: navigate/reload and wait for the load event, evaluate JavaScript, take screenshots.

No WebDriver and no extra dependency: a CDP message is JSON over the websocket, ``id`` for
commands and their answers, ``method``/``params`` (plus ``sessionId``) for events.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_HINT = "run scripts/install-debian-tools.sh chromium (installs Debian's chromium)"

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-default-browser-check",
    "--no-proxy-server",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,900",
    "--remote-debugging-port=0",
)


def chromium_installed() -> bool:
    """Whether Debian's chromium is installed (``/usr/bin/chromium``, executable)."""
    return CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)


class CdpError(RuntimeError):
    """A CDP command answered with an error, or the browser went away."""


class Cdp:
    """One websocket to the browser: commands (awaited by id) and events (awaited by name)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._expected: list[tuple[str, str | None, asyncio.Future[dict[str, Any]]]] = []
        self.events: list[tuple[str, str | None, dict[str, Any]]] = []
        self._reader = asyncio.create_task(self._read())

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session_id: str | None = None,
        within: float = 30.0,
    ) -> dict[str, Any]:
        """Send a command; returns its ``result`` (raises :class:`CdpError` on an error)."""
        message_id = next(self._ids)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[message_id] = answer
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        await self._ws.send_str(json.dumps(message))
        try:
            reply = await asyncio.wait_for(answer, within)
        finally:
            self._answers.pop(message_id, None)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    def expect(self, method: str, session_id: str | None = None) -> asyncio.Future[dict[str, Any]]:
        """A future for the next ``method`` event (register it before triggering the event)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._expected.append((method, session_id, future))
        return future

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                message = json.loads(frame.data)
                if "id" in message:
                    answer = self._answers.get(message["id"])
                    if answer is not None and not answer.done():
                        answer.set_result(message)
                    continue
                method, session = message.get("method", ""), message.get("sessionId")
                params = message.get("params", {})
                self.events.append((method, session, params))
                for entry in list(self._expected):
                    if entry[0] == method and entry[1] in (None, session):
                        self._expected.remove(entry)
                        if not entry[2].done():
                            entry[2].set_result(params)
        finally:
            gone = CdpError("the browser's websocket closed")
            for future in [*self._answers.values(), *(e[2] for e in self._expected)]:
                if not future.done():
                    future.set_exception(gone)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()


@dataclass
class Page:
    """One tab, attached with a flat session (``sessionId`` on every message)."""

    cdp: Cdp
    session_id: str
    target_id: str
    console: list[str] = field(default_factory=list)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.cdp.call(method, params, session_id=self.session_id)

    async def navigate(self, url: str, within: float = 30.0) -> None:
        """Go to ``url`` and return after its load event (every image loaded or failed)."""
        loaded = self.cdp.expect("Page.loadEventFired", self.session_id)
        result = await self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            loaded.cancel()
            raise CdpError(f"navigation to {url} failed: {result['errorText']}")
        await asyncio.wait_for(loaded, within)

    async def reload(self, within: float = 30.0) -> None:
        """Reload bypassing the cache and return after the load event."""
        loaded = self.cdp.expect("Page.loadEventFired", self.session_id)
        await self.call("Page.reload", {"ignoreCache": True})
        await asyncio.wait_for(loaded, within)

    async def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript (promises awaited) and return its JSON value."""
        result = await self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in result:
            raise CdpError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> bytes:
        """Save a PNG of the whole page (beyond the viewport) to ``path``; returns its bytes."""
        metrics = await self.call("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        shot = await self.call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": size["height"],
                    "scale": 1,
                },
            },
        )
        data = base64.b64decode(shot["data"])
        await asyncio.to_thread(_write_file, path, data)
        return data


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@dataclass
class Browser:
    """A running headless chromium and the CDP connection to it."""

    process: asyncio.subprocess.Process
    cdp: Cdp
    version: str

    async def new_page(self) -> Page:
        """Open a blank tab with the HTTP cache disabled (every reload hits the server)."""
        created = await self.cdp.call("Target.createTarget", {"url": "about:blank"})
        target_id = created["targetId"]
        attached = await self.cdp.call(
            "Target.attachToTarget", {"targetId": target_id, "flatten": True}
        )
        page = Page(self.cdp, attached["sessionId"], target_id)
        await page.call("Page.enable")
        await page.call("Network.enable")
        await page.call("Network.setCacheDisabled", {"cacheDisabled": True})
        return page


async def _devtools_endpoint(
    profile: Path, process: asyncio.subprocess.Process, log: Path, within: float
) -> tuple[int, str]:
    """Port and browser websocket path from ``DevToolsActivePort`` (polled with a deadline)."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + within
    while True:
        if process.returncode is not None:
            raise CdpError(
                f"chromium exited with {process.returncode} before DevTools was up:\n" + _tail(log)
            )
        with contextlib.suppress(FileNotFoundError):
            lines = marker.read_text().split()
            if len(lines) >= 2 and lines[0].isdigit():
                return int(lines[0]), lines[1]
        if time.monotonic() > deadline:
            raise CdpError(f"no {marker} after {within} s:\n" + _tail(log))
        await asyncio.sleep(0.05)


def live_group_members(pgid: int) -> list[int]:
    """PIDs of the live (not zombie) processes of process group ``pgid``, from ``/proc``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            # /proc/<pid>/stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


async def _wait_group_gone(pgid: int, within: float) -> None:
    deadline = time.monotonic() + within
    while live_group_members(pgid) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


def _tail(log: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return "(no chromium output)"


@contextlib.asynccontextmanager
async def headless_chromium(start_timeout: float = 60.0) -> AsyncIterator[Browser]:
    """Start headless chromium with a fresh profile and connect over CDP.

    The process runs in its own session/process group (and, through ``setpriv --pdeathsig``,
    dies with this Python process); on exit the whole group is SIGKILLed, the browser reaped and
    the group awaited until none of its processes is alive (:func:`live_group_members`, pgid =
    ``browser.process.pid``).
    """
    if not chromium_installed():
        raise FileNotFoundError(f"{CHROMIUM} is missing: {INSTALL_HINT}")
    workdir = Path(tempfile.mkdtemp(prefix="mcresolve-chromium-"))
    profile = workdir / "profile"
    profile.mkdir()
    log = workdir / "chromium.log"
    command = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"]
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    if setpriv is not None:
        command = [setpriv, "--pdeathsig", "KILL", "--", *command]
    env = {**os.environ, "HOME": str(workdir)}
    process: asyncio.subprocess.Process | None = None
    session: aiohttp.ClientSession | None = None
    cdp: Cdp | None = None
    try:
        with log.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        port, path = await _devtools_endpoint(profile, process, log, start_timeout)
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        async with session.get(f"http://127.0.0.1:{port}/json/version") as answer:
            version = str((await answer.json())["Browser"])
        ws = await session.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0)
        cdp = Cdp(ws)
        yield Browser(process, cdp, version)
    finally:
        try:
            if cdp is not None:
                await cdp.close()
            if session is not None:
                await session.close()
        finally:
            if process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
                await _wait_group_gone(process.pid, within=10.0)
            shutil.rmtree(workdir, ignore_errors=True)
