"""Cost of ``EndpointPool.pick()`` with 100 endpoints (target: well under 10 µs).

Run: ``.venv/bin/python benchmarks/bench_pick.py [--endpoints 100] [--number 200000]``

Measures the pool's lock-free pick on its current immutable picker for each strategy, plain,
with a small exclusion set (a retry: the picker draws and rejects), with 60 % excluded (the
picker filters its candidates, O(n)), and with some endpoints ejected and in-flight load so P2C
has real costs to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import timeit

from mcresolve.balancer.outlier import FailureKind
from mcresolve.balancer.picker import PickStrategy
from mcresolve.endpoint import Endpoint
from mcresolve.pool import EndpointPool, PoolPolicy
from mcresolve.sources.static import StaticSource


def measure(fn: object, number: int, repeat: int = 5) -> float:
    """Best-of-``repeat`` median-free per-call time in nanoseconds."""
    times = timeit.repeat(fn, number=number, repeat=repeat)  # type: ignore[arg-type]
    return min(times) / number * 1e9


async def run(endpoints: int, number: int) -> None:
    eps = [
        Endpoint(f"10.0.{i // 250}.{i % 250 + 1}", 9000, datacenter="dc1") for i in range(endpoints)
    ]
    print(f"pick() with {endpoints} endpoints, {number} calls per run, best of 5 runs")
    print(f"{'strategy':<12} {'pick()':>10} {'pick(excl)':>12} {'excl 60%':>10} {'degraded':>10}")
    for strategy in PickStrategy:
        async with EndpointPool(
            StaticSource(eps), policy=PoolPolicy(strategy=strategy), local_datacenter="dc1"
        ) as pool:
            await pool.wait_ready(5)
            exclude = frozenset(e.key for e in eps[:3])
            plain = measure(pool.pick, number)
            excluded = measure(lambda: pool.pick(exclude), number)  # noqa: B023
            most = frozenset(e.key for e in eps[: endpoints * 6 // 10])
            filtered = measure(lambda: pool.pick(most), number // 10)  # noqa: B023
            # Degraded: 10 % ejected, in-flight load on a few endpoints.
            for endpoint in eps[: endpoints // 10]:
                pool.report_failure(endpoint, FailureKind.CONNECT)
            handles = [pool.attempt(e) for e in eps[10:30]]
            degraded = measure(pool.pick, number)
            for handle in handles:
                handle.abandoned()
            print(
                f"{strategy.value:<12} {plain:>8.0f}ns {excluded:>10.0f}ns {filtered:>8.0f}ns "
                f"{degraded:>8.0f}ns"
            )
    samples = [measure(pool.pick, number // 10, 1) for _ in range(20)]
    print(f"P2C-spread: median {statistics.median(samples):.0f} ns over 20 short runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the degraded case ejects endpoints on purpose
    asyncio.run(run(args.endpoints, args.number))


if __name__ == "__main__":
    main()
