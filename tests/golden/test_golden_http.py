"""Golden replay: every recorded HTTP exchange of /work/shared/consul-golden, in file order, against
a fresh two-datacenter emulator, compared by the rules of golden_compare.py."""

from __future__ import annotations

import time

from golden_replay import GoldenReplay, coverage_lines


async def test_golden_http_replay() -> None:
    started = time.monotonic()
    async with GoldenReplay() as replay:
        reports = await replay.replay_all()
    lines = coverage_lines(reports)
    lines.append(f"replay wall time: {time.monotonic() - started:.1f}s")
    print("\n".join(lines))
    failures = [
        f"{result.label}:\n    " + "\n    ".join(result.problems)
        for report in reports
        for result in report.failures
    ]
    assert not failures, f"{len(failures)} exchanges differ:\n" + "\n".join(failures)
    for report in reports:
        for result in report.not_compared:
            assert result.reason, f"{result.label} skipped without a reason"
