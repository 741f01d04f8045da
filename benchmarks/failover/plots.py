"""Timelines: per scenario run, latency of every request and failures over time, fault marked.

:func:`timeline_series` (pure) turns records into the plotted series; :func:`render_timeline`
draws them with matplotlib's Agg backend (no display needed) into a PNG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from benchmarks.failover.analysis import ScenarioRun
from benchmarks.failover.records import RequestRecord

__all__ = ["PeerSeries", "failure_bins", "render_timeline", "timeline_series"]


@dataclass(frozen=True)
class PeerSeries:
    """What one peer contributes to a timeline."""

    kind: str
    ok_times: list[float]
    ok_latencies: list[float]
    failed_times: list[float]
    bins: list[int]


def failure_bins(records: list[RequestRecord], width: float, start: float, end: float) -> list[int]:
    """Failed requests per ``width``-second bin of scheduled time over ``[start, end)``."""
    if width <= 0:
        raise ValueError("bin width must be > 0")
    count = max(1, math.ceil((end - start) / width))
    bins = [0] * count
    for record in records:
        if record.ok or not start <= record.scheduled < end:
            continue
        bins[min(count - 1, int((record.scheduled - start) / width))] += 1
    return bins


def timeline_series(run: ScenarioRun, width: float) -> list[PeerSeries]:
    """The plotted series of every peer that took part (warm-up excluded)."""
    out = []
    for peer in run.peers:
        if peer.unavailable is not None:
            continue
        records = [r for r in peer.records if r.scheduled >= run.warmup]
        ok = [r for r in records if r.ok]
        out.append(
            PeerSeries(
                kind=peer.kind,
                ok_times=[r.scheduled for r in ok],
                ok_latencies=[r.latency for r in ok],
                failed_times=[r.scheduled for r in records if not r.ok],
                bins=failure_bins(records, width, run.warmup, run.times.end),
            )
        )
    return out


def render_timeline(run: ScenarioRun, path: Path, *, deadline: float) -> Path:
    """Draw the run's timeline into ``path`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.5
    series = timeline_series(run, width)
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    colors = plt.get_cmap("tab10")
    for i, peer in enumerate(series):
        color = colors(i % 10)
        top.scatter(
            peer.ok_times,
            [v * 1000 for v in peer.ok_latencies],
            s=4,
            color=color,
            label=peer.kind,
            alpha=0.7,
        )
        if peer.failed_times:
            top.scatter(
                peer.failed_times,
                [deadline * 1000] * len(peer.failed_times),
                s=14,
                marker="x",
                color=color,
            )
        starts = [run.warmup + k * width for k in range(len(peer.bins))]
        bottom.step(starts, peer.bins, where="post", color=color, label=peer.kind)
    for axis in (top, bottom):
        axis.axvspan(run.times.fault, run.times.heal, color="red", alpha=0.08)
        axis.axvline(run.times.fault, color="red", linewidth=1)
        axis.axvline(run.times.heal, color="green", linewidth=1, linestyle="--")
    top.set_yscale("log")
    top.set_ylabel("latency (ms, log); × = failed")
    top.set_title(f"{run.scenario} ({run.workload} workload): {run.title}")
    top.legend(loc="upper left", fontsize=7, ncol=4, markerscale=3)
    bottom.set_ylabel(f"failed requests per {width:g} s")
    bottom.set_xlabel("seconds since start (red line: fault, green dashed: healed)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
