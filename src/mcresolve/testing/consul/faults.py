"""Per-agent HTTP fault injection: slow answers, forced error answers, dropped connections.

Example::

    dc1.faults.delay = 0.2                 # every request answers 200 ms later (real seconds)
    dc1.faults.fail_next(3)                # the next 3 requests answer 500 "injected failure"
    dc1.faults.fail_next(1, status=503, message="Service Unavailable")
    dc1.faults.drop_next(2)                # the next 2 requests get their connection closed
    dc1.faults.clear()
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class InjectedFailure:
    """One forced answer (``drop`` closes the connection without any answer)."""

    status: int = 500
    message: str = "injected failure"
    drop: bool = False


@dataclass
class AgentFaults:
    """Faults applied to the HTTP API of one datacenter's agent, in request order."""

    delay: float = 0.0
    path_prefix: str = ""
    _queue: deque[InjectedFailure] = field(default_factory=deque)
    injected: int = 0

    def fail_next(
        self, count: int = 1, *, status: int = 500, message: str = "injected failure"
    ) -> None:
        """Answer the next ``count`` requests with ``status`` and a plain-text ``message``."""
        for _ in range(count):
            self._queue.append(InjectedFailure(status=status, message=message))

    def drop_next(self, count: int = 1) -> None:
        """Close the connection of the next ``count`` requests without answering."""
        for _ in range(count):
            self._queue.append(InjectedFailure(drop=True))

    def clear(self) -> None:
        """Remove every pending fault and the delay."""
        self._queue.clear()
        self.delay = 0.0
        self.path_prefix = ""

    @property
    def pending(self) -> int:
        """Forced answers not yet used."""
        return len(self._queue)

    def take(self, path: str) -> InjectedFailure | None:
        """The forced answer for this request, if any (only paths under ``path_prefix``)."""
        if not self._queue or not path.startswith(self.path_prefix):
            return None
        self.injected += 1
        return self._queue.popleft()
