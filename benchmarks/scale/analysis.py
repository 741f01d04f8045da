"""Pure parts of the scale benchmark: pairing server changes with pool events, summaries.

A *change* is one check flip the server applied (an instance leaving or re-entering the
``?passing`` answer) at a monotonic time; an *observation* is the pool event (``removed`` /
``added``) the client recorded for that instance. Both clocks are ``time.perf_counter`` in two
processes on one Linux machine (``CLOCK_MONOTONIC``, system-wide), so they compare directly.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from benchmarks.failover.stats import percentile

__all__ = [
    "Answer",
    "Change",
    "LatencyStats",
    "Matched",
    "Observation",
    "latency_summary",
    "match_changes",
]


@dataclass(frozen=True, slots=True)
class Change:
    """A flip applied by the server: ``kind`` is the pool event it must cause; ``index`` the
    server's index after it."""

    service: str
    instance: str
    kind: str  # "removed" | "added"
    index: int
    applied_at: float


@dataclass(frozen=True, slots=True)
class Answer:
    """A health answer the server sent: when it was made and the index it carried."""

    service: str
    index: int
    sent_at: float


@dataclass(frozen=True, slots=True)
class Observation:
    """A pool event for an instance, with the client's clocks when it ran."""

    instance: str
    kind: str
    at: float
    cpu: float = 0.0


@dataclass(frozen=True, slots=True)
class Matched:
    """Changes paired with the pool events that showed them.

    Attributes:
        latencies: seconds from each observed change to its pool event.
        observed: changes the pool showed.
        superseded: changes never shown because a later change of the same instance undid them
            before the client read an answer (a blocking answer carries the current state, not
            every step): expected when changes come faster than the client's updates.
        unexplained: pool events no change accounts for (a bug, in the library or here).
        last_cpu: the client's CPU clock at the last paired event (``None`` without any).
        last_at: the monotonic time of the last paired event.
    """

    latencies: tuple[float, ...]
    observed: int
    superseded: int
    unexplained: int
    last_cpu: float | None
    last_at: float | None


class _Answers:
    """The answers of one service, in the order they were sent (their indexes never decrease)."""

    def __init__(self, answers: list[Answer]) -> None:
        ordered = sorted(answers, key=lambda a: (a.sent_at, a.index))
        self.times = [a.sent_at for a in ordered]
        self.indexes = [a.index for a in ordered]

    def any_between(self, before: float, low: int, high: int | None) -> bool:
        """Whether an answer sent at or before ``before`` carried an index in ``[low, high)``."""
        count = bisect.bisect_right(self.times, before)
        first = bisect.bisect_left(self.indexes, low, 0, count)
        return first < count and (high is None or self.indexes[first] < high)


def match_changes(
    changes: Iterable[Change], observations: Iterable[Observation], answers: Iterable[Answer]
) -> Matched:
    """Pair every observation with the change it shows.

    An answer carries the state at its index: every change up to it, none after. So a pool
    event of an instance shows the change ``c`` of that kind such that an answer sent before
    the event carries an index from ``c``'s up to (not including) the instance's next change;
    the latest such change not yet shown is taken, changes of an instance being shown in order.
    Changes no event shows were superseded (undone before any answer carried them).
    """
    by_instance: dict[str, list[Change]] = {}
    for change in sorted(changes, key=lambda c: c.index):
        by_instance.setdefault(change.instance, []).append(change)
    grouped: dict[str, list[Answer]] = {}
    for answer in answers:
        grouped.setdefault(answer.service, []).append(answer)
    sent = {service: _Answers(items) for service, items in grouped.items()}
    position: dict[str, int] = {}
    latencies: list[float] = []
    unexplained = 0
    last_cpu: float | None = None
    last_at: float | None = None
    for seen in sorted(observations, key=lambda o: o.at):
        history = by_instance.get(seen.instance, [])
        chosen: int | None = None
        for q in range(position.get(seen.instance, 0), len(history)):
            change = history[q]
            if change.applied_at > seen.at:
                break
            if change.kind != seen.kind:
                continue
            following = history[q + 1].index if q + 1 < len(history) else None
            log = sent.get(change.service)
            if log is not None and log.any_between(seen.at, change.index, following):
                chosen = q
        if chosen is None:
            unexplained += 1
            continue
        position[seen.instance] = chosen + 1
        latencies.append(seen.at - history[chosen].applied_at)
        if last_at is None or seen.at >= last_at:
            last_at, last_cpu = seen.at, seen.cpu
    total = sum(len(v) for v in by_instance.values())
    return Matched(
        latencies=tuple(latencies),
        observed=len(latencies),
        superseded=total - len(latencies),
        unexplained=unexplained,
        last_cpu=last_cpu,
        last_at=last_at,
    )


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Milliseconds (``None`` without samples)."""

    count: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


def latency_summary(latencies: Sequence[float]) -> LatencyStats:
    """p50/p99/max of ``latencies`` (seconds) in milliseconds."""
    if not latencies:
        return LatencyStats(0, None, None, None)
    ms = [x * 1000 for x in latencies]
    return LatencyStats(len(ms), percentile(ms, 50), percentile(ms, 99), max(ms))
