"""Side by side: a plain httpx client vs mcresolve's pool transport when one of three nodes fails.

Run from the repository root::

    PYTHONPATH=src python -m tests.http_clients.side_by_side [--requests 30]

Three loopback servers behind fault proxies are registered in an emulated Consul as
``billing``. The plain client does what a client without the pool does with a service name:
each request goes to the next of the three addresses (DNS round robin), no retry, httpx's
default 5 s timeout. The transport client asks for ``http://billing.service.consul/`` with the
pool's defaults. One node is broken before the run; the table shows failed requests, latency and
the run's duration.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.watch import WatchRegistry
from mcresolve.http.httpx import AsyncPoolTransport
from mcresolve.testing.consul import ConsulEmulator
from mcresolve.testing.faultproxy import FaultProxy, S3ErrorSpec
from support import FAST_WATCH

from .conftest import BillingServer, register

FAULTS = ["none", "refuse", "reset", "blackhole", "503"]


def breaker(proxy: FaultProxy, fault: str) -> None:
    if fault == "refuse":
        proxy.refuse()
    elif fault == "reset":
        proxy.reset()
    elif fault == "blackhole":
        proxy.blackhole()
    elif fault == "503":
        proxy.answer_error(S3ErrorSpec("ServiceUnavailable", 503, "unavailable", None))


async def run(
    send: Callable[[], Awaitable[httpx.Response]], count: int
) -> tuple[int, list[float], float]:
    failed = 0
    latencies: list[float] = []
    began = time.perf_counter()
    for _ in range(count):
        started = time.perf_counter()
        try:
            response = await send()
            failed += response.status_code >= 500
        except Exception:
            failed += 1
        latencies.append(time.perf_counter() - started)
    return failed, latencies, time.perf_counter() - began


def row(client: str, fault: str, count: int, result: tuple[int, list[float], float]) -> str:
    failed, latencies, total = result
    p50 = statistics.median(latencies) * 1000
    worst = max(latencies) * 1000
    return (
        f"| {fault} | {client} | {failed}/{count} | {p50:.1f} ms | {worst:.0f} ms | {total:.2f} s |"
    )


async def scenario(fault: str, count: int) -> list[str]:
    servers = [await BillingServer(f"billing-{i}").start() for i in range(3)]
    proxies = [await FaultProxy("127.0.0.1", s.port).start() for s in servers]
    rows = []
    try:
        async with ConsulEmulator(["dc1"]) as consul:
            config = ConsulConfig.for_addresses(consul.dc("dc1").http_url)
            client = ConsulClient(config)
            registry = WatchRegistry(client, FAST_WATCH)
            await register(client, proxies)
            addresses = itertools.cycle([f"http://127.0.0.1:{p.port}" for p in proxies])
            transport = AsyncPoolTransport(pool_options={"consul": client, "registry": registry})
            url = "http://billing.service.consul/invoices"
            async with (
                httpx.AsyncClient() as plain,
                httpx.AsyncClient(transport=transport) as pooled,
            ):
                for _ in proxies:  # warm up both: connections to every node, the pool started
                    await plain.get(f"{next(addresses)}/warm-up")
                    await pooled.get(url)
                breaker(proxies[1], fault)
                result = await run(lambda: plain.get(f"{next(addresses)}/invoices"), count)
                rows.append(row("plain httpx (DNS round robin)", fault, count, result))
                result = await run(lambda: pooled.get(url), count)
                rows.append(row("mcresolve.http.httpx transport", fault, count, result))
            await registry.aclose()
            await client.aclose()
    finally:
        for proxy in proxies:
            await proxy.aclose()
        for server in servers:
            await server.stop()
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    print("| node 2 of 3 | client | failed | p50 | worst | run |")
    print("|---|---|---|---|---|---|")
    for fault in FAULTS:
        for line in await scenario(fault, args.requests):
            print(line, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
