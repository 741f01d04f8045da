"""What ``/health`` answers (pure: fed with probe outcomes and clock readings, no I/O).

The answer is read by a Consul HTTP check, where 2xx means passing and anything but 429 means
critical, and a critical instance is taken out of service discovery. The storefront therefore says
"critical" only when it really cannot serve, and then quickly enough for Consul to route shoppers to
another instance (possibly in another datacenter):

* storage answered the last probe (through any node: failover is the storage client's job, so one
  dead storage node never shows here) → ``pass``, 200;
* storage has been failing for less than ``grace_s`` → ``degraded``, still 200: a failover in
  progress must not flap the instance in and out of Consul;
* storage has been failing for ``grace_s`` or longer → ``fail``, 503;
* the instance is shutting down → ``fail``, 503 (Consul stops routing before it deregisters).

Probes are cheap (``bucket_exists``) and shared: a probe younger than ``max_probe_age_s`` is reused,
so any number of checkers cost at most one storage round trip per second. Outcomes of real page
requests are recorded too, so a failure is seen as soon as a shopper meets it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class HealthStatus(enum.Enum):
    """The instance's overall state."""

    PASS = "pass"
    DEGRADED = "degraded"
    FAIL = "fail"


@dataclass(frozen=True)
class HealthPolicy:
    """Thresholds of the assessment (seconds)."""

    #: How long storage may fail before the instance reports critical. Ten seconds covers a
    #: storage client failing over (one attempt timeout plus a retry) without letting a dead
    #: storage backend keep shoppers on this instance for long; with Consul's 2 s check interval
    #: the instance leaves discovery about 10-12 s after storage became unreachable.
    grace_s: float = 10.0
    #: A probe younger than this is reused instead of asking storage again.
    max_probe_age_s: float = 1.0
    #: ``/health`` answers within this even when storage hangs (the probe goes on in the
    #: background): below Consul's 1 s default check timeout, which would count as critical.
    answer_within_s: float = 0.8


@dataclass(frozen=True)
class HealthReport:
    """The answer of ``/health``: HTTP status and JSON body."""

    status: HealthStatus
    http_status: int
    body: dict[str, Any]


class StorageHealth:
    """Remembers how storage answered and turns it into a :class:`HealthReport`."""

    def __init__(self, policy: HealthPolicy | None = None) -> None:
        self.policy = policy or HealthPolicy()
        self.last_probe_at: float | None = None
        self.last_ok_at: float | None = None
        self.failing_since: float | None = None
        self.last_error: str | None = None
        self.last_latency_s: float | None = None
        self.bucket_exists: bool | None = None
        self.draining = False

    def needs_probe(self, now: float) -> bool:
        """Whether the last observation is too old to answer from."""
        return self.last_probe_at is None or now - self.last_probe_at >= self.policy.max_probe_age_s

    def record_success(
        self, started_at: float, now: float, *, bucket_exists: bool | None = None
    ) -> None:
        """Storage answered a request started at ``started_at`` and finished at ``now``."""
        self.last_probe_at = max(self.last_probe_at or now, now)
        self.last_ok_at = now
        self.failing_since = None
        self.last_error = None
        self.last_latency_s = max(0.0, now - started_at)
        if bucket_exists is not None:
            self.bucket_exists = bucket_exists

    def record_failure(self, started_at: float, now: float, error: str) -> None:
        """A request started at ``started_at`` failed at ``now``; storage counts as failing since
        the start of the first failed request after the last success."""
        self.last_probe_at = max(self.last_probe_at or now, now)
        if self.last_ok_at is not None and self.last_ok_at > started_at:
            # A newer success already proves storage reachable; an old, slow failure says nothing.
            return
        if self.failing_since is None:
            self.failing_since = started_at
        self.last_error = error
        self.last_latency_s = None

    def assess(self, now: float) -> HealthReport:
        """The report at ``now``."""
        storage = self._storage_details(now)
        if self.draining:
            return HealthReport(HealthStatus.FAIL, 503, {"reason": "shutting down", **storage})
        if self.failing_since is None and self.last_ok_at is not None:
            return HealthReport(HealthStatus.PASS, 200, storage)
        if self.failing_since is None:
            return HealthReport(HealthStatus.DEGRADED, 200, {"reason": "not probed yet", **storage})
        failing_for = now - self.failing_since
        if failing_for < self.policy.grace_s:
            reason = f"storage failing for {failing_for:.1f} s (grace {self.policy.grace_s:g} s)"
            return HealthReport(HealthStatus.DEGRADED, 200, {"reason": reason, **storage})
        reason = f"storage unreachable for {failing_for:.1f} s"
        return HealthReport(HealthStatus.FAIL, 503, {"reason": reason, **storage})

    def _storage_details(self, now: float) -> dict[str, Any]:
        reachable = self.failing_since is None and self.last_ok_at is not None
        return {
            "storage": {
                "reachable": reachable,
                "bucket_exists": self.bucket_exists,
                "latency_ms": _rounded_ms(self.last_latency_s),
                "last_ok_s_ago": _rounded(
                    None if self.last_ok_at is None else now - self.last_ok_at
                ),
                "failing_for_s": _rounded(
                    None if self.failing_since is None else now - self.failing_since
                ),
                "last_error": self.last_error,
            }
        }


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(max(0.0, seconds), 3)


def _rounded_ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
