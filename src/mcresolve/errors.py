"""Errors raised by :class:`~mcresolve.pool.EndpointPool` calls.

Every failure of ``pool.call`` / ``pool.call_sync`` that is not the callee's own non-retryable
error is a :class:`CallFailed` carrying each attempt (endpoint, error, verdict, timing), so the
caller can say exactly what happened. :class:`NoEndpointAvailable` is raised by ``pool.pick()``
when there is nothing to pick.

:class:`McResolveError` is the root of every exception mcresolve raises (Consul's
:class:`~mcresolve.consul.errors.ConsulError`, target errors, storage errors...), so one
``except McResolveError`` catches them all; classes keep a second built-in base
(``ValueError``, ``LookupError``, ``TimeoutError``...) where callers rely on it. This module
imports nothing else of the library at run time, so every module can import its root from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcresolve.pool.planner import AttemptRecord, VerdictLike

__all__ = [
    "AttemptsExhausted",
    "CallFailed",
    "ClusterUnavailable",
    "DeadlineExceeded",
    "McResolveError",
    "NoEndpointAvailable",
    "PoolClosed",
    "RetryBudgetExhausted",
]


class McResolveError(Exception):
    """Base of mcresolve's own errors."""


class NoEndpointAvailable(McResolveError, LookupError):
    """The picker has no endpoint to offer (empty, or everything excluded without fallback)."""


class PoolClosed(McResolveError, RuntimeError):
    """The pool was closed (or never started) when a call needed it."""


def _describe(attempts: Sequence[AttemptRecord]) -> str:
    if not attempts:
        return "no attempt was made"
    parts = []
    for record in attempts[-5:]:
        what = "ok" if record.error is None else f"{type(record.error).__name__}: {record.error}"
        parts.append(f"{record.endpoint.host_port} -> {what}")
    more = f" (last 5 of {len(attempts)})" if len(attempts) > 5 else ""
    return "; ".join(parts) + more


class CallFailed(McResolveError):
    """A call through the pool failed; :attr:`attempts` lists every attempt made."""

    def __init__(self, message: str, attempts: Sequence[AttemptRecord] = ()) -> None:
        self.attempts: tuple[AttemptRecord, ...] = tuple(attempts)
        self.reason = message
        super().__init__(f"{message}; attempts: {_describe(self.attempts)}")

    @property
    def last_error(self) -> BaseException | None:
        """The error of the last failed attempt, if any."""
        for record in reversed(self.attempts):
            if record.error is not None:
                return record.error
        return None


class AttemptsExhausted(CallFailed):
    """Retryable failures on every attempt the policy allowed (``max_attempts``, or every endpoint
    tried and the backoff would not end before the deadline)."""


class RetryBudgetExhausted(AttemptsExhausted):
    """A retry was needed but the pool's retry budget is spent: the backends are failing for many
    calls at once, and retrying would multiply their load."""


class DeadlineExceeded(CallFailed, TimeoutError):
    """The call's overall deadline passed (also raised when no endpoint appeared in time)."""


class ClusterUnavailable(CallFailed):
    """The classifier said the failure concerns the whole backend cluster (CLUSTER verdict) and
    waiting for it (``Retry-After`` or backoff) would not end before the deadline.
    :attr:`verdict` is the classifier's last verdict (for MinIO a
    :class:`mcresolve.minio.classify.Verdict` with ``affects``)."""

    def __init__(
        self, message: str, attempts: Sequence[AttemptRecord], verdict: VerdictLike
    ) -> None:
        self.verdict = verdict
        super().__init__(message, attempts)
