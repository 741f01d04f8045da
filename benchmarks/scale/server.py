"""A fast Consul-shaped blocking-query server for the scale benchmark (its own process).

Run: ``python benchmarks/scale/server.py [--port 0]``: prints ``PORT <n>`` once it listens on
127.0.0.1 and serves until it is terminated (SIGTERM) or its standard input closes.

It answers the three Consul endpoints the library uses for stage 2 and stage 3, the way Consul
1.0.8 does (golden recordings), and nothing else:

* ``GET /v1/health/service/<name>`` (the passing instances: ``?passing`` is what every watch of
  the library sends), a blocking query: ``index=0`` or no index answers at once; an index below
  the service's current one answers at once; an index equal to it holds the request until the
  service changes or ``wait`` (default 5 min, capped at 10 min, plus up to ``wait/16`` of
  random jitter) elapses; an index *above* it holds for the full wait even if the data changes
  (Consul's behaviour). Headers: ``X-Consul-Index``, ``X-Consul-Knownleader``,
  ``X-Consul-Lastcontact``, ``X-Consul-Effective-Consistency``.
* ``GET /v1/query/<name>/execute``: a prepared query named like the service, answering its
  passing instances (``X-Consul-Index: 0``; not shuffled, unlike Consul).
* ``GET /v1/agent/self``: the agent's datacenter.

Answers are built from instance entries serialised once (at set-up and when an instance's check
changes) and joined into one body per index, built on the first request that needs it and kept
until the next change, so the server's cost per answer is a memory copy, not a ``json.dumps``.

Control endpoints (under ``/_bench/``, never counted as Consul requests) set up services, run
churn at a given rate inside this process (so the client process spends nothing on driving it)
and report every change with the monotonic time it was applied (``time.perf_counter``, the
system-wide ``CLOCK_MONOTONIC`` on Linux, comparable with the client process's clock), the
request counters and this process's CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

if __package__ in (None, ""):  # run as a script: make ``benchmarks.scale`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.scale.answers import DATACENTER, Instance, fragment, join

#: Consul's wait without ``wait=`` and its cap, seconds (golden recordings).
DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)$")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wait(raw: str | None) -> float:
    """Consul's ``wait`` (a Go duration such as ``60000ms``) in seconds; default 5 min, capped
    at 10 min."""
    if not raw:
        return DEFAULT_WAIT
    match = _DURATION.match(raw)
    if match is None:
        raise ValueError(f"invalid wait {raw!r}")
    seconds = float(match.group(1)) * _UNIT[match.group(2)]
    return DEFAULT_WAIT if seconds <= 0 else min(seconds, MAX_WAIT)


@dataclass(slots=True)
class Counters:
    """Consul requests served since the last reset."""

    health_immediate: int = 0
    health_blocking: int = 0
    #: health answers whose index is newer than the one asked for (the client gets new data)
    health_new_data: int = 0
    #: blocking requests that ended because ``wait`` elapsed (same index returned)
    health_wait_elapsed: int = 0
    executions: int = 0
    agent_self: int = 0
    body_bytes: int = 0
    #: seconds spent joining bodies (one per index that was asked for)
    builds: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "health_immediate": self.health_immediate,
            "health_blocking": self.health_blocking,
            "health_requests": self.health_immediate + self.health_blocking,
            "health_new_data": self.health_new_data,
            "health_wait_elapsed": self.health_wait_elapsed,
            "executions": self.executions,
            "agent_self": self.agent_self,
            "body_bytes": self.body_bytes,
            "builds": len(self.builds),
            "build_max_s": max(self.builds, default=0.0),
            "build_mean_s": sum(self.builds) / len(self.builds) if self.builds else 0.0,
        }


class Service:
    """One service: its instances' serialised entries (``None`` while critical), its index and
    the body for that index."""

    def __init__(self, name: str, instances: int, index: int) -> None:
        self.name = name
        self.instances = [Instance(name, n) for n in range(instances)]
        self.fragments: list[bytes | None] = [fragment(i) for i in self.instances]
        self.index = index
        self.changed = asyncio.Event()
        self._body: bytes | None = None
        #: instances made critical by churn, oldest first
        self.pending: collections.deque[int] = collections.deque()
        self._next = 0

    def body(self, counters: Counters) -> bytes:
        if self._body is None:
            started = time.perf_counter()
            self._body = join([f for f in self.fragments if f is not None])
            counters.builds.append(time.perf_counter() - started)
        return self._body

    def passing(self) -> list[str]:
        """The service ids of the passing instances."""
        return [
            i.service_id
            for i, f in zip(self.instances, self.fragments, strict=True)
            if f is not None
        ]

    def flip(self, number: int, critical: bool, index: int) -> None:
        instance = self.instances[number]
        self.fragments[number] = None if critical else fragment(instance, index=index)
        self.index = index
        self._body = None
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def next_change(self, hold: int) -> tuple[int, bool]:
        """The next churn step: restore the oldest critical instance once ``hold`` are
        critical, else make the next passing one critical. Returns (instance, critical)."""
        if len(self.pending) >= max(1, hold) or len(self.pending) >= len(self.instances):
            return self.pending.popleft(), False
        while self.fragments[self._next] is None:
            self._next = (self._next + 1) % len(self.instances)
        number = self._next
        self._next = (self._next + 1) % len(self.instances)
        self.pending.append(number)
        return number, True


class ScaleServer:
    """The state and handlers (see the module doc)."""

    def __init__(self, seed: int = 1) -> None:
        self.services: dict[str, Service] = {}
        self.raft_index = 100
        self.counters = Counters()
        self.changes: list[dict[str, Any]] = []
        #: health answers sent: [service, index, monotonic time]
        self.answers: list[tuple[str, int, float]] = []
        self.churn_task: asyncio.Task[None] | None = None
        self.churn_late = 0
        self._rng = random.Random(seed)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/health/service/{name}", self.health_service)
        app.router.add_get("/v1/query/{name}/execute", self.query_execute)
        app.router.add_get("/v1/agent/self", self.agent_self)
        app.router.add_post("/_bench/services", self.set_services)
        app.router.add_post("/_bench/change", self.one_change)
        app.router.add_post("/_bench/churn", self.start_churn)
        app.router.add_post("/_bench/reset", self.reset)
        app.router.add_post("/_bench/report", self.report)
        app.router.add_get("/_bench/churn", self.churn_state)
        app.router.add_get("/_bench/body/{name}", self.raw_body)
        return app

    # --- Consul -----------------------------------------------------------------------------

    def _headers(self, index: int) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-Consul-Effective-Consistency": "leader",
            "X-Consul-Index": str(index),
            "X-Consul-Knownleader": "true",
            "X-Consul-Lastcontact": "0",
        }

    async def health_service(self, request: web.Request) -> web.Response:
        service = self.services.get(request.match_info["name"])
        raw_index = request.query.get("index")
        asked = int(raw_index) if raw_index else 0
        if service is None:
            return web.Response(body=b"[]", headers=self._headers(self.raft_index))
        if asked <= 0:
            self.counters.health_immediate += 1
        else:
            self.counters.health_blocking += 1
            wait = parse_wait(request.query.get("wait"))
            wait += self._rng.random() * wait / 16
            if asked > service.index:
                await asyncio.sleep(wait)  # Consul holds a future index for the whole wait
            elif asked == service.index:
                try:
                    async with asyncio.timeout(wait):
                        await service.changed.wait()
                except TimeoutError:
                    pass
        if service.index > asked:
            self.counters.health_new_data += 1
        elif asked > 0:
            self.counters.health_wait_elapsed += 1
        body = service.body(self.counters)
        self.counters.body_bytes += len(body)
        self.answers.append((service.name, service.index, time.perf_counter()))
        return web.Response(body=body, headers=self._headers(service.index))

    async def query_execute(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        service = self.services.get(name)
        if service is None:
            return web.Response(status=404, text="Query not found")
        self.counters.executions += 1
        nodes = service.body(self.counters)
        body = (
            b'{"Service":'
            + json.dumps(name).encode()
            + b',"Nodes":'
            + nodes
            + b',"DNS":{"TTL":""},"Datacenter":"'
            + DATACENTER.encode()
            + b'","Failovers":0,"Index":0,"LastContact":0,"KnownLeader":true,'
            b'"ConsistencyLevel":"leader"}'
        )
        self.counters.body_bytes += len(body)
        return web.Response(body=body, headers=self._headers(0))

    async def agent_self(self, request: web.Request) -> web.Response:
        self.counters.agent_self += 1
        config = {"Config": {"Datacenter": DATACENTER, "NodeName": "scale-bench-agent"}}
        return web.json_response(config)

    # --- control ----------------------------------------------------------------------------

    async def set_services(self, request: web.Request) -> web.Response:
        """``{"services": [{"name": ..., "instances": n}, ...]}``: (re)create these services."""
        payload = await request.json()
        for spec in payload["services"]:
            self.raft_index += 1
            self.services[spec["name"]] = Service(spec["name"], spec["instances"], self.raft_index)
        return web.json_response({"services": len(self.services), "index": self.raft_index})

    def _apply(self, name: str, hold: int) -> dict[str, Any]:
        service = self.services[name]
        number, critical = service.next_change(hold)
        self.raft_index += 1
        service.flip(number, critical, self.raft_index)
        instance = service.instances[number]
        record = {
            "service": name,
            "service_id": instance.service_id,
            "address": instance.address,
            "port": instance.port,
            "kind": "removed" if critical else "added",
            "index": self.raft_index,
            "applied_at": time.perf_counter(),
        }
        self.changes.append(record)
        return record

    async def one_change(self, request: web.Request) -> web.Response:
        """``{"service": name, "hold": n}``: one churn step now; answers its record."""
        payload = await request.json()
        return web.json_response(self._apply(payload["service"], int(payload.get("hold", 1))))

    async def start_churn(self, request: web.Request) -> web.Response:
        """``{"services": [names], "rate": changes/s, "seconds": s, "hold": n}``: apply changes at
        ``rate`` for ``seconds`` on services picked at random from ``services``."""
        payload = await request.json()
        if self.churn_task is not None and not self.churn_task.done():
            return web.json_response({"error": "churn already running"}, status=409)
        names = list(payload["services"])
        rate = float(payload["rate"])
        count = max(1, round(rate * float(payload["seconds"])))
        hold = int(payload.get("hold", 1))
        self.churn_late = 0
        self.churn_task = asyncio.create_task(self._churn(names, rate, count, hold))
        return web.json_response({"changes": count})

    async def _churn(self, names: list[str], rate: float, count: int, hold: int) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for k in range(count):
            due = start + k / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.01:
                self.churn_late += 1
            name = names[0] if len(names) == 1 else self._rng.choice(names)
            self._apply(name, hold)

    async def churn_state(self, request: web.Request) -> web.Response:
        """Whether the churn is over (a small answer: polled while the client is measured)."""
        done = self.churn_task is None or self.churn_task.done()
        return web.json_response({"done": done, "late": self.churn_late})

    async def reset(self, request: web.Request) -> web.Response:
        self.counters = Counters()
        self.changes = []
        self.answers = []
        return web.json_response({"cpu": time.process_time(), "at": time.perf_counter()})

    async def report(self, request: web.Request) -> web.Response:
        """Counters, changes so far, whether churn is done, CPU time and the passing set of the
        services named in ``{"services": [...]}``."""
        payload = await request.json()
        done = self.churn_task is None or self.churn_task.done()
        passing = {
            name: self.services[name].passing()
            for name in payload.get("services", [])
            if name in self.services
        }
        return web.json_response(
            {
                "done": done,
                "late": self.churn_late,
                "counters": self.counters.as_json(),
                "changes": self.changes,
                "answers": self.answers,
                "cpu": time.process_time(),
                "at": time.perf_counter(),
                "passing": passing,
            }
        )

    async def raw_body(self, request: web.Request) -> web.Response:
        """The current ``?passing`` body of a service, not counted (for the ``json.loads``
        floor)."""
        service = self.services[request.match_info["name"]]
        return web.Response(body=service.body(Counters()), content_type="application/json")


async def serve(port: int) -> None:
    server = ScaleServer()
    runner = web.AppRunner(server.app(), access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"PORT {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    # a parent that dies closes our stdin: stop then too
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
