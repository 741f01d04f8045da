"""Per-agent HTTP fault injection: slow answers, forced error answers, dropped connections.

Example::

    dc1.faults.delay = 0.2                 # every request answers 200 ms later (real seconds)
    dc1.faults.fail_next(3)                # the next 3 requests answer 500 "injected failure"
    dc1.faults.fail_next(1, status=503, message="Service Unavailable")
    dc1.faults.drop_next(2)                # the next 2 requests get their connection closed
    dc1.faults.rate_limit("retry-later")   # the servers' RPC rate limiter refuses (503)
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


#: The servers' RPC rate limiter (Consul 1.15+, ``limits.request_limits``): ``retry-elsewhere``
#: is a 429 (another server may serve it), ``retry-later`` a 503 (only the leader can, try
#: later); website/content/docs/agent/limits (v1.15.x) "Request denials"; the texts are
#: ``ErrRetryElsewhere``/``ErrRetryLater`` of agent/consul/rate/handler.go; no ``Retry-After``.
RATE_LIMIT_ANSWERS = {
    "retry-elsewhere": (429, "rate limit exceeded, try a different server"),
    "retry-later": (
        503,
        "rate limit exceeded for operation that can only be performed by the leader, "
        "try again later",
    ),
}


@dataclass
class AgentFaults:
    """Faults applied to the HTTP API of one datacenter's agent, in request order."""

    delay: float = 0.0
    path_prefix: str = ""
    _queue: deque[InjectedFailure] = field(default_factory=deque)
    injected: int = 0
    #: the rate limiter's answer while enabled (``None`` = off) and how many more requests
    #: it refuses (``None`` = until :meth:`clear`)
    rate_limited: InjectedFailure | None = None
    rate_limit_remaining: int | None = None

    def rate_limit(self, mode: str = "retry-elsewhere", count: int | None = None) -> None:
        """Make the datacenter's servers refuse server-backed requests (catalog, health,
        queries, ...; not the agent's own ``/v1/agent/*``) as their RPC rate limiter does:
        ``retry-elsewhere`` (429) or ``retry-later`` (503), for ``count`` requests or until
        :meth:`clear`."""
        status, message = RATE_LIMIT_ANSWERS[mode]
        self.rate_limited = InjectedFailure(status=status, message=message)
        self.rate_limit_remaining = count

    def take_rate_limit(self) -> InjectedFailure | None:
        """The rate limiter's answer for a server-backed request, if it refuses it."""
        if self.rate_limited is None:
            return None
        answer = self.rate_limited
        if self.rate_limit_remaining is not None:
            self.rate_limit_remaining -= 1
            if self.rate_limit_remaining <= 0:
                self.rate_limited = None
        return answer

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
        self.rate_limited = None
        self.rate_limit_remaining = None

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
