"""The demo's results table and JSON document (pure: no I/O).

One :class:`PhaseResult` per measured phase (a scenario's fault, then its recovery);
:func:`render_table` lays them out as a plain-text table that reads the same in a terminal and
in a CI log; :func:`results_document` is what ``--json`` writes.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .measure import LOCAL_ONLY, SHOPPERS, WRITES, PhaseStats
from .scenarios import Phase, Scenario, Verdict


@dataclass(frozen=True)
class PhaseResult:
    """What one phase of one scenario measured, and the verdicts against its expectations.

    ``settle_seconds``: for a recovery phase, the time from the repair until the topology was
    back to steady state (every health check passing, every traffic class served again).
    """

    scenario: Scenario
    phase: Phase
    stats: Mapping[str, PhaseStats]
    verdicts: tuple[Verdict, ...]
    duration: float
    settle_seconds: float | None = None

    @property
    def ok(self) -> bool:
        """Every expectation met."""
        return all(v.ok for v in self.verdicts)

    @property
    def label(self) -> str:
        """The row's scenario cell."""
        if self.phase is Phase.FAULT:
            return self.scenario.title
        return f"  recovery: {self.scenario.title}"

    @property
    def expected_text(self) -> str:
        """The row's "should happen" cell."""
        if self.phase is Phase.FAULT:
            return self.scenario.article
        if self.settle_seconds is not None:
            return "back to steady state, everything served"
        return "everything served"

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "scenario": self.scenario.key,
            "title": self.scenario.title,
            "phase": self.phase.value,
            "article": self.scenario.article,
            "note": self.scenario.note,
            "ok": self.ok,
            "duration_s": round(self.duration, 2),
            "settle_s": None if self.settle_seconds is None else round(self.settle_seconds, 2),
            "traffic": {name: stats.to_json() for name, stats in self.stats.items()},
            "verdicts": [
                {
                    "traffic": v.expectation.traffic,
                    "expected": v.expectation.describe(),
                    "ok": v.ok,
                    "reason": v.reason,
                }
                for v in self.verdicts
            ],
        }


def _counts(stats: PhaseStats | None) -> str:
    if stats is None:
        return "-"
    return f"{stats.served}/{stats.failed}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def _latency(stats: PhaseStats | None) -> str:
    if stats is None:
        return "-"
    return f"{_ms(stats.p50)}/{_ms(stats.p99)}"


def _window(result: PhaseResult) -> str:
    serving = {v.expectation.traffic for v in result.verdicts if v.expectation.serves}
    windows = [
        s.failover_window for name, s in result.stats.items() if s.failed and name in serving
    ]
    text = f"{max(windows):.1f}s" if windows else "0"
    if result.settle_seconds is not None:
        text += f" (steady {result.settle_seconds:.1f}s)"
    return text


def _verdict(result: PhaseResult) -> str:
    if result.ok:
        return "OK"
    return "MISMATCH: " + "; ".join(
        f"{v.expectation.traffic}: {v.reason}" for v in result.verdicts if not v.ok
    )


HEADERS = (
    "scenario",
    "the article says",
    "shoppers ok/fail",
    "local-only ok/fail",
    "writes ok/fail",
    "fault visible",
    "p50/p99 ms",
    "verdict",
)


def table_rows(results: Sequence[PhaseResult]) -> list[tuple[str, ...]]:
    """The table's cells, one tuple per phase, in :data:`HEADERS` order."""
    rows: list[tuple[str, ...]] = []
    for result in results:
        shoppers = result.stats.get(SHOPPERS)
        served_by = ""
        if shoppers is not None and shoppers.served_by:
            served_by = (
                " (" + ", ".join(f"{dc} {n}" for dc, n in sorted(shoppers.served_by.items())) + ")"
            )
        rows.append(
            (
                result.label,
                result.expected_text,
                _counts(shoppers) + served_by,
                _counts(result.stats.get(LOCAL_ONLY)),
                _counts(result.stats.get(WRITES)),
                _window(result),
                _latency(shoppers),
                _verdict(result),
            )
        )
    return rows


def render_table(results: Sequence[PhaseResult], *, wrap: int = 40) -> str:
    """The results as a plain-text table (long cells wrapped at ``wrap`` characters)."""
    rows = [HEADERS, *table_rows(results)]
    wrapped = [[textwrap.wrap(cell, wrap) or [""] for cell in row] for row in rows]
    widths = [max(len(line) for row in wrapped for line in row[col]) for col in range(len(HEADERS))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [rule]
    for index, row in enumerate(wrapped):
        height = max(len(cell) for cell in row)
        for line in range(height):
            cells = [
                (cell[line] if line < len(cell) else "").ljust(width)
                for cell, width in zip(row, widths, strict=True)
            ]
            out.append("| " + " | ".join(cells) + " |")
        if index == 0:
            out.append(rule.replace("-", "="))
    out.append(rule)
    notes = [
        f"* {r.scenario.title}: {r.scenario.note}"
        for r in results
        if r.phase is Phase.FAULT and r.scenario.note
    ]
    legend = (
        "ok/fail: requests served/failed (a shopper request = the page and every image on it); "
        "fault visible: from the injection (or repair) to the end of the last unexpected failed "
        "request, and for recoveries the time until steady state; p50/p99: shopper latency of "
        "served requests; recovery rows count from the repair on, their verdict judges the "
        "traffic after steady state (no failure allowed)."
    )
    failures = [
        f"* {r.label.strip()}: {name}: "
        + ", ".join(f"{count}x {error}" for error, count in sorted(stats.errors.items()))
        for r in results
        for name, stats in r.stats.items()
        if stats.errors
    ]
    if failures:
        failures.insert(0, "What the failed requests got:")
    return "\n".join([*out, legend, *notes, *failures])


def results_document(
    results: Sequence[PhaseResult], *, wall_seconds: float, setup: Mapping[str, object]
) -> dict[str, object]:
    """Everything ``--json`` writes."""
    return {
        "ok": all(r.ok for r in results),
        "wall_seconds": round(wall_seconds, 1),
        "setup": dict(setup),
        "phases": [r.to_json() for r in results],
    }
