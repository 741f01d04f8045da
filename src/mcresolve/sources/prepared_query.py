"""Stage 3: execute a prepared query (``/v1/query/<name>/execute``), with Consul's failover.

Prepared queries cannot block (``X-Consul-Index`` is always 0), so the source re-executes:

* periodically, every ``refresh`` seconds with ±20 % jitter (so many clients do not execute in
  lock-step);
* at once when the health of the query's service changes in the local datacenter (a shared
  ``?passing`` blocking watch: all local instances going critical makes Consul fail over to
  another datacenter, their recovery makes it fail back), and in the datacenter that answered
  after a failover; also when that watch fails or recovers (the agent went away or came back);
* when :meth:`PreparedQuerySource.refresh_now` is called (the pool calls it when every endpoint
  is ejected, and again each time it finds nothing usable): at once after the answer changed,
  then damped while executions keep returning the same answer (50 ms doubling to 2 s, see
  :mod:`mcresolve.sources.refresh`); health-watch events are never damped;
* after a failed execution, after a jittered exponential backoff (capped by ``refresh``).

Executions are at least ``min_interval`` apart, so a burst of triggers costs one execution.
Endpoints carry the datacenter that answered (``Datacenter`` in the response); the target's
``address`` option chooses each instance's LAN or WAN address with the rule health answers use
(:func:`~mcresolve.consul.models.choose_address`; ``auto``: WAN for instances of another
datacenter than the agent's, as the agent's own ``translate_wan_addrs`` would).

A failed execution is any exception: the agent unreachable, an error status, a malformed answer
(:class:`~mcresolve.consul.errors.ConsulProtocolError`), anything unexpected. It is published
with the last good set kept (``stale``) and retried after the backoff: no answer stops the
source. Instances that cannot be endpoints (a port outside 1..65535, a bad address) are rejected
one by one (:func:`~mcresolve.consul.models.convert_entries`): the others are published, with an
:class:`~mcresolve.sources.base.AnswerRejected` naming the agent and the rejected instances.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from mcresolve.arguments import check_instance, check_optional_instances, check_seconds
from mcresolve.consul.client import ConsulClient
from mcresolve.consul.errors import ConsulError
from mcresolve.consul.models import PreparedQueryResult
from mcresolve.consul.watch import (
    HealthServiceSpec,
    Subscription,
    WatchFailure,
    WatchRegistry,
    WatchUpdate,
)
from mcresolve.sources.base import PublishingSource
from mcresolve.sources.refresh import RefreshDamper, RefreshDamping
from mcresolve.sources.target import PreparedQueryTarget
from mcresolve.sources.wakeup import RefreshTrigger, Wake
from mcresolve.timing import Backoff, BackoffPolicy, RandomSource, jittered

__all__ = ["PreparedQuerySource"]

_log = logging.getLogger(__name__)


class PreparedQuerySource(PublishingSource):
    """Publishes the result of a prepared query, re-executed as described in the module doc.

    ``registry`` provides the local health watch (``None``: periodic refresh only).
    ``damping`` rules how often :meth:`refresh_now` may re-execute while the answer stays the
    same (default :class:`~mcresolve.sources.refresh.RefreshDamping`).
    """

    def __init__(
        self,
        target: PreparedQueryTarget,
        client: ConsulClient,
        registry: WatchRegistry | None = None,
        *,
        min_interval: float = 0.05,
        backoff: BackoffPolicy | None = None,
        damping: RefreshDamping | None = None,
        random_source: RandomSource = random.random,
    ) -> None:
        check_instance("target", target, (PreparedQueryTarget,), "a PreparedQueryTarget")
        check_instance("client", client, (ConsulClient,), "a ConsulClient")
        check_optional_instances(
            ("registry", registry, WatchRegistry),
            ("backoff", backoff, BackoffPolicy),
            ("damping", damping, RefreshDamping),
        )
        check_seconds("min_interval", min_interval, zero=True)
        super().__init__(str(target))
        self._target = target
        self._client = client
        self._registry = registry
        self._min_interval = min_interval
        self._backoff = Backoff(
            backoff or BackoffPolicy(base=0.25, cap=min(target.refresh, 10.0)), random_source
        )
        self._random = random_source
        self._trigger = RefreshTrigger(RefreshDamper(damping, random_source))
        self._watches: dict[HealthServiceSpec, Subscription[Any]] = {}
        #: Executions sent so far (observability and tests).
        self.executions = 0

    def refresh_now(self) -> None:
        """Re-execute: at once after a change, else damped."""
        self._trigger.request()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_sent = -self._min_interval
        wake = Wake.PERIODIC
        while True:
            wait_min = last_sent + self._min_interval - loop.time()
            if wait_min > 0:
                await asyncio.sleep(wait_min)
            last_sent = loop.time()
            outcome, delay = await self._execute_once()
            self._trigger.observe(outcome, forced=wake is Wake.FORCED)
            wake = await self._trigger.wait(delay)

    async def _execute_once(self) -> tuple[object, float]:
        """Execute once and publish; return the outcome (the endpoints and answering
        datacenter, or the error's type) and the delay before the next periodic execution."""
        target = self._target
        self.executions += 1
        try:
            result = await self._client.query_execute(
                target.query, dc=target.dc, near=target.near, limit=target.limit
            )
            return await self._use(result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure is reported and retried, never raised
            retry_in = self._backoff.failure()
            unexpected = not isinstance(exc, ConsulError)
            _log.log(
                logging.WARNING if self._backoff.failures == 1 else logging.DEBUG,
                "prepared query %s failed (%d in a row, agent %s), retry in %.2f s: %s",
                target.query,
                self._backoff.failures,
                self._agent(),
                retry_in,
                exc,
                exc_info=unexpected and self._backoff.failures == 1,
            )
            self._publish_error(exc)
            return type(exc), retry_in

    async def _use(self, result: PreparedQueryResult) -> tuple[object, float]:
        """Publish an execution's answer and follow its datacenter's health."""
        target = self._target
        converted = result.convert(
            target.options.port,
            address=target.address,
            local_datacenter=await self._client.local_datacenter(target.address),
        )
        if converted.rejected_whole:
            self._backoff.failure()  # a garbage answer is a failure: retried after the backoff
        else:
            self._backoff.success()
        self._publish_converted(converted, result.datacenter, result.meta.address)
        if converted.rejected_whole:
            return ("rejected", converted.rejected), self._backoff.last_delay
        await self._watch_health(result.service, result.datacenter if result.failovers else None)
        outcome = (frozenset(converted.endpoints), result.datacenter)  # Consul shuffles the nodes
        return outcome, jittered(self._target.refresh, self._random())

    def _agent(self) -> str:
        try:
            return self._client.current_address.base_url
        except Exception:  # a stand-in client: never fail a log line
            return "?"

    async def _watch_health(self, service: str, remote_dc: str | None) -> None:
        """Keep watches on ``service`` in the local datacenter and in ``remote_dc``."""
        if self._registry is None or not service:
            return
        port = self._target.options.port
        wanted = {HealthServiceSpec(service, datacenter=self._target.dc, port=port)}
        if remote_dc is not None and remote_dc != self._target.dc:
            wanted.add(HealthServiceSpec(service, datacenter=remote_dc, port=port))
        for spec in [s for s in self._watches if s not in wanted]:
            # shielded: Subscription.aclose awaits the watch task it cancels and would swallow
            # a cancellation of this task arriving meanwhile (stop() would then hang)
            await asyncio.shield(self._watches.pop(spec).aclose())
        for spec in wanted - self._watches.keys():
            self._watches[spec] = self._registry.subscribe(spec, self._health_changed(spec))

    def _health_changed(
        self, spec: HealthServiceSpec
    ) -> Callable[[WatchUpdate[Any] | WatchFailure[Any]], None]:
        def on_event(event: WatchUpdate[Any] | WatchFailure[Any]) -> None:
            # Every event re-executes: an update (the first one too: a change between our
            # execution and the watch's first read must not wait for the periodic refresh), and
            # a failure (the agent may be down: executing reports it now, not at the refresh).
            _log.debug("prepared query %s: %s event", self._target.query, spec.describe())
            self._trigger.signal()

        return on_event

    async def _on_stop(self) -> None:
        watches, self._watches = list(self._watches.values()), {}
        for subscription in watches:
            await subscription.aclose()
