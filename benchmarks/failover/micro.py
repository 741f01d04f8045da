"""Micro numbers next to the failover results: Consul requests of an idle watched service
(measured here, through the counting relays) and the other micro benchmarks of
``benchmarks/`` (run as scripts; their output is kept as they print it)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from benchmarks.failover.environment import BenchEnvironment
from benchmarks.failover.peers import PeerSettings, open_peer

__all__ = ["MICRO_SCRIPTS", "measure_idle_consul", "run_micro_scripts"]

MICRO_SCRIPTS: tuple[str, ...] = (
    "bench_pick.py",
    "bench_change_to_pool.py",
    "bench_minio_overhead.py",
)
"""The other micro benchmarks of ``benchmarks/`` (owned by their authors)."""


async def measure_idle_consul(
    env: BenchEnvironment, kinds: tuple[str, ...], seconds: float, settings: PeerSettings
) -> dict[str, float]:
    """Consul requests per minute of one idle client per stage (no traffic, no change)."""
    await env.heal()
    peers = [await open_peer(kind, env, settings) for kind in kinds]
    try:
        start = {p.kind: p.consul_requests for p in peers}
        await asyncio.sleep(seconds)
        return {
            p.kind: round((p.consul_requests - start[p.kind]) * 60.0 / seconds, 2) for p in peers
        }
    finally:
        for peer in peers:
            await peer.close()
        await env.close_relays()


def run_micro_scripts(root: Path, timeout: float = 600.0) -> dict[str, dict[str, object]]:
    """Run each micro benchmark script that exists; keep its exit code and last output lines."""
    out: dict[str, dict[str, object]] = {}
    for name in MICRO_SCRIPTS:
        script = root / "benchmarks" / name
        if not script.exists():
            out[name] = {"status": "not present in benchmarks/ at the time of the run"}
            continue
        try:
            done = subprocess.run(
                [sys.executable, str(script)],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            out[name] = {"status": f"timed out after {timeout:.0f} s"}
            continue
        lines = (done.stdout or "").strip().splitlines()[-40:]
        out[name] = {"status": f"exit {done.returncode}", "output": "\n".join(lines)}
    return out
