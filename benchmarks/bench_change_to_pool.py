"""Delay from a Consul change to the pool's update (target: p99 under 50 ms on loopback).

Run: ``.venv/bin/python benchmarks/bench_change_to_pool.py [--flips 200]``

Starts the in-process Consul emulator (real HTTP on 127.0.0.1), registers three instances with
TTL checks and opens an :class:`~mcresolve.pool.EndpointPool` on a stage-2 target (blocking
health watch) and on a stage-3 target (prepared query, re-executed when the local health watch
fires). Each flip sets one check critical (or back to passing) and measures the time until the
pool's REMOVED (or ADDED) event callback runs, i.e. until the new picker is in place.

Flips are ``--gap`` seconds apart (default 100 ms). Stage 3 executes its prepared query at most
once per ``min_interval`` (50 ms) to absorb bursts, so with a gap below 50 ms its delay measures
that rate limit (~45 ms), not the change path.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.blocking import BlockingPolicy
from mcresolve.consul.watch import WatchPolicy, WatchRegistry
from mcresolve.pool import EndpointPool
from mcresolve.pool.events import EventKind, PoolEvent
from mcresolve.testing.consul import ConsulEmulator
from mcresolve.timing import BackoffPolicy

SERVICE = "bench-minio"
INSTANCES = [("bench-a", 9001), ("bench-b", 9002), ("bench-c", 9003)]
#: The production blocking wait, without the rate limiter's minimum interval between requests
#: (the default 0 s burst would make back-to-back flips measure the limiter, not the path).
WATCH = WatchPolicy(
    blocking=BlockingPolicy(wait=300.0, min_interval=0.0, burst=10),
    backoff=BackoffPolicy(base=0.05, cap=1.0),
)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def measure(
    consul: ConsulEmulator, pool: EndpointPool, flips: int, gap: float
) -> tuple[list[float], int]:
    """Flip checks ``flips`` times; return the delays (seconds) and how many timed out."""
    dc1 = consul.dc("dc1")
    arrived = asyncio.Event()
    expected: list[tuple[EventKind, int]] = []

    def on_event(event: PoolEvent) -> None:
        if expected and event.endpoint is not None:
            kind, port = expected[0]
            if event.kind is kind and event.endpoint.port == port:
                arrived.set()

    unsubscribe = pool.events.subscribe(on_event)
    delays: list[float] = []
    missed = 0
    try:
        for i in range(flips):
            service_id, port = INSTANCES[(i // 2) % len(INSTANCES)]
            critical = i % 2 == 0
            expected[:] = [(EventKind.REMOVED if critical else EventKind.ADDED, port)]
            arrived.clear()
            started = time.perf_counter()
            dc1.set_check_status(f"{service_id}-ttl", "critical" if critical else "passing")
            try:
                async with asyncio.timeout(5.0):
                    await arrived.wait()
            except TimeoutError:
                missed += 1
                continue
            delays.append(time.perf_counter() - started)
            await asyncio.sleep(gap)  # time between two Consul changes
    finally:
        unsubscribe()
    return delays, missed


def report(name: str, delays: list[float], missed: int) -> None:
    ms = [d * 1000 for d in delays]
    print(
        f"{name:<8} n={len(ms):<4} p50={statistics.median(ms):6.2f} ms  "
        f"p90={percentile(ms, 0.90):6.2f} ms  p99={percentile(ms, 0.99):6.2f} ms  "
        f"max={max(ms):6.2f} ms  missed={missed}"
    )


async def run(flips: int, gap: float) -> None:
    async with ConsulEmulator(["dc1", "dc2"]) as consul:
        client = ConsulClient(ConsulConfig.for_addresses(consul.dc("dc1").http_url))
        registry = WatchRegistry(client, WATCH)
        try:
            for service_id, port in INSTANCES:
                await client.agent_service_register(
                    {
                        "Name": SERVICE,
                        "ID": service_id,
                        "Port": port,
                        "Address": "127.0.0.1",
                        "Check": {"CheckID": f"{service_id}-ttl", "TTL": "1h", "Status": "passing"},
                    }
                )
            await client.query_create({"Name": SERVICE, "Service": {"Service": SERVICE}})
            print(f"{flips} check flips per stage, {gap * 1000:g} ms apart, emulator on loopback")
            for name, target in (
                ("stage 2", f"consul://{SERVICE}"),
                ("stage 3", f"consul+query://{SERVICE}?refresh=10m"),
            ):
                async with EndpointPool(target, registry=registry, consul=client) as pool:
                    await pool.wait_ready(10)
                    await asyncio.sleep(0.05)
                    delays, missed = await measure(consul, pool, flips, gap)
                    report(name, delays, missed)
        finally:
            await registry.aclose()
            await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flips", type=int, default=200)
    parser.add_argument(
        "--gap",
        type=float,
        default=0.1,
        help="seconds between flips (stage 3 re-executes at most every 50 ms: min_interval)",
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    asyncio.run(run(args.flips, args.gap))


if __name__ == "__main__":
    main()
