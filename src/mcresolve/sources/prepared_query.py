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

Executions are shared (:mod:`mcresolve.sources.query_stream`): every source of the process with
the same client, watch registry, event loop, target and settings follows one execution stream,
so fifty pools on one target cost Consul what one pool costs, and their ``refresh_now()``
requests are coalesced into one execution.

A failed execution is any exception: the agent unreachable, an error status, a malformed answer
(:class:`~mcresolve.consul.errors.ConsulProtocolError`), anything unexpected. It is published
with the last good set kept (``stale``) and retried after the backoff: no answer stops the
source. Instances that cannot be endpoints (a port outside 1..65535, a bad address) are rejected
one by one (:func:`~mcresolve.consul.models.convert_entries`): the others are published, with an
:class:`~mcresolve.sources.base.AnswerRejected` naming the agent and the rejected instances.
"""

from __future__ import annotations

import asyncio
import random

from mcresolve.arguments import check_instance, check_optional_instances, check_seconds
from mcresolve.consul.client import ConsulClient
from mcresolve.consul.watch import WatchRegistry
from mcresolve.sources.base import PublishingSource
from mcresolve.sources.query_stream import (
    SHARED_QUERY_STREAMS,
    QueryAnswered,
    QueryOutcome,
    QueryStreams,
    QuerySubscription,
    StreamSettings,
)
from mcresolve.sources.refresh import RefreshDamping
from mcresolve.sources.target import PreparedQueryTarget
from mcresolve.timing import BackoffPolicy, RandomSource

__all__ = ["PreparedQuerySource"]


class PreparedQuerySource(PublishingSource):
    """Publishes the result of a prepared query, re-executed as described in the module doc.

    ``client`` executes the query (``None``: the client of ``registry``, which is then required).
    ``registry`` provides the local health watch (``None``: periodic refresh only).
    ``damping`` rules how often :meth:`refresh_now` may re-execute while the answer stays the
    same (default :class:`~mcresolve.sources.refresh.RefreshDamping`). ``streams`` is the table
    of shared execution streams (default: the process-wide one).
    """

    def __init__(
        self,
        target: PreparedQueryTarget,
        client: ConsulClient | None,
        registry: WatchRegistry | None = None,
        *,
        min_interval: float = 0.05,
        backoff: BackoffPolicy | None = None,
        damping: RefreshDamping | None = None,
        random_source: RandomSource = random.random,
        streams: QueryStreams = SHARED_QUERY_STREAMS,
    ) -> None:
        check_instance("target", target, (PreparedQueryTarget,), "a PreparedQueryTarget")
        if client is not None or registry is None:
            check_instance("client", client, (ConsulClient,), "a ConsulClient")
        check_optional_instances(
            ("registry", registry, WatchRegistry),
            ("backoff", backoff, BackoffPolicy),
            ("damping", damping, RefreshDamping),
        )
        check_seconds("min_interval", min_interval, zero=True)
        check_instance("streams", streams, (QueryStreams,), "a QueryStreams")
        super().__init__(str(target))
        self._target = target
        self._client = client
        self._registry = registry
        self._settings = StreamSettings(
            min_interval,
            backoff or BackoffPolicy(base=0.25, cap=min(target.refresh, 10.0)),
            damping,
            random_source,
        )
        self._streams = streams
        self._subscription: QuerySubscription | None = None
        self._executions_before = 0

    @property
    def executions(self) -> int:
        """Executions sent so far by the (shared) stream this source follows (observability
        and tests)."""
        subscription = self._subscription
        if subscription is None:
            return self._executions_before
        return subscription.stream.executions

    def refresh_now(self) -> None:
        """Re-execute: at once after a change, else damped (coalesced with every other
        subscriber's requests)."""
        if self._subscription is not None:
            self._subscription.stream.request()

    async def _run(self) -> None:
        registry = None if self._registry is None else self._registry.shared()
        client = self._client
        if client is None:
            assert registry is not None  # checked by __init__
            client = registry.client
        subscription = self._streams.subscribe(
            self._target, client, registry, self._settings, self._on_outcome
        )
        self._subscription = subscription
        try:
            await subscription.wait()
        finally:
            self._executions_before = subscription.stream.executions
            self._subscription = None
            # shielded: closing the last subscription awaits the stream task it cancels
            await asyncio.shield(subscription.aclose())

    def _on_outcome(self, outcome: QueryOutcome) -> None:
        if isinstance(outcome, QueryAnswered):
            self._publish_converted(outcome.converted, outcome.datacenter, outcome.agent)
        else:
            self._publish_error(outcome.error)
