"""Scale: large services under churn, a process watching many services, request sharing.

Run: ``.venv/bin/python benchmarks/bench_scale.py [--quick] [--json PATH] [--profile]``

A fast Consul-shaped server (``benchmarks/scale/server.py``, aiohttp, its own process so its CPU
is not counted) serves ``/v1/health/service/<name>`` as blocking queries from pre-serialised
entries (about 1.9 KB of JSON per instance: tags, meta, three checks), prepared-query executions
and ``/v1/agent/self``, and applies churn itself. This process is the measured client.

1. Services of 100, 1,000 and 10,000 instances, one ``consul://`` pool each (default watch
   policy: 60 s wait, at most 2 requests at once then one per 100 ms), churn of 1, 10 and 100
   check flips/s: change-to-pool latency p50/p99 (server applied the change → the pool's
   ``removed``/``added`` event ran, the new picker in place), client CPU per update
   (``time.process_time``), retained memory per endpoint and the peak of one update
   (tracemalloc, measured apart), Consul requests per minute, and ``json.loads`` of the same
   answer as the floor (ratio CPU per update / ``json.loads``).
2. A process watching 1,000 small services: start-up, idle requests per wait period and CPU,
   latency under churn spread over them.
3. Sharing: 1 and 50 pools on one ``consul+query://`` and one ``consul://`` target built from
   the target string (the process-wide shared watches): Consul requests per minute.

``--quick`` takes 80 s on a loaded 2-core machine (the 10,000-instance cells about a third of
it); the full run about 6 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks.*`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.failover.cli import machine_facts
from benchmarks.scale.harness import (
    ManyServices,
    Sharing,
    SizeResult,
    check_clock,
    jsonable,
    measure_many,
    measure_sharing,
    measure_size,
    scale_server,
)


@dataclass(frozen=True)
class Settings:
    """What one run measures (see ``--help``)."""

    sizes: tuple[int, ...] = (100, 1000, 10000)
    rates: tuple[float, ...] = (1.0, 10.0, 100.0)
    seconds: float = 10.0
    hold: float = 5.0
    settle: float = 60.0
    memory: bool = True
    #: largest service whose memory is measured (tracemalloc is slow at 10,000 instances)
    memory_max: int = 10000
    profile: bool = False
    many_services: int = 1000
    many_instances: int = 5
    many_wait: float = 10.0
    many_idle: float = 20.0
    many_rate: float = 10.0
    many_seconds: float = 10.0
    share_pools: int = 50
    share_seconds: float = 30.0
    share_rate: float = 1.0
    #: the prepared query's ``refresh=`` (None: the default 10 s); the idle window must span
    #: a few refresh periods to count them
    share_refresh: float | None = None

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            seconds=1.5,
            hold=2.0,
            settle=30.0,
            memory_max=1000,
            many_wait=2.0,
            many_idle=4.0,
            many_seconds=2.0,
            share_seconds=3.0,
            share_refresh=1.0,
        )


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "?"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


async def run(settings: Settings, log: Any = print) -> dict[str, Any]:
    """Measure everything ``settings`` asks for; the results as plain JSON values."""
    check_clock()
    started = time.perf_counter()
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "load_before": load_average(),
        "python": sys.version.split()[0],
        "settings": jsonable(settings),
    }
    sizes: list[SizeResult] = []
    many: ManyServices | None = None
    sharing: list[Sharing] = []
    async with scale_server() as server:
        for instances in settings.sizes:
            log(f"service of {instances} instances")
            sizes.append(
                await measure_size(
                    server,
                    instances,
                    list(settings.rates),
                    settings.seconds,
                    settings.hold,
                    settings.settle,
                    memory=settings.memory and instances <= settings.memory_max,
                    profile=settings.profile and instances >= 1000,
                    log=log,
                )
            )
        if settings.many_services > 0:
            log(f"{settings.many_services} watched services")
            many = await measure_many(
                server,
                settings.many_services,
                settings.many_instances,
                settings.many_wait,
                settings.many_idle,
                settings.many_rate,
                settings.many_seconds,
                settings.settle,
            )
        if settings.share_pools > 0:
            for kind, rate in (
                ("consul+query", 0.0),
                ("consul+query", settings.share_rate),
                ("consul", settings.share_rate),
            ):
                for pools in (1, settings.share_pools):
                    log(f"sharing: {pools} pool(s) on {kind}://, {rate:g} changes/s")
                    sharing.append(
                        await measure_sharing(
                            server,
                            kind,
                            pools,
                            settings.share_seconds,
                            rate,
                            settings.share_refresh,
                        )
                    )
    meta["load_after"] = load_average()
    meta["duration_s"] = round(time.perf_counter() - started, 1)
    return {
        "meta": meta,
        "sizes": jsonable(sizes),
        "many": jsonable(many),
        "sharing": jsonable(sharing),
    }


def _f(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.2f}"


def _n(value: float) -> str:
    """A count (a median of counts may be a half)."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def median_of(runs: list[Any]) -> Any:
    """Per-field medians of results of the same shape (numbers; other values from the first)."""
    first = runs[0]
    if isinstance(first, bool) or first is None or isinstance(first, str):
        return first
    if isinstance(first, int | float):
        values = [r for r in runs if isinstance(r, int | float)]
        return statistics.median(values) if len(values) == len(runs) else first
    if isinstance(first, dict):
        return {k: median_of([r[k] for r in runs]) for k in first}
    if isinstance(first, list) and all(len(r) == len(first) for r in runs):
        return [median_of([r[i] for r in runs]) for i in range(len(first))]
    return first


def render(result: dict[str, Any]) -> str:
    """The plain-text tables."""
    meta = result["meta"]
    runs = result.get("runs", 1)
    lines = [
        f"scale benchmark, {meta['date']}, {meta['duration_s']} s"
        + (f" per run; medians of {runs} runs" if runs > 1 else ""),
        f"machine: {meta['machine']}; load average before {meta['load_before']}, "
        f"after {meta['load_after']}",
        "",
        "Large services (one consul:// pool, default watch policy)",
        f"{'inst':>6} {'chg/s':>6} {'seen':>11} {'p50 ms':>8} {'p99 ms':>8} {'upd':>5} "
        f"{'CPU/upd ms':>10} {'loads ms':>8} {'ratio':>6} {'CPU/chg ms':>10} {'req/min':>8} "
        f"{'GC/upd ms':>9} {'srv CPU s':>9}",
    ]
    for size in result["sizes"]:
        for c in size["cells"]:
            seen = f"{_n(c['observed'])}/{_n(c['changes'])}"
            lines.append(
                f"{c['instances']:>6} {c['rate']:>6g} {seen:>11} {_f(c['latency']['p50_ms']):>8} "
                f"{_f(c['latency']['p99_ms']):>8} {_n(c['updates']):>5} "
                f"{_f(c['cpu_per_update_ms']):>10} {c['loads_ms']:>8.1f} "
                f"{_f(c['ratio_to_loads']):>6} {_f(c['cpu_per_change_ms'], '.2f'):>10} "
                f"{c['health_requests_per_min']:>8.0f} {_f(c['gc_per_update_ms']):>9} "
                f"{c['server_cpu_s']:>9.2f}"
            )
    lines += [
        "",
        "Per service size",
        f"{'inst':>6} {'answer MB':>9} {'loads ms':>8} {'start s':>7} {'retained MB':>11} "
        f"{'B/endpoint':>10} {'update peak MB':>14}",
    ]
    for size in result["sizes"]:
        lines.append(
            f"{size['instances']:>6} {size['body_bytes'] / 1e6:>9.2f} {size['loads_ms']:>8.1f} "
            f"{size['startup_s']:>7.2f} {_mb(size['memory_retained_bytes']):>11} "
            f"{_f(size['memory_per_endpoint_bytes'], '.0f'):>10} "
            f"{_mb(size['update_peak_bytes']):>14}"
        )
    lines += [
        "",
        "CPU ms of one update's steps before the pool (unprofiled medians) and the rest",
        f"{'inst':>6} {'json.loads':>10} {'parse_entries':>13} {'is_change':>9} "
        f"{'to endpoints':>12} {'incremental':>11} {'rest (pool, HTTP, GC)':>21}",
    ]
    for size in result["sizes"]:
        steps = dict(size["steps_ms"])
        incremental = steps.pop("incremental (one change)", None)
        measured = [c["cpu_per_update_ms"] for c in size["cells"] if c["cpu_per_update_ms"]]
        used = incremental if incremental is not None else sum(steps.values())
        rest = min(measured) - used if measured and steps else None
        lines.append(
            f"{size['instances']:>6} {steps.get('json.loads', 0):>10.1f} "
            f"{steps.get('parse_entries', 0):>13.1f} "
            f"{steps.get('is_change (equal answers)', 0):>9.1f} "
            f"{steps.get('entries_to_endpoints', 0):>12.1f} {_f(incremental):>11} {_f(rest):>21}"
        )
    many = result["many"]
    if many:
        lines += [
            "",
            f"{many['services']} watched services of {many['instances_each']} instances "
            f"(wait {many['wait_s']:g} s)",
            f"  start-up {many['startup_s']:.2f} s; idle {many['idle_seconds']:.1f} s: "
            f"{many['idle_requests']:.0f} requests = {many['idle_requests_per_wait']:.0f} per "
            f"wait period, CPU {many['idle_cpu_percent']:.1f} % "
            f"({_f(many['idle_cpu_per_request_ms'], '.2f')} ms per request)",
            f"  churn {many['churn_rate']:g}/s: {many['observed']:.0f}/{many['changes']:.0f} seen, "
            f"p50 {_f(many['latency']['p50_ms'])} ms p99 {_f(many['latency']['p99_ms'])} ms, "
            f"CPU/change {_f(many['cpu_per_change_ms'], '.2f')} ms "
            f"({_f(many['net_cpu_per_change_ms'], '.2f')} ms without the idle watches' share), "
            f"{many['churn_requests_per_min']:.0f} req/min",
        ]
    if result["sharing"]:
        lines += [
            "",
            "Sharing (pools built from the target string, one process)",
            f"{'target':<22} {'refresh':>7} {'pools':>5} {'chg/s':>6} {'exec/min':>9} "
            f"{'health/min':>10} "
            f"{'total/min':>9} {'x one pool':>10}",
        ]
        single: dict[tuple[str, float], float] = {}
        for s in result["sharing"]:
            key = (s["target"], s["churn_rate"])
            if s["pools"] == 1:
                single[key] = s["requests_per_min"]
            base = single.get(key)
            ratio = s["requests_per_min"] / base if base else None
            lines.append(
                f"{s['target']:<22} {_f(s['refresh'], 'g') if s['refresh'] else '-':>7} "
                f"{_n(s['pools']):>5} {s['churn_rate']:>6g} "
                f"{s['executions_per_min']:>9.0f} {s['health_requests_per_min']:>10.0f} "
                f"{s['requests_per_min']:>9.0f} {_f(ratio):>10}"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short windows (about a minute)")
    parser.add_argument("--sizes", help="service sizes, e.g. 100,1000,10000")
    parser.add_argument("--rates", help="churn rates in changes/s, e.g. 1,10,100")
    parser.add_argument("--seconds", type=float, help="churn seconds per (size, rate)")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc phase")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one update at 1,000+ instances"
    )
    parser.add_argument("--many", type=int, help="watched services (0: skip)")
    parser.add_argument("--many-wait", type=float, help="blocking wait of those watches, s")
    parser.add_argument("--many-idle", type=float, help="idle window, s")
    parser.add_argument("--share-pools", type=int, help="pools on one target (0: skip)")
    parser.add_argument("--share-seconds", type=float, help="sharing window, s")
    parser.add_argument("--share-rate", type=float, help="changes/s during the sharing window")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the tables show medians")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--against",
        metavar="REV",
        help="before/after: run each part with the library of git revision REV, then with "
        "this tree's, alternately (benchmarks/scale/compare.py)",
    )
    return parser.parse_args(argv)


def _without(argv: list[str], names: set[str]) -> list[str]:
    """``argv`` without the options ``names`` (and their values)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif arg.split("=", 1)[0] not in names:
            kept.append(arg)
    return kept


def settings_from(args: argparse.Namespace) -> Settings:
    base = Settings.quick() if args.quick else Settings()
    changes: dict[str, Any] = {}
    if args.sizes is not None:
        changes["sizes"] = tuple(int(x) for x in args.sizes.split(",") if x)
    if args.rates:
        changes["rates"] = tuple(float(x) for x in args.rates.split(","))
    for name, key in (
        ("seconds", "seconds"),
        ("many", "many_services"),
        ("many_wait", "many_wait"),
        ("many_idle", "many_idle"),
        ("share_pools", "share_pools"),
        ("share_seconds", "share_seconds"),
        ("share_rate", "share_rate"),
    ):
        value = getattr(args, name)
        if value is not None:
            changes[key] = value
    if args.no_memory:
        changes["memory"] = False
    if args.profile:
        changes["profile"] = True
    return Settings(**{**jsonable(base), **changes})


def _timed_log() -> Any:
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {line}", flush=True)

    return log


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = settings_from(args)
    if args.against:
        from benchmarks.scale.compare import compare, render_comparison

        given = _without(sys.argv[1:] if argv is None else argv, {"--against", "--json", "--sizes"})
        results = compare(args.against, given, list(settings.sizes), settings.many_services > 0)
        print()
        print(render_comparison(results))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
            print(f"\nJSON: {args.json}")
        return
    logging.disable(logging.WARNING)
    runs = []
    for n in range(args.repeat):
        if args.repeat > 1:
            print(f"run {n + 1} of {args.repeat}")
        runs.append(asyncio.run(run(settings, log=_timed_log())))
    result = median_of(runs) if len(runs) > 1 else runs[0]
    if len(runs) > 1:
        result["runs"] = len(runs)
        result["meta"]["load_before"] = " | ".join(r["meta"]["load_before"] for r in runs)
        result["meta"]["load_after"] = " | ".join(r["meta"]["load_after"] for r in runs)
        for size in result["sizes"]:
            size["profile"] = size["profile_steps"] = None
    print()
    print(render(result))
    for size in result["sizes"]:
        if size["profile_steps"]:
            print(f"\nOne update of {size['instances']} instances, cumulative CPU ms (cProfile)")
            for label, seconds in size["profile_steps"].items():
                print(f"  {label:<45} {seconds * 1000:9.1f}")
        if size["profile"]:
            print(f"\ncProfile of one update, {size['instances']} instances\n{size['profile']}")
    if args.json:
        document = {**result, "each_run": runs} if len(runs) > 1 else result
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
