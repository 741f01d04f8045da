"""The endpoint pool: what mcresolve knows about each endpoint, and calls that fail over.

:class:`EndpointPool` consumes a :class:`~mcresolve.sources.Source` (or a target string) and keeps,
per endpoint, the source's health (an endpoint is in the set only while Consul says it passes),
passive outlier state (:mod:`mcresolve.balancer.outlier`), in-flight count and latency EWMA
(:mod:`mcresolve.balancer.ewma`). From these it builds an immutable picker
(:mod:`mcresolve.balancer.picker`) restricted to the active datacenter
(:mod:`mcresolve.balancer.locality`), rebuilt only when something changes (set change,
ejection, un-ejection, datacenter switch); :meth:`EndpointPool.pick` reads the current picker
without a lock.

:meth:`EndpointPool.call` (asyncio) and :meth:`EndpointPool.call_sync` (worker threads) run a
function on endpoints following the pure planner of :mod:`mcresolve.pool.planner`: per-attempt
timeout, overall deadline, retry on a different endpoint, retry budget, backoff once every
endpoint was tried, optional hedging, outcomes fed back into the outlier state. When every
endpoint is ejected or none exists, the pool asks the source to re-resolve
(:meth:`~mcresolve.sources.Source.refresh_now`; stage 3 re-executes its prepared query) and waits
for a new set within the deadline.

Threading: the pool lives on one event loop (its "loop thread"). ``pick``, ``snapshot``,
``call_sync``, :meth:`EndpointPool.attempt` and ``report_*`` are thread-safe; ``call_sync`` must
not run on a thread with a running event loop (it blocks). :class:`BackgroundPool` runs a pool on
the process-wide loop thread of :mod:`mcresolve.pool.loop_thread` for synchronous programs.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from mcresolve.consul.client import ConsulClient
from mcresolve.consul.config import ConsulConfig
from mcresolve.consul.watch import WatchRegistry
from mcresolve.pool.aio import AsyncCalls
from mcresolve.pool.core import (
    AttemptHandle,
    EndpointStatus,
    PoolPolicy,
    PoolSnapshot,
    check_timeout,
)
from mcresolve.pool.planner import (
    Classifier,
    default_classify,
)
from mcresolve.pool.sync import SyncCalls
from mcresolve.sources.base import Source
from mcresolve.target import Target

__all__ = [
    "AttemptHandle",
    "EndpointPool",
    "EndpointStatus",
    "PoolPolicy",
    "PoolSnapshot",
    "check_timeout",
]

if TYPE_CHECKING:
    from mcresolve.pool.background import BackgroundPool

_log = logging.getLogger(__name__)


class EndpointPool(AsyncCalls, SyncCalls):
    """A health-aware failover pool over the endpoints of one source.

    ``source``: a :class:`~mcresolve.sources.Source`, a target string
    (``consul://svc?tag=x``, ``consul+query://svc``, ``dns://...``, ``static://...``) or a parsed
    target. A source built here is stopped by :meth:`close`; a source passed in is started (if
    needed) but left running.

    ``local_datacenter``: which datacenter is local; when None it is, in order: the target's
    ``dc=``, the Consul agent's datacenter (``/v1/agent/self``, when ``consul`` is given), the
    first resolution's datacenter. Endpoints without a datacenter count as local.

    ``consul`` / ``registry``: used to build the source from a target string and to ask the
    agent for its datacenter. ``classify``: default :data:`~mcresolve.pool.planner.Classifier` of
    every call. ``clock``: monotonic seconds (thread-safe; default :func:`time.monotonic`).
    ``rng``: randomness of pickers, ejection jitter and backoff.
    """

    # --- introspection -----------------------------------------------------------------------

    def __repr__(self) -> str:
        balancer = self._balancer
        return (
            f"<EndpointPool {self.name} {len(balancer.endpoints)} endpoint(s) {balancer.picker!r}>"
        )

    def __str__(self) -> str:
        return self.name

    # --- background thread -------------------------------------------------------------------

    @classmethod
    def start_in_thread(
        cls,
        source: str | Target | Callable[[], Source],
        *,
        ready_timeout: float | None = 10.0,
        local_datacenter: str | None = None,
        policy: PoolPolicy | None = None,
        consul: ConsulClient | ConsulConfig | None = None,
        registry: WatchRegistry | None = None,
        classify: Classifier = default_classify,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        name: str | None = None,
    ) -> BackgroundPool:
        """Run a pool on the process-wide event-loop thread (for synchronous programs; pools
        started this way share it, and with it their Consul watches); returns the
        started :class:`BackgroundPool` once the pool has an endpoint
        (:class:`~mcresolve.errors.NoEndpointAvailable` after ``ready_timeout`` seconds), or
        at once with ``ready_timeout=None``. The other parameters are :class:`EndpointPool`'s.
        See :class:`BackgroundPool`."""
        from mcresolve.pool.background import BackgroundPool

        check_timeout("ready_timeout", ready_timeout)
        background = BackgroundPool(
            source,
            local_datacenter=local_datacenter,
            policy=policy,
            consul=consul,
            registry=registry,
            classify=classify,
            clock=clock,
            rng=rng,
            name=name,
        )
        background.start(ready_timeout=ready_timeout)
        return background
