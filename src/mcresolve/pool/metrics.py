"""Optional Prometheus metrics for endpoint pools (``pip install mcresolve[prometheus]``).

``prometheus_client`` is imported only when :class:`PoolMetrics` is created, so the library
does not depend on it::

    metrics = PoolMetrics()            # registers on prometheus_client's default registry
    detach = metrics.observe(pool)     # attempts, events, endpoint states of this pool

Series (``namespace`` defaults to ``mcresolve``):

* ``<ns>_pool_attempts_total{pool, endpoint, outcome}`` — finished attempts; ``outcome`` is
  ``success``, ``node``, ``cluster`` or ``client`` (the classifier's fault).
* ``<ns>_pool_attempt_duration_seconds{pool}`` — histogram of attempt durations.
* ``<ns>_pool_events_total{pool, kind}`` — pool events (ejected, restored, failover, ...).
* ``<ns>_pool_endpoints{pool, state}`` — endpoints per state (active, standby, ejected),
  refreshed on every event.
* ``<ns>_pool_failed_over{pool}`` — 1 while a datacenter other than the local one is active.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from mcresolve.pool import EndpointPool
from mcresolve.pool.events import PoolEvent
from mcresolve.pool.planner import AttemptRecord

__all__ = ["PoolMetrics"]

_STATES = ("active", "standby", "ejected")
#: Attempt durations from sub-millisecond loopback answers to the 10 s default attempt timeout.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _prometheus() -> Any:
    try:
        return importlib.import_module("prometheus_client")
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            "PoolMetrics needs prometheus-client: pip install 'mcresolve[prometheus]'"
        ) from exc


class PoolMetrics:
    """Prometheus collectors fed by one or more pools (see the module docstring)."""

    def __init__(self, registry: Any = None, namespace: str = "mcresolve") -> None:
        prom = _prometheus()
        kwargs: dict[str, Any] = {"namespace": namespace, "subsystem": "pool"}
        if registry is not None:
            kwargs["registry"] = registry
        self.attempts = prom.Counter(
            "attempts", "Finished attempts by outcome", ["pool", "endpoint", "outcome"], **kwargs
        )
        self.attempt_duration = prom.Histogram(
            "attempt_duration_seconds", "Attempt durations", ["pool"], buckets=_BUCKETS, **kwargs
        )
        self.events = prom.Counter("events", "Pool events by kind", ["pool", "kind"], **kwargs)
        self.endpoints = prom.Gauge("endpoints", "Endpoints by state", ["pool", "state"], **kwargs)
        self.failed_over = prom.Gauge(
            "failed_over", "1 while a remote datacenter is active", ["pool"], **kwargs
        )

    def observe(self, pool: EndpointPool) -> Callable[[], None]:
        """Start recording ``pool``; returns a function that stops it."""
        name = pool.name

        def on_attempt(record: AttemptRecord) -> None:
            fault = record.fault
            outcome = "success" if fault is None else fault.value
            self.attempts.labels(name, record.endpoint.host_port, outcome).inc()
            self.attempt_duration.labels(name).observe(record.duration)

        def on_event(event: PoolEvent) -> None:
            self.events.labels(name, event.kind.value).inc()
            self.refresh(pool)

        remove_attempts = pool.add_attempt_listener(on_attempt)
        remove_events = pool.events.subscribe(on_event)
        self.refresh(pool)

        def detach() -> None:
            remove_attempts()
            remove_events()

        return detach

    def refresh(self, pool: EndpointPool) -> None:
        """Update the gauges from ``pool.snapshot()``."""
        snapshot = pool.snapshot()
        for state in _STATES:
            count = sum(1 for s in snapshot.endpoints if s.state == state)
            self.endpoints.labels(pool.name, state).set(count)
        self.failed_over.labels(pool.name).set(1 if snapshot.failed_over else 0)
