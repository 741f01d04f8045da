"""Progress of a benchmark run: which run of how many, and an estimate of the time left.

The estimate starts from the planned durations (warm-up + before + during + after of every run
still to come, plus the idle Consul measurement) and adds what the finished runs took beyond
their plan (starting and closing the peers, healing the world, drawing the timeline), as the
mean per run. Pure functions over numbers; :class:`Progress` only keeps the tally and formats.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Progress", "estimate_left", "format_duration"]


def format_duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min 05 s"``, ``"1 h 02 min"`` (rounded to whole seconds)."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def estimate_left(
    planned_left: Sequence[float], finished: Sequence[tuple[float, float]], extra: float = 0.0
) -> float:
    """Seconds left: the planned durations of the runs to come (``planned_left``, the current
    one included), plus ``extra`` (planned work after the runs), plus, for each run to come,
    the mean time the ``finished`` runs (``(planned, took)`` pairs) took beyond their plan."""
    overhead = (
        sum(max(0.0, took - planned) for planned, took in finished) / len(finished)
        if finished
        else 0.0
    )
    return sum(planned_left) + extra + overhead * len(planned_left)


@dataclass
class Progress:
    """The tally of one invocation: ``planned`` seconds per run in order, ``extra`` planned
    seconds after them. :meth:`starting` and :meth:`finished` return the lines to print."""

    planned: list[float]
    extra: float = 0.0
    clock: Callable[[], float] = time.monotonic
    _done: list[tuple[float, float]] = field(default_factory=list)
    _began: float | None = None
    _run_began: float | None = None

    @property
    def total(self) -> int:
        return len(self.planned)

    def plan_line(self, out: object) -> str:
        """What the invocation will do, before anything runs."""
        self._began = self.clock()
        return (
            f"{self.total} run(s) planned, about {format_duration(self.left())} "
            f"(planned durations); results go to {out}"
        )

    def left(self) -> float:
        return estimate_left(self.planned[len(self._done) :], self._done, self.extra)

    def starting(self, label: str) -> str:
        """The line printed as run number ``len(done) + 1`` starts."""
        index = len(self._done)
        self._run_began = self.clock()
        if self._began is None:
            self._began = self._run_began
        elapsed = self._run_began - self._began
        return (
            f"[{index + 1}/{self.total}] {label}: {format_duration(self.planned[index])} "
            f"planned; about {format_duration(self.left())} left, "
            f"{format_duration(elapsed)} elapsed"
        )

    def finished(self, label: str) -> str:
        """The line printed as the current run ends (its measured time joins the estimate)."""
        index = len(self._done)
        began = self._run_began if self._run_began is not None else self.clock()
        took = self.clock() - began
        self._done.append((self.planned[index], took))
        self._run_began = None
        return (
            f"[{index + 1}/{self.total}] {label} done in {format_duration(took)}; "
            f"about {format_duration(self.left())} left"
        )
