"""Markdown rendering of a run's summaries and verdicts (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.failover.verdicts import Verdict

__all__ = ["headline_table", "markdown_report", "scenario_table"]

PEER_NOTES: Mapping[tuple[str, str], str] = {
    ("haproxy", "health-flip"): "never reads Consul: it probes the node itself, which still "
    "answers, so the flip cannot reach it (by design of the load-balancer approach)",
    ("plain", "health-flip"): "resolved once at start: never sees the flip",
    ("multiminio", "health-flip"): "never reads Consul after start: never sees the flip",
}
"""Why a peer cannot react to a scenario, shown instead of a blank."""


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.0f}"


def _lat(phase: Mapping[str, Any]) -> str:
    latency = phase["latency"]
    if latency["count"] == 0:
        return "no success"
    return f"{_ms(latency['p50'])} / {_ms(latency['p99'])} / {_ms(latency['max'])}"


def _seconds(value: float | None, never: str) -> str:
    return never if value is None else f"{value:.2f} s"


def _victim(peer: Mapping[str, Any]) -> str:
    visits = peer.get("victim_after_fault", {})
    if "unknown" in visits:
        return "n/a: " + str(visits["unknown"])
    last = visits.get("last_after_s")
    attempts = visits.get("attempts", 0)
    text = "0"
    if attempts:
        text = f"{attempts} (last +{last * 1000:.0f} ms)" if last is not None else str(attempts)
    dropped = peer.get("victim_dropped_after_s")
    if dropped is not None:
        text += f"; pool dropped it +{dropped * 1000:.1f} ms"
    return text


def _errors(peer: Mapping[str, Any]) -> str:
    merged: dict[str, int] = {}
    for phase in ("during", "after"):
        for name, count in peer["phases"][phase]["errors"].items():
            merged[name] = merged.get(name, 0) + count
    text = ", ".join(f"{k} ×{v}" for k, v in sorted(merged.items())) or "—"
    if peer.get("retry_log_lines"):
        text += f" (MultiMinio logged {peer['retry_log_lines']} retry lines)"
    return text


def headline_table(summaries: Sequence[Mapping[str, Any]], workload: str) -> str:
    """Scenarios × peers for one workload: failed requests / time to steady state."""
    runs = [r for r in summaries if r["workload"] == workload]
    if not runs:
        return ""
    kinds = list(runs[0]["peers"])
    lines = [
        "| scenario | " + " | ".join(kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for run in runs:
        cells = []
        for kind in kinds:
            peer = run["peers"].get(kind)
            if peer is None or "unavailable" in peer:
                cells.append("did not run")
                continue
            steady = peer["steady_s"]
            window = "never steady" if steady is None else f"{steady:.2f} s"
            cells.append(f"{peer['failed']} failed, {window}")
        lines.append(f"| {run['scenario']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def scenario_table(run: Mapping[str, Any]) -> str:
    """One scenario run as a Markdown table, one row per peer."""
    header = (
        "| peer | failed / sent | errors | first success | steady after | "
        "p50 / p99 / max ms before | during | after | Consul requests during (total) | "
        "attempts to faulted node during fault |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for kind, peer in run["peers"].items():
        if "unavailable" in peer:
            rows.append(f"| {kind} | did not take part: {peer['unavailable']} |" + " |" * 8)
            continue
        consul = peer["consul_requests"]
        total = sum(v for v in consul.values() if v is not None)
        during = "—" if consul["during"] is None else str(consul["during"])
        note = PEER_NOTES.get((kind, run["scenario"]))
        rows.append(
            f"| {kind} | {peer['failed']} / {peer['requests']} | {_errors(peer)} | "
            f"{_seconds(peer['first_success_s'], 'never')} | "
            f"{_seconds(peer['steady_s'], 'not within the fault')} | "
            f"{_lat(peer['phases']['before'])} | {_lat(peer['phases']['during'])} | "
            f"{_lat(peer['phases']['after'])} | {during} ({total}) | "
            f"{_victim(peer)}{' — ' + note if note else ''} |"
        )
    return header + "\n".join(rows) + "\n"


def markdown_report(
    summaries: Sequence[Mapping[str, Any]],
    verdicts: Sequence[Verdict],
    meta: Mapping[str, Any],
    micro: Mapping[str, Any] | None = None,
) -> str:
    """The whole results page: run facts, one table per scenario, verdicts, micro numbers."""
    lines = [
        "# Failover benchmark results",
        "",
        f"Command: `{meta.get('command', '?')}`  ",
        f"Mode: {meta.get('mode', '?')}, rate {meta.get('rate', '?')} requests/s per peer, "
        f"deadline {meta.get('deadline', '?')} s per request, attempt timeout "
        f"{meta.get('attempt_timeout', '?')} s, hedge delay {meta.get('hedge_delay', '?')} s  ",
        f"Machine: {meta.get('machine', '?')}  ",
        f"Versions: {meta.get('versions', '?')}  ",
        f"Started: {meta.get('started', '?')}, took {meta.get('seconds', 0):.0f} s",
        "",
        "Columns: *failed / sent* counts requests of the fault and after phases that failed "
        "or exceeded the deadline; latencies are over successful requests, from the scheduled "
        "send time; *steady after* is the time from the fault until every later request of "
        "the fault phase succeeded at normal latency; the last column counts attempts a peer "
        "sent to the faulted node while the fault lasted.",
        "",
    ]
    for workload in dict.fromkeys(r["workload"] for r in summaries):
        lines += [
            f"### At a glance ({workload} workload): failed requests, time to steady state",
            "",
            headline_table(summaries, workload),
        ]
    for run in summaries:
        lines += [
            f"## {run['scenario']} ({run['workload']} workload): {run['title']}",
            "",
            f"Fault at {run['times']['fault']:.1f} s, healed at {run['times']['heal']:.1f} s, "
            f"end {run['times']['end']:.1f} s; faulted node {run['victim']}.",
            "",
            scenario_table(run),
        ]
        png = run.get("timeline_png")
        if png:
            lines += [f"![timeline of {run['scenario']} ({run['workload']})]({png})", ""]
    lines += ["## Targets for mcresolve", "", "| target | scenario | workload | result | detail |"]
    lines.append("|---|---|---|---|---|")
    for v in verdicts:
        mark = "met" if v.passed else "**missed**"
        lines.append(f"| {v.target} | {v.scenario} | {v.workload} | {mark} | {v.detail} |")
    lines.append("")
    if micro:
        lines += ["## Micro numbers", "", "| measure | value |", "|---|---|"]
        for name, value in micro.items():
            lines.append(f"| {name} | {value} |")
        lines.append("")
    return "\n".join(lines)
