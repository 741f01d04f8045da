"""Before/after in one run: the scale benchmark against two versions of the library.

``bench_scale.py --against REF [options]`` exports the library (``src/``) of the git revision
``REF`` into a temporary directory and runs the benchmark once per part (each service size, then
the watched services) with that library and then with this tree's, alternately, each in its own
process (``--sizes <one> --json``), so that both see the same load at nearly the same time.
The tables put the two side by side; every number is also in ``--json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_scale.py"


def export_library(revision: str, into: Path) -> Path:
    """``src/`` of ``revision`` (``git archive``) under ``into``; returns the ``src`` path."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "src"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def run_part(src: Path, options: list[str], out: Path) -> dict[str, Any]:
    """One benchmark process with the library at ``src``; its JSON result."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, str(BENCH), *options, "--json", str(out)]
    print("$", "PYTHONPATH=" + str(src), " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def compare(revision: str, options: list[str], sizes: list[int], many: bool) -> dict[str, Any]:
    """Run every part with the library of ``revision`` and with this tree's, alternately."""
    parts: list[tuple[str, list[str]]] = [
        (f"size {size}", ["--sizes", str(size), "--many", "0", "--share-pools", "0"])
        for size in sizes
    ]
    if many:
        parts.append(("watched services", ["--sizes=", "--share-pools", "0"]))
    results: dict[str, Any] = {"against": revision, "parts": []}
    with tempfile.TemporaryDirectory(prefix="mcresolve-before-") as tmp:
        before_src = export_library(revision, Path(tmp))
        for name, part in parts:
            pair = {}
            for label, src in (("before", before_src), ("after", ROOT / "src")):
                pair[label] = run_part(src, options + part, Path(tmp) / f"{label}.json")
            results["parts"].append({"part": name, **pair})
    return results


def _f(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def render_comparison(results: dict[str, Any]) -> str:
    """The side-by-side tables."""
    lines = [
        f"scale benchmark, library at {results['against']} (before) and this tree (after), "
        "alternating per part",
        "",
        f"{'inst':>6} {'chg/s':>6} {'loads ms':>8} | {'CPU/upd ms':>17} | {'ratio':>11} | "
        f"{'GC/upd ms':>13} | {'p50 ms':>15} | {'p99 ms':>15} | {'seen':>15}",
        f"{'':>6} {'':>6} {'':>8} | {'before':>8} {'after':>8} | {'bef':>5} {'aft':>5} | "
        f"{'bef':>6} {'aft':>6} | {'bef':>7} {'aft':>7} | {'bef':>7} {'aft':>7} | "
        f"{'bef':>7} {'aft':>7}",
    ]
    memory = []
    for part in results["parts"]:
        before, after = part["before"], part["after"]
        for size_b, size_a in zip(before["sizes"], after["sizes"], strict=True):
            for b, a in zip(size_b["cells"], size_a["cells"], strict=True):
                lines.append(
                    f"{a['instances']:>6} {a['rate']:>6g} {a['loads_ms']:>8.1f} | "
                    f"{_f(b['cpu_per_update_ms']):>8} {_f(a['cpu_per_update_ms']):>8} | "
                    f"{_f(b['ratio_to_loads'], '.2f'):>5} {_f(a['ratio_to_loads'], '.2f'):>5} | "
                    f"{_f(b['gc_per_update_ms']):>6} {_f(a['gc_per_update_ms']):>6} | "
                    f"{_f(b['latency']['p50_ms']):>7} {_f(a['latency']['p50_ms']):>7} | "
                    f"{_f(b['latency']['p99_ms']):>7} {_f(a['latency']['p99_ms']):>7} | "
                    f"{b['observed']:>3}/{b['changes']:<3} {a['observed']:>3}/{a['changes']:<3}"
                )
            memory.append(
                f"{size_a['instances']:>6} {size_a['body_bytes'] / 1e6:>9.2f} | "
                f"{_f(size_b['memory_per_endpoint_bytes'], '.0f'):>7} "
                f"{_f(size_a['memory_per_endpoint_bytes'], '.0f'):>7} | "
                f"{_mb(size_b['update_peak_bytes']):>7} {_mb(size_a['update_peak_bytes']):>7} | "
                f"{size_b['startup_s']:>6.2f} {size_a['startup_s']:>6.2f}"
            )
    lines += [
        "",
        f"{'inst':>6} {'answer MB':>9} | {'B/endpoint':>15} | {'update peak MB':>15} | "
        f"{'first load s':>13}",
        f"{'':>6} {'':>9} | {'bef':>7} {'aft':>7} | {'bef':>7} {'aft':>7} | {'bef':>6} {'aft':>6}",
        *memory,
    ]
    for part in results["parts"]:
        before, after = part["before"]["many"], part["after"]["many"]
        if before and after:
            lines += ["", f"{after['services']} watched services (wait {after['wait_s']:g} s)"]
            for label, m in (("before", before), ("after", after)):
                lines.append(
                    f"  {label:<6} idle: {m['idle_requests_per_wait']:.0f} requests per wait "
                    f"period, CPU {m['idle_cpu_percent']:.1f} %; churn "
                    f"{m['churn_rate']:g}/s: {m['observed']:.0f}/{m['changes']:.0f} seen, "
                    f"p99 {_f(m['latency']['p99_ms'])} ms, "
                    f"CPU/change {_f(m['net_cpu_per_change_ms'], '.2f')} ms"
                )
    loads = [
        (p["before"]["meta"]["load_before"], p["after"]["meta"]["load_after"])
        for p in results["parts"]
    ]
    lines += [
        "",
        "load average at the start and end of each part: "
        + "; ".join(f"{b} -> {a}" for b, a in loads),
    ]
    return "\n".join(lines)


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.1f}"
