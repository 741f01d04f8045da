"""How one ``pool.call`` behaves: timeouts, attempts, backoff, hedging (frozen values).

Policies are values, like urllib3's ``Retry``: build one, share it, derive variants with
:func:`dataclasses.replace` or :meth:`CallPolicy.with_overrides`. Every default below names the
precedent it follows; ``docs/pool.md`` has the same table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mcresolve.arguments import check_instance, check_int_range, check_seconds
from mcresolve.timing import BackoffPolicy, Jitter

__all__ = ["CallPolicy", "check_call_arguments"]


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """Timeouts and retry shape of one call through the pool. Durations are seconds.

    ``math.inf`` disables a time limit; the overall ``deadline`` is finite by default so that no
    call can hang forever (a caller who really wants that passes ``deadline=math.inf``).
    """

    attempt_timeout: float = 10.0
    """Limit on one attempt (one ``fn(endpoint)`` run). 10 s: an attempt on a healthy loopback
    or LAN storage node takes milliseconds, so 10 s only fires on a blackholed node, which then
    costs exactly one attempt timeout before ejection (``OutlierPolicy.timeouts=1``).
    Envoy's route timeout is 15 s and gRPC has none; both are tuned for arbitrary RPCs, whereas a
    short value makes failover visible. Large transfers should pass a larger value per call
    (a synchronous attempt cannot be interrupted: see ``docs/pool.md``)."""
    deadline: float = 30.0
    """Limit on the whole call, all attempts and waits included. 30 s = three attempt timeouts:
    room for one blackholed node, one retry and the backoff in between, and still shorter than
    the 35 s Spring Cloud Consul keeps a stale load-balancer cache (the time a comparable client
    is allowed to be wrong)."""
    max_attempts: int = 5
    """Attempts per call, the first one and hedges included. 5 is gRPC's cap on
    ``retryPolicy.maxAttempts`` / ``hedgingPolicy.maxAttempts``; with the 4 nodes of the
    reference MinIO cluster it allows trying every node once and one more after backoff. The
    retry budget bounds the aggregate anyway."""
    backoff: BackoffPolicy = field(
        default_factory=lambda: BackoffPolicy(base=0.1, multiplier=2.0, cap=1.0, jitter=Jitter.FULL)
    )
    """Wait before starting over once *every* endpoint has been tried (never between attempts on
    different endpoints: a dead node says nothing about the next one). gRPC's retry examples use
    ``initialBackoff`` 0.1 s, ``backoffMultiplier`` 2, ``maxBackoff`` 1 s with full jitter
    (``random(0, current)``), which we follow."""
    cluster_backoff: BackoffPolicy = field(
        default_factory=lambda: BackoffPolicy(
            base=1.0, multiplier=2.0, cap=10.0, jitter=Jitter.EQUAL
        )
    )
    """Wait after a CLUSTER verdict without ``Retry-After`` (the server's hint always wins). The
    cluster is overloaded or lost quorum, so wait longer than for a node: 1 s doubling to 10 s
    (consul-template's cap on Consul retries is 1 min, ours for Consul is 10 s; a caller's 30 s
    deadline allows about three rounds). Equal jitter keeps at least half the wait, so a herd of
    clients does not come back near zero."""
    hedge_delay: float | None = None
    """Start a second attempt on another endpoint when the first has not finished after this
    delay (idempotent calls only); first success wins, the other is cancelled. None (default):
    off, as in gRPC (``hedgingPolicy`` is opt-in) and Finagle (``BackupRequestFilter`` is
    opt-in); choose a value near the p95–p99 latency of the calls concerned."""
    max_hedges: int = 1
    """Extra concurrent attempts hedging may add (Finagle sends one backup request)."""

    def __post_init__(self) -> None:
        check_seconds("CallPolicy.attempt_timeout", self.attempt_timeout, inf=True)
        check_seconds("CallPolicy.deadline", self.deadline, inf=True)
        check_int_range("CallPolicy.max_attempts", self.max_attempts, 1)
        for name in ("backoff", "cluster_backoff"):
            check_instance(
                f"CallPolicy.{name}", getattr(self, name), (BackoffPolicy,), "a BackoffPolicy"
            )
        check_seconds("CallPolicy.hedge_delay", self.hedge_delay, zero=True, optional=True)
        check_int_range("CallPolicy.max_hedges", self.max_hedges, 0)

    def with_overrides(
        self,
        *,
        deadline: float | None = None,
        attempt_timeout: float | None = None,
        hedge_delay: float | None = None,
        max_attempts: int | None = None,
    ) -> CallPolicy:
        """This policy with the given (non-None) values replaced."""
        changes: dict[str, object] = {}
        if deadline is not None:
            changes["deadline"] = deadline
        if attempt_timeout is not None:
            changes["attempt_timeout"] = attempt_timeout
        if hedge_delay is not None:
            changes["hedge_delay"] = hedge_delay
        if max_attempts is not None:
            changes["max_attempts"] = max_attempts
        return replace(self, **changes) if changes else self  # type: ignore[arg-type]

    @property
    def hedging(self) -> bool:
        """Whether hedging is on."""
        return self.hedge_delay is not None and self.max_hedges > 0


def check_call_arguments(fn: object, idempotent: object, policy: object, classify: object) -> None:
    """The arguments of ``pool.call``/``call_sync`` a ``CallPolicy`` does not check itself
    (``deadline``, ``attempt_timeout`` and ``hedge_delay`` are checked as its fields)."""
    if not callable(fn):
        raise TypeError(f"fn must be a callable taking an Endpoint, not {type(fn).__name__}")
    check_instance("idempotent", idempotent, (bool,), "a bool")
    if policy is not None:
        check_instance("policy", policy, (CallPolicy,), "a CallPolicy or None")
    if classify is not None and not callable(classify):
        raise TypeError(f"classify must be a callable or None, not {type(classify).__name__}")
