"""Plain records the failover benchmark passes around (no I/O, no behaviour)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Phase(StrEnum):
    """Where in a scenario a request was scheduled: before the fault, while it lasts, after it."""

    BEFORE = "before"
    DURING = "during"
    AFTER = "after"


class Operation(StrEnum):
    """What one workload request does."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class RequestRecord:
    """One workload request, timed on the scenario's monotonic clock (seconds since its start).

    ``scheduled`` is when the open-loop driver meant to send it, ``started`` when a worker
    thread picked it up, ``finished`` when the answer came back or the workload's own deadline
    expired (``error == "deadline"``: the peer was still busy, the request counts as failed).
    """

    operation: Operation
    scheduled: float
    started: float
    finished: float
    ok: bool
    error: str | None = None

    @property
    def latency(self) -> float:
        """Seconds from the scheduled send time to the answer (queueing included: open loop)."""
        return self.finished - self.scheduled


@dataclass(frozen=True)
class NodeVisit:
    """A peer sent one attempt to one storage node (``node`` is ``host:port``) at ``at``."""

    at: float
    node: str


@dataclass(frozen=True)
class PoolChange:
    """An mcresolve pool event about one node (``kind``: removed, ejected, added, ...)."""

    at: float
    kind: str
    node: str


@dataclass(frozen=True)
class ScenarioTimes:
    """The scenario's clock marks: fault injected at ``fault``, undone at ``heal``, end ``end``."""

    fault: float
    heal: float
    end: float

    def phase_of(self, record: RequestRecord) -> Phase:
        """The phase of a request: by its scheduled time, except that a request still running
        when the fault began belongs to the fault (the baseline holds only undisturbed ones)."""
        if record.scheduled < self.fault and record.finished < self.fault:
            return Phase.BEFORE
        if record.scheduled < self.heal:
            return Phase.DURING
        return Phase.AFTER
