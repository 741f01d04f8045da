"""Figures for bad answers: what one bad answer does to each source, on loopback servers.

Run from a checkout, with ``PYTHONPATH`` at the code to measure::

    PYTHONPATH=src python tests/sources/measure_bad_answers.py

Takes ~45 s (the huge-TTL case waits for the cap).
"""

import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.watch import WatchRegistry
from mcresolve.sources import DnsSource, HealthSource, PreparedQuerySource
from mcresolve.sources.target import parse_target
from sources.scripted import HttpAnswer, ScriptedConsul, ScriptedDns, srv_handler

N1, N2 = "n1.node.dc1.consul.", "n2.node.dc1.consul."
ADDRESSES = {N1: ["127.0.0.1"], N2: ["127.0.0.2"]}


def node(name: str, port: int) -> dict[str, Any]:
    return {
        "Node": {"Node": name, "Address": "127.0.0.1", "Datacenter": "dc1"},
        "Service": {"ID": f"web-{name}", "Service": "web", "Port": port},
        "Checks": [],
    }


def health(*nodes: dict[str, Any]) -> HttpAnswer:
    return HttpAnswer(json.dumps(list(nodes)).encode())


def query(*nodes: dict[str, Any]) -> HttpAnswer:
    body = {"Service": "web", "Nodes": list(nodes), "DNS": {"TTL": ""}, "Datacenter": "dc1"}
    return HttpAnswer(json.dumps(body).encode())


def ports(resolution: Any) -> set[int]:
    return {e.port for e in resolution.endpoints}


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.3f} s"


async def until(source: Any, predicate: Any, within: float) -> float | None:
    started = time.monotonic()
    try:
        async with asyncio.timeout(within):
            async for resolution in source.updates():
                if predicate(resolution):
                    return time.monotonic() - started
    except TimeoutError:
        pass
    return None


async def prepared_query() -> str:
    consul = ScriptedConsul()
    await consul.start()
    consul.query = query(node("n1", 70000))
    async with ConsulClient(ConsulConfig.for_addresses(consul.url)) as client:
        source = PreparedQuerySource(parse_target("consul+query://web?refresh=1s"), client)  # type: ignore[arg-type]
        async with source:
            await until(source, lambda r: True, 5)
            consul.query = query(node("n1", 9001), node("n2", 9002))
            before = source.executions
            took = await until(source, lambda r: r.error is None and ports(r) == {9001, 9002}, 5)
            await asyncio.sleep(5 - (took or 5))
            source.refresh_now()
            await asyncio.sleep(0.5)
            executions = source.executions - before
    await consul.stop()
    return (
        f"prepared query, port 70000: executions in the next 5.5 s (refresh=1s, one "
        f"refresh_now): {executions}; the good answer published after {seconds(took)}"
    )


async def dns_port_zero() -> str:
    server = ScriptedDns()
    await server.start()
    server.handler = srv_handler([(0, N1)], ADDRESSES)
    target = parse_target(f"dns://web.service.consul?server={server.address}&refresh=1s")
    async with DnsSource(target) as source:  # type: ignore[arg-type]
        await until(source, lambda r: True, 5)
        server.handler = srv_handler([(9001, N1), (9002, N2)], ADDRESSES)
        before = len(server.queries)
        took = await until(source, lambda r: r.error is None and len(r.endpoints) == 2, 5)
        await asyncio.sleep(5 - (took or 5))
        queries = len(server.queries) - before
    await server.stop()
    return (
        f"DNS, SRV port 0: queries in the next 5 s (refresh=1s): {queries}; the good answer "
        f"published after {seconds(took)}"
    )


async def health_bad_port() -> str:
    consul = ScriptedConsul()
    await consul.start()
    consul.set_health(health(node("a", 9001), node("b", 9002), node("c", 9003)))
    async with (
        ConsulClient(ConsulConfig.for_addresses(consul.url)) as client,
        WatchRegistry(client) as registry,
    ):
        source = HealthSource(parse_target("consul://web"), registry)  # type: ignore[arg-type]
        async with source:
            await until(source, lambda r: len(r.endpoints) == 3, 5)
            consul.set_health(health(node("a", 9001), node("b", 9002), node("d", 70000)))
            took = await until(source, lambda r: 9003 not in ports(r), 10)
            now = source.current
    await consul.stop()
    assert now is not None
    return (
        f"health, c critical and d on port 70000 in one answer: c left the set after "
        f"{seconds(took)} (waited 10 s); then stale={now.stale}, "
        f"error={'set' if now.error else None}, ports={sorted(ports(now))}"
    )


async def huge_ttl() -> str:
    server = ScriptedDns()
    await server.start()
    server.handler = srv_handler([(9001, N1)], ADDRESSES, ttl=2147483647)
    target = parse_target(f"dns://web.service.consul?server={server.address}&refresh=1s")
    async with DnsSource(target) as source:  # type: ignore[arg-type]
        await until(source, lambda r: len(r.endpoints) == 1, 5)
        server.handler = srv_handler([(9002, N2)], ADDRESSES, ttl=2147483647)
        took = await until(source, lambda r: ports(r) == {9002}, 45)
    await server.stop()
    return f"DNS, SRV TTL 2147483647: the change seen after {seconds(took)} (waited 45 s)"


async def main() -> None:
    for line in await asyncio.gather(
        prepared_query(), dns_port_zero(), health_bad_port(), huge_ttl()
    ):
        print(line)


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL)
    asyncio.run(main())
