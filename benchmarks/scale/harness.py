"""The client side of the scale benchmark: the server process, event recording, measurements.

Everything here runs in the benchmark's own process, which is the measured client: the pools,
their watches and their Consul client. The server (``server.py``) runs in a child process so its
CPU is not counted; it drives churn itself, so the client spends nothing on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import io
import json
import pstats
import statistics
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from benchmarks.scale.analysis import (
    Answer,
    Change,
    LatencyStats,
    Observation,
    latency_summary,
    match_changes,
)

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.blocking import BlockingPolicy, is_change
from mcresolve.consul.models import parse_entries
from mcresolve.consul.watch import WatchPolicy, WatchRegistry
from mcresolve.pool import EndpointPool
from mcresolve.pool.events import EventKind, PoolEvent
from mcresolve.sources.health import entries_to_endpoints

SERVER = Path(__file__).resolve().with_name("server.py")
#: The local datacenter given to every pool (the agent lookup is not what is measured).
DATACENTER = "dc1"


def check_clock() -> None:
    """Latencies subtract ``perf_counter`` readings of two processes: only valid when it is the
    system-wide monotonic clock (Linux)."""
    implementation = time.get_clock_info("perf_counter").implementation
    if "CLOCK_MONOTONIC" not in implementation:
        raise RuntimeError(f"perf_counter is {implementation}: not comparable across processes")


class ScaleServer:
    """The server child process and a control session to it (``/_bench/*``)."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))

    @property
    def config(self) -> ConsulConfig:
        """A Consul configuration pointing at the server."""
        return ConsulConfig.for_addresses(f"127.0.0.1:{self.port}")

    async def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        async with self._session.post(self.url + path, json=payload) as response:
            response.raise_for_status()
            result: dict[str, Any] = await response.json()
            return result

    async def get(self, path: str, params: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
        async with self._session.get(self.url + path, params=list(params)) as response:
            response.raise_for_status()
            result: dict[str, Any] = await response.json()
            return result

    async def body(self, service: str) -> bytes:
        async with self._session.get(f"{self.url}/_bench/body/{service}") as response:
            response.raise_for_status()
            return await response.read()

    async def services(self, specs: list[tuple[str, int]]) -> None:
        await self.post(
            "/_bench/services", {"services": [{"name": n, "instances": i} for n, i in specs]}
        )

    async def reset(self) -> dict[str, Any]:
        return await self.post("/_bench/reset", {})

    async def churn(self, services: list[str], rate: float, seconds: float, hold: int) -> int:
        result = await self.post(
            "/_bench/churn", {"services": services, "rate": rate, "seconds": seconds, "hold": hold}
        )
        return int(result["changes"])

    async def change(self, service: str, hold: int = 1) -> dict[str, Any]:
        return await self.post("/_bench/change", {"service": service, "hold": hold})

    async def report(self, services: Iterable[str] = ()) -> dict[str, Any]:
        return await self.post("/_bench/report", {"services": list(services)})

    async def wait_churn_done(self) -> dict[str, Any]:
        """Poll the churn's state (a few bytes, 4 times a second) until it is over."""
        while True:
            state = await self.get("/_bench/churn")
            if state["done"]:
                return state
            await asyncio.sleep(0.25)

    async def close(self) -> None:
        await self._session.close()
        if self.process.returncode is None:
            self.process.terminate()
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@contextlib.asynccontextmanager
async def scale_server() -> AsyncIterator[ScaleServer]:
    """Start ``server.py`` in a child process (loopback, port 0) and stop it by its PID."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SERVER),
        "--port",
        "0",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = (await process.stdout.readline()).decode()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if not line.startswith("PORT "):
        process.kill()
        await process.wait()
        raise RuntimeError(f"scale server did not start: {line!r}")
    server = ScaleServer(process, int(line.split()[1]))
    try:
        yield server
    finally:
        await server.close()


class Recorder:
    """Pool event listener: keeps the set each pool shows and, while ``recording``, every
    added/removed event with the client's clocks."""

    def __init__(self) -> None:
        self.present: set[str] = set()
        self.observations: list[Observation] = []
        self.recording = False
        self.batches = 0
        self._last_at: float | None = None
        self.changed = asyncio.Event()

    def __call__(self, event: PoolEvent) -> None:
        if event.endpoint is None:
            return
        if event.kind is EventKind.ADDED:
            self.present.add(event.endpoint.service_id)
        elif event.kind is EventKind.REMOVED:
            self.present.discard(event.endpoint.service_id)
        else:
            return
        self.changed.set()
        if self.recording:
            if event.at != self._last_at:  # one pool update emits its events with one `at`
                self.batches += 1
                self._last_at = event.at
            self.observations.append(
                Observation(
                    event.endpoint.service_id,
                    event.kind.value,
                    time.perf_counter(),
                    time.process_time(),
                )
            )

    def start(self) -> None:
        self.observations = []
        self.batches = 0
        self._last_at = None
        self.recording = True

    async def wait_for(self, expected: set[str], limit: float) -> bool:
        """Wait until the pools show exactly ``expected``; False after ``limit`` seconds."""
        try:
            async with asyncio.timeout(limit):
                while self.present != expected:
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            return False
        return True


def _changes(report: dict[str, Any]) -> list[Change]:
    return [
        Change(c["service"], c["service_id"], c["kind"], c["index"], c["applied_at"])
        for c in report["changes"]
    ]


def _answers(report: dict[str, Any]) -> list[Answer]:
    return [Answer(s, i, t) for s, i, t in report["answers"]]


def _expected(report: dict[str, Any], services: Iterable[str]) -> set[str]:
    """The instance ids (``service-00042``) the server has passing now."""
    result: set[str] = set()
    for name in services:
        result.update(report["passing"][name])
    return result


def _cpu_median(step: Any, repeat: int) -> tuple[float, Any]:
    times = []
    value = None
    for _ in range(repeat):
        started = time.process_time()
        value = step()
        times.append(time.process_time() - started)
    return statistics.median(times), value


def update_steps(body: bytes, repeat: int = 3) -> dict[str, float]:
    """CPU milliseconds (medians) of the library's pure steps on one answer, unprofiled: what
    an update costs before the pool. The comparison is of two equal answers (a full walk; a
    real change stops at the first differing entry)."""
    loads, data = _cpu_median(lambda: json.loads(body), repeat)
    parse, entries = _cpu_median(lambda: parse_entries(data), repeat)
    previous = parse_entries(json.loads(body))
    compare, _ = _cpu_median(lambda: is_change(first=False, previous=previous, current=entries), 3)
    convert, _ = _cpu_median(lambda: entries_to_endpoints(entries, DATACENTER), repeat)
    steps = {
        "json.loads": loads * 1000,
        "parse_entries": parse * 1000,
        "is_change (equal answers)": compare * 1000,
        "entries_to_endpoints": convert * 1000,
    }
    incremental = incremental_step(body, data, repeat)
    if incremental is not None:
        steps["incremental (one change)"] = incremental * 1000
    return steps


def incremental_step(body: bytes, data: list[Any], repeat: int) -> float | None:
    """CPU seconds (median) of decoding and converting an answer in which one instance left,
    against the memo of the full answer, and back (``None``: a library without the memo)."""
    try:
        from mcresolve.consul.models import (  # type: ignore[attr-defined,unused-ignore]
            EntryMemo,
            HealthAnswer,
            decode_entries,
        )
    except ImportError:
        return None
    if len(data) < 2:
        return None
    less = json.dumps(data[:-2] + data[-1:], separators=(",", ":")).encode()
    memo = EntryMemo()
    HealthAnswer.decode(decode_entries(body, json.loads, "answer", memo), DATACENTER, memo=memo)

    def both() -> None:
        for answer in (less, body):
            entries = decode_entries(answer, json.loads, "answer", memo)
            HealthAnswer.decode(entries, DATACENTER, memo=memo)

    seconds, _ = _cpu_median(both, repeat)
    return seconds / 2


def loads_floor(body: bytes, repeat: int = 5) -> float:
    """Median CPU seconds of ``json.loads(body)`` (CPU time, like the client's cost it is
    compared with: on a loaded machine wall time would count other processes' turns)."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        json.loads(body)
        times.append(time.process_time() - started)
    return statistics.median(times)


# --- one large service under churn ----------------------------------------------------------


@dataclass
class ChurnCell:
    """One (service size, churn rate) measurement."""

    instances: int
    rate: float
    seconds: float
    changes: int
    observed: int
    superseded: int
    unexplained: int
    converged: bool
    latency: LatencyStats
    updates: int
    pool_updates: int
    health_requests: int
    cpu_s: float
    cpu_per_update_ms: float | None
    cpu_per_change_ms: float | None
    loads_ms: float
    body_bytes: int
    ratio_to_loads: float | None
    health_requests_per_min: float
    server_cpu_s: float
    server_build_max_ms: float
    churn_late: int
    gc_per_update_ms: float | None


@dataclass
class SizeResult:
    """Everything measured for one service size."""

    instances: int
    body_bytes: int
    loads_ms: float
    startup_s: float
    #: ``None`` when the memory phase was skipped
    memory_retained_bytes: int | None
    memory_per_endpoint_bytes: float | None
    update_peak_bytes: int | None
    cells: list[ChurnCell] = field(default_factory=list)
    profile: str | None = None
    profile_steps: dict[str, float] | None = None
    #: CPU ms of the pure steps of one update, unprofiled (see :func:`update_steps`)
    steps_ms: dict[str, float] = field(default_factory=dict)


def _hold(instances: int, rate: float, hold_seconds: float) -> int:
    """How many instances stay critical at once: each is back after about ``2 * hold / rate``
    seconds, so that a flip and its reversal rarely fall between two answers; at most half."""
    return max(1, min(instances // 2, round(rate * hold_seconds / 2)))


async def _open_pool(server: ScaleServer, service: str, recorder: Recorder) -> EndpointPool:
    pool = EndpointPool(
        f"consul://{service}", consul=server.config, local_datacenter=DATACENTER, name=service
    )
    pool.events.subscribe(recorder)
    await pool.start()
    return pool


async def measure_memory(server: ScaleServer, service: str, instances: int) -> tuple[int, int]:
    """tracemalloc: bytes the pool (watch, source, pool state) retains for ``instances``
    endpoints, and the peak above that during one update. Run alone: tracemalloc slows every
    allocation, so no timing is taken meanwhile."""
    recorder = Recorder()
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        pool = await _open_pool(server, service, recorder)
        try:
            await pool.wait_ready(120)
            ok = await recorder.wait_for(
                set(_expected(await server.report([service]), [service])), 120
            )
            if not ok:
                raise RuntimeError(f"memory phase: pool on {service} did not load")
            await asyncio.sleep(0.2)
            gc.collect()
            retained = tracemalloc.get_traced_memory()[0] - baseline
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            recorder.changed.clear()
            await server.change(service, hold=1)
            await recorder.changed.wait()
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            await pool.aclose()
    finally:
        tracemalloc.stop()
    return retained, peak


#: Where an update's time goes: (label, file suffix, function) whose cumulative time is reported.
PROFILE_STEPS: tuple[tuple[str, str, str], ...] = (
    ("ConsulClient.request (HTTP, body read)", "mcresolve/consul/client.py", "request"),
    ("json.loads", "json/decoder.py", "raw_decode"),
    ("parse_entries (typed entries)", "mcresolve/consul/models.py", "parse_entries"),
    ("decode_entries (changed entries only)", "mcresolve/consul/models.py", "decode_entries"),
    ("HealthAnswer.decode (to endpoints)", "mcresolve/consul/models.py", "decode"),
    ("is_change (compare with the last answer)", "mcresolve/consul/blocking.py", "is_change"),
    ("entries_to_endpoints", "mcresolve/sources/health.py", "entries_to_endpoints"),
    ("PublishingSource._publish (to the pool)", "mcresolve/sources/base.py", "_publish"),
    ("EndpointPool._on_resolution", "mcresolve/pool/core.py", "_on_resolution"),
    ("Balancer.resolve", "mcresolve/balancer/balancer.py", "resolve"),
    ("OutlierDetector.set_endpoints", "mcresolve/balancer/outlier.py", "set_endpoints"),
    ("build_picker", "mcresolve/balancer/picker.py", "build_picker"),
)


class GcTimer:
    """CPU seconds the garbage collector ran while installed (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started
            self.collections += 1

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def profile_steps(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds of each of :data:`PROFILE_STEPS` (0 when not called)."""
    table: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    table = stats.stats  # type: ignore[attr-defined]
    result = {label: 0.0 for label, _, _ in PROFILE_STEPS}
    for (filename, _, function), (_, _, _, cumulative, _) in table.items():
        for label, suffix, name in PROFILE_STEPS:
            if function == name and filename.endswith(suffix):
                result[label] += cumulative
    return result


async def profile_update(
    server: ScaleServer, service: str, recorder: Recorder, top: int = 25
) -> tuple[str, dict[str, float]]:
    """cProfile of one change, from the server applying it to the pool's event: the listing
    and the cumulative seconds of the main steps (plus the garbage collector's, measured apart:
    cProfile charges it to whatever function allocated)."""
    profiler = cProfile.Profile(time.process_time)  # CPU time: the machine may be loaded
    recorder.changed.clear()
    with GcTimer() as collector:
        profiler.enable()
        started = time.process_time()
        await server.change(service, hold=1)
        await recorder.changed.wait()
        cpu = time.process_time() - started
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    steps = profile_steps(stats)
    steps["garbage collector (inside the above)"] = collector.seconds
    steps["total CPU (profiled, so slower)"] = cpu
    return out.getvalue(), steps


async def measure_size(
    server: ScaleServer,
    instances: int,
    rates: list[float],
    seconds: float,
    hold_seconds: float,
    settle_timeout: float,
    *,
    memory: bool = True,
    profile: bool = False,
    log: Any = print,
) -> SizeResult:
    """One service of ``instances`` instances: memory, then one pool through every churn rate."""
    service = f"scale-{instances}"
    await server.services([(service, instances)])
    body = await server.body(service)
    floor = loads_floor(body)
    steps = update_steps(body)
    retained: int | None = None
    peak: int | None = None
    if memory:
        retained, peak = await measure_memory(server, service, instances)
        # a fresh service so the latency pool starts from the same state
        await server.services([(service, instances)])
    recorder = Recorder()
    started = time.perf_counter()
    pool = await _open_pool(server, service, recorder)
    try:
        await pool.wait_ready(120)
        full = _expected(await server.report([service]), [service])
        if not await recorder.wait_for(full, 120):
            raise RuntimeError(f"pool on {service} did not load its {instances} endpoints")
        startup = time.perf_counter() - started
        result = SizeResult(
            instances=instances,
            body_bytes=len(body),
            loads_ms=floor * 1000,
            startup_s=startup,
            memory_retained_bytes=retained,
            memory_per_endpoint_bytes=None if retained is None else retained / instances,
            update_peak_bytes=peak,
            steps_ms=steps,
        )
        await asyncio.sleep(0.3)
        for rate in rates:
            cell = await _churn_cell(
                server, pool, recorder, service, instances, rate, seconds, hold_seconds,
                settle_timeout, floor, len(body),
            )  # fmt: skip
            log(_cell_line(cell))
            result.cells.append(cell)
        if profile:
            result.profile, result.profile_steps = await profile_update(server, service, recorder)
        return result
    finally:
        await pool.aclose()


async def _churn_cell(
    server: ScaleServer,
    pool: EndpointPool,
    recorder: Recorder,
    service: str,
    instances: int,
    rate: float,
    seconds: float,
    hold_seconds: float,
    settle_timeout: float,
    floor: float,
    body_bytes: int,
) -> ChurnCell:
    reset = await server.reset()
    recorder.start()
    cpu0 = time.process_time()
    with GcTimer() as collector:
        await server.churn([service], rate, seconds, _hold(instances, rate, hold_seconds))
        done = await server.wait_churn_done()
        expected = _expected(await server.report([service]), [service])
        converged = await recorder.wait_for(expected, settle_timeout)
    recorder.recording = False
    report = await server.report()
    window = report["at"] - reset["at"]
    matched = match_changes(_changes(report), recorder.observations, _answers(report))
    cpu = (matched.last_cpu if matched.last_cpu is not None else time.process_time()) - cpu0
    counters = report["counters"]
    updates = int(counters["health_new_data"])
    changes = len(report["changes"])
    per_update = cpu / updates if updates else None
    return ChurnCell(
        instances=instances,
        rate=rate,
        seconds=seconds,
        changes=changes,
        observed=matched.observed,
        superseded=matched.superseded,
        unexplained=matched.unexplained,
        converged=converged,
        latency=latency_summary(matched.latencies),
        updates=updates,
        pool_updates=recorder.batches,
        health_requests=int(counters["health_requests"]),
        cpu_s=cpu,
        cpu_per_update_ms=None if per_update is None else per_update * 1000,
        cpu_per_change_ms=cpu / changes * 1000 if changes else None,
        loads_ms=floor * 1000,
        body_bytes=body_bytes,
        ratio_to_loads=None if per_update is None or floor <= 0 else per_update / floor,
        health_requests_per_min=counters["health_requests"] * 60.0 / window,
        server_cpu_s=report["cpu"] - reset["cpu"],
        server_build_max_ms=counters["build_max_s"] * 1000,
        churn_late=int(done["late"]),
        gc_per_update_ms=collector.seconds / updates * 1000 if updates else None,
    )


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _cell_line(cell: ChurnCell) -> str:
    return (
        f"  {cell.instances:>6} inst {cell.rate:>5g}/s: {cell.observed}/{cell.changes} seen "
        f"({cell.superseded} superseded), p50 {_fmt(cell.latency.p50_ms)} ms "
        f"p99 {_fmt(cell.latency.p99_ms)} ms, {cell.updates} updates, "
        f"CPU/update {_fmt(cell.cpu_per_update_ms)} ms = "
        f"{_fmt(cell.ratio_to_loads)} x json.loads ({cell.loads_ms:.1f} ms), "
        f"{cell.health_requests_per_min:.0f} req/min"
    )


def jsonable(value: Any) -> Any:
    """Dataclasses to plain JSON values."""
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


# --- many watched services ------------------------------------------------------------------


@dataclass
class ManyServices:
    """A process watching ``services`` small services."""

    services: int
    instances_each: int
    wait_s: float
    startup_s: float
    idle_seconds: float
    idle_requests: int
    idle_requests_per_wait: float
    idle_cpu_s: float
    idle_cpu_percent: float
    idle_cpu_per_request_ms: float | None
    churn_rate: float
    churn_seconds: float
    changes: int
    observed: int
    superseded: int
    unexplained: int
    converged: bool
    latency: LatencyStats
    cpu_per_change_ms: float | None
    #: CPU per change less what the idle watches cost over the same time (their requests)
    net_cpu_per_change_ms: float | None
    churn_requests_per_min: float


async def measure_many(
    server: ScaleServer,
    services: int,
    instances_each: int,
    wait: float,
    idle_seconds: float,
    rate: float,
    seconds: float,
    settle_timeout: float,
) -> ManyServices:
    """``services`` pools (one per service, one shared registry whose blocking ``wait`` is
    ``wait``): start-up, an idle window (requests per wait period, CPU), then churn at ``rate``
    spread over the services."""
    names = [f"many-{n:04d}" for n in range(services)]
    await server.services([(name, instances_each) for name in names])
    client = ConsulClient(server.config)
    registry = WatchRegistry(client, WatchPolicy(blocking=BlockingPolicy(wait=wait)))
    recorder = Recorder()
    pools: list[EndpointPool] = []
    try:
        started = time.perf_counter()
        for name in names:
            pool = EndpointPool(
                f"consul://{name}", registry=registry, local_datacenter=DATACENTER, name=name
            )
            pool.events.subscribe(recorder)
            pools.append(pool)
        await asyncio.gather(*(p.start() for p in pools))
        expected = _expected(await server.report(names), names)
        if not await recorder.wait_for(expected, 120):
            raise RuntimeError("the watched services did not all load")
        startup = time.perf_counter() - started
        await asyncio.sleep(min(1.0, wait / 2))  # every watch is now blocking
        reset = await server.reset()
        cpu0 = time.process_time()
        await asyncio.sleep(idle_seconds)
        idle_cpu = time.process_time() - cpu0
        report = await server.report()
        idle_window = report["at"] - reset["at"]
        idle_requests = int(report["counters"]["health_requests"])
        # churn
        reset = await server.reset()
        recorder.start()
        cpu0 = time.process_time()
        await server.churn(names, rate, seconds, 1)
        await server.wait_churn_done()
        expected = _expected(await server.report(names), names)
        converged = await recorder.wait_for(expected, settle_timeout)
        recorder.recording = False
        report = await server.report()
        matched = match_changes(_changes(report), recorder.observations, _answers(report))
        cpu_end = matched.last_cpu if matched.last_cpu is not None else time.process_time()
        cpu = cpu_end - cpu0
        busy = (matched.last_at if matched.last_at is not None else report["at"]) - reset["at"]
        net = cpu - idle_cpu / idle_window * busy
        changes = len(report["changes"])
        window = report["at"] - reset["at"]
        return ManyServices(
            services=services,
            instances_each=instances_each,
            wait_s=wait,
            startup_s=startup,
            idle_seconds=idle_window,
            idle_requests=idle_requests,
            idle_requests_per_wait=idle_requests * wait / idle_window,
            idle_cpu_s=idle_cpu,
            idle_cpu_percent=100 * idle_cpu / idle_window,
            idle_cpu_per_request_ms=idle_cpu / idle_requests * 1000 if idle_requests else None,
            churn_rate=rate,
            churn_seconds=seconds,
            changes=changes,
            observed=matched.observed,
            superseded=matched.superseded,
            unexplained=matched.unexplained,
            converged=converged,
            latency=latency_summary(matched.latencies),
            cpu_per_change_ms=cpu / changes * 1000 if changes else None,
            net_cpu_per_change_ms=net / changes * 1000 if changes else None,
            churn_requests_per_min=report["counters"]["health_requests"] * 60.0 / window,
        )
    finally:
        await asyncio.gather(*(p.aclose() for p in pools))
        await registry.aclose()
        await client.aclose()


# --- sharing --------------------------------------------------------------------------------


@dataclass
class Sharing:
    """Consul requests of ``pools`` pools on one target over a window with churn."""

    target: str
    pools: int
    seconds: float
    refresh: float | None
    churn_rate: float
    changes: int
    executions_per_min: float
    health_requests_per_min: float
    requests_per_min: float


async def measure_sharing(
    server: ScaleServer,
    kind: str,
    pools: int,
    seconds: float,
    rate: float,
    refresh: float | None = None,
    instances: int = 10,
) -> Sharing:
    """``pools`` pools on one ``consul://`` or ``consul+query://`` target, built from the target
    string with the Consul configuration only (the process-wide shared watches), counted over
    ``seconds`` with ``rate`` changes/s; ``refresh``: the prepared query's ``refresh=``."""
    service = "shared"
    await server.services([(service, instances)])
    target = f"{kind}://{service}"
    if refresh is not None and kind == "consul+query":
        target += f"?refresh={refresh:g}s"
    recorder = Recorder()
    opened: list[EndpointPool] = []
    try:
        for n in range(pools):
            pool = EndpointPool(
                target, consul=server.config, local_datacenter=DATACENTER, name=f"p{n}"
            )
            pool.events.subscribe(recorder)
            opened.append(pool)
        await asyncio.gather(*(p.start() for p in opened))
        await asyncio.gather(*(p.wait_ready(60) for p in opened))
        await asyncio.sleep(0.5)
        reset = await server.reset()
        if rate > 0:
            await server.churn([service], rate, seconds, 1)
        await asyncio.sleep(seconds)
        report = await server.report()
        window = report["at"] - reset["at"]
        counters = report["counters"]
        return Sharing(
            target=f"{kind}://{service}",
            pools=pools,
            seconds=window,
            refresh=refresh if kind == "consul+query" else None,
            churn_rate=rate,
            changes=len(report["changes"]),
            executions_per_min=counters["executions"] * 60.0 / window,
            health_requests_per_min=counters["health_requests"] * 60.0 / window,
            requests_per_min=(counters["executions"] + counters["health_requests"]) * 60.0 / window,
        )
    finally:
        await asyncio.gather(*(p.aclose() for p in opened))
        await server.wait_churn_done()
