"""Command line of the demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from .stack import STORAGE_QUERY, STORAGE_SERVICE, DemoStack


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mcresolve.demo",
        description="Bring up two emulated Consul datacenters with a real SeaweedFS cluster split "
        "across them, and report on them.",
    )
    parser.add_argument(
        "--keep-running", action="store_true", help="keep everything up until Ctrl-C"
    )
    return parser.parse_args(argv)


async def _describe(stack: DemoStack) -> None:
    for dc in stack.layout.datacenters:
        agent = stack.consul.dc(dc)
        print(
            f"{dc} ({stack.layout.clouds[dc]}-like): Consul HTTP {agent.http_url}, "
            f"DNS 127.0.0.1:{agent.dns_port}",
            flush=True,
        )
        health = await stack.client(dc).health_service(STORAGE_SERVICE)
        for entry in health.value:
            status = ",".join(sorted({c.status for c in entry.checks if c.service_id})) or "?"
            print(
                f"  storage {entry.service.id}: {entry.service.address}:{entry.service.port} "
                f"[{status}]",
                flush=True,
            )
        result = await stack.client(dc).query_execute(STORAGE_QUERY)
        endpoints = ", ".join(f"{e.service.address}:{e.service.port}" for e in result.entries)
        print(
            f"  prepared query {STORAGE_QUERY} (Failover NearestN 1): answered by "
            f"{result.datacenter}: {endpoints}",
            flush=True,
        )


async def _run(args: argparse.Namespace) -> int:
    stack = DemoStack()
    try:
        print("demo: starting Consul (dc1, dc2) and SeaweedFS ...", flush=True)
        await stack.start()
        print(f"demo: ready in {stack.startup_seconds:.1f} s", flush=True)
        await _describe(stack)
        if args.keep_running:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(signum, stop.set)
            print("demo: running; Ctrl-C stops", flush=True)
            await stop.wait()
    finally:
        await stack.stop()
        print("demo: stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m mcresolve.demo``."""
    try:
        return asyncio.run(_run(_parse_args(argv)))
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130
