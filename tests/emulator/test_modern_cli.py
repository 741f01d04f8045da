"""``python -m mcresolve.testing.consul --version``: the profile chosen on the command line,
for all datacenters or per datacenter (a real process on loopback, ended by its PID)."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import aiohttp
import pytest

TIMEOUT = 30.0


async def _agent_version(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/v1/agent/self") as resp:
        body = await resp.json()
    return str(body["Config"]["Version"])


@pytest.mark.parametrize(
    ("argument", "expected"),
    [("1.21", {"dc1": "1.21.3", "dc2": "1.21.3"}), ("dc2=2.x", {"dc1": "1.0.8", "dc2": "2.1.0"})],
)
async def test_version_option(argument: str, expected: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mcresolve.testing.consul",
        "--datacenters",
        "dc1,dc2",
        "--version",
        argument,
        "--json",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
        info = json.loads(line)
        got = {dc: await _agent_version(item["http"]) for dc, item in info.items()}
        assert got == expected
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), TIMEOUT)
