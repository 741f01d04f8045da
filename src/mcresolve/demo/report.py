"""The demo's results table and JSON document (pure: no I/O).

One :class:`PhaseResult` per measured phase (a scenario's fault, then its recovery);
:func:`render_table` lays them out as a plain-text table that reads the same in a terminal and
in a CI log; :func:`results_document` is what ``--json`` writes.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .measure import LOCAL_ONLY, SHOPPERS, SIDECAR, WRITES, PhaseStats
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


def fault_visible(result: PhaseResult) -> str:
    """Which traffic saw failures in this phase, and for how long: each failing class with the
    time from the phase start (the injection, or the repair) to the end of its last failed
    request; ``none`` when every request was served. Expected failures count too: a fault the
    article says users see (the local-only storefront without storage, writes without quorum)
    shows here as long as it lasted."""
    visible = [
        f"{name} {stats.failover_window:.1f}s"
        for name, stats in sorted(result.stats.items(), key=lambda item: _ORDER.get(item[0], 9))
        if stats.failed
    ]
    return ", ".join(visible) if visible else "none"


_ORDER = {SHOPPERS: 0, LOCAL_ONLY: 1, SIDECAR: 2, WRITES: 3}


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
    "sidecar ok/fail",
    "writes ok/fail",
    "fault visible",
    "p50/p99 ms",
    "verdict",
)
"""The columns of the wide table (``--wide``)."""

COMPACT_HEADERS = (
    "scenario",
    "shoppers ok/fail",
    "local-only",
    "sidecar",
    "writes",
    "fault visible",
    "p50/p99 ms",
    "verdict",
)
"""The columns of the default table; the article's words go on a line of their own."""

#: Default table width: fits a 120-column terminal or CI log.
TABLE_WIDTH = 120
#: Longest cell line per column of the compact table (longer cells wrap at spaces).
_COMPACT_WRAP = (25, 22, 10, 8, 8, 15, 10, 8)


def _served_by(stats: PhaseStats | None) -> str:
    if stats is None or not stats.served_by:
        return ""
    return " (" + ", ".join(f"{dc} {n}" for dc, n in sorted(stats.served_by.items())) + ")"


def table_rows(results: Sequence[PhaseResult]) -> list[tuple[str, ...]]:
    """The wide table's cells, one tuple per phase, in :data:`HEADERS` order."""
    rows: list[tuple[str, ...]] = []
    for result in results:
        shoppers = result.stats.get(SHOPPERS)
        visible = fault_visible(result)
        if result.settle_seconds is not None:
            visible += f" (steady {result.settle_seconds:.1f}s)"
        rows.append(
            (
                result.label,
                result.expected_text,
                _counts(shoppers) + _served_by(shoppers),
                _counts(result.stats.get(LOCAL_ONLY)),
                _counts(result.stats.get(SIDECAR)),
                _counts(result.stats.get(WRITES)),
                visible,
                _latency(shoppers),
                _verdict(result),
            )
        )
    return rows


def compact_rows(results: Sequence[PhaseResult]) -> list[tuple[str, ...]]:
    """The default table's cells, one tuple per phase, in :data:`COMPACT_HEADERS` order."""
    rows: list[tuple[str, ...]] = []
    for result in results:
        shoppers = result.stats.get(SHOPPERS)
        if result.phase is Phase.FAULT:
            label = result.scenario.title
        elif result.settle_seconds is not None:
            label = f"  recovery, steady in {result.settle_seconds:.1f}s"
        else:
            label = "  recovery"
        rows.append(
            (
                label,
                _counts(shoppers) + _served_by(shoppers),
                _counts(result.stats.get(LOCAL_ONLY)),
                _counts(result.stats.get(SIDECAR)),
                _counts(result.stats.get(WRITES)),
                fault_visible(result),
                _latency(shoppers),
                "OK" if result.ok else "MISMATCH",
            )
        )
    return rows


def _boxed(rows: Sequence[Sequence[str]], wrap: int) -> list[str]:
    wrapped = [[textwrap.wrap(cell, wrap) or [""] for cell in row] for row in rows]
    columns = len(rows[0])
    widths = [max(len(line) for row in wrapped for line in row[col]) for col in range(columns)]
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
    return out


def _wrap(cell: str, limit: int) -> list[str]:
    """``cell`` wrapped at ``limit`` columns, keeping its indent (recovery rows)."""
    indent = " " * (len(cell) - len(cell.lstrip()))
    return textwrap.wrap(
        cell.strip(), limit, initial_indent=indent, subsequent_indent=indent + "  "
    ) or [""]


def _compact(results: Sequence[PhaseResult], width: int) -> list[str]:
    rows = [COMPACT_HEADERS, *compact_rows(results)]
    wrapped = [
        [_wrap(cell, limit) for cell, limit in zip(row, _COMPACT_WRAP, strict=True)] for row in rows
    ]
    widths = [
        max(len(line) for row in wrapped for line in row[col])
        for col in range(len(COMPACT_HEADERS))
    ]

    def line_of(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = []
    for index, row in enumerate(wrapped):
        height = max(len(cell) for cell in row)
        for line in range(height):
            out.append(line_of([cell[line] if line < len(cell) else "" for cell in row]))
        if index == 0:
            out.append(line_of(["-" * w for w in widths]))
            continue
        result = results[index - 1]
        if result.phase is Phase.FAULT:
            out.extend(
                textwrap.wrap(
                    f"the article: {result.scenario.article}",
                    width,
                    initial_indent="    ",
                    subsequent_indent="      ",
                )
            )
    return out


LEGEND = (
    "ok/fail: requests served/failed (a shopper request is the page and every image on it; "
    "brackets: the datacenters that served shoppers). fault visible: each traffic class that "
    "saw failures, and how long after the injection (or the repair) its last failure ended. "
    "p50/p99: shopper latency of served requests. Recovery rows count from the repair on; "
    "their verdict judges the traffic after steady state (no failure allowed)."
)


def render_table(
    results: Sequence[PhaseResult], *, wide: bool = False, width: int = TABLE_WIDTH
) -> str:
    """The results as plain text: by default a compact table whose lines fit ``width``
    columns, each scenario followed by what the article says; ``wide=True`` gives one boxed
    table with every cell (the article's words, mismatch reasons) in columns, wider than a
    terminal."""
    out = _boxed([HEADERS, *table_rows(results)], 40) if wide else _compact(results, width)

    def para(text: str) -> list[str]:
        return textwrap.wrap(text, width, subsequent_indent="  ")

    lines = [*out, *para(LEGEND)]
    for r in results:
        if r.phase is Phase.FAULT and r.scenario.note:
            lines += para(f"* {r.scenario.title}: {r.scenario.note}")
    mismatches = [r for r in results if not r.ok]
    if mismatches and not wide:
        lines.append("Mismatches:")
        for r in mismatches:
            lines += para(f"* {r.label.strip()}: {_verdict(r)}")
    failures = [
        f"* {r.label.strip()}: {name}: "
        + ", ".join(f"{count}x {error}" for error, count in sorted(stats.errors.items()))
        for r in results
        for name, stats in r.stats.items()
        if stats.errors
    ]
    if failures:
        lines.append("What the failed requests got:")
        for failure in failures:
            lines += para(failure)
    return "\n".join(lines)


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
