"""Stage 2: a blocking watch on ``/v1/health/service/<name>?passing``.

The watch itself (blocking-query rules, backoff, index resets, sharing one request stream
between every consumer of the same service/datacenter/filters/port) is
:class:`mcresolve.consul.watch.WatchRegistry`'s, and so is converting each answer into endpoints
(:class:`~mcresolve.consul.models.HealthAnswer`); this adapter turns its events into
:class:`~mcresolve.sources.base.Resolution` values: an answer with rejected instances is published
without them (or, when every instance was rejected, as an error with the last good set kept);
a failed request as an error with the last good set kept (``stale``).
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Sequence
from typing import Any

from mcresolve.arguments import check_instance
from mcresolve.consul.models import Consistency, HealthAnswer, ServiceEntry, convert_entries
from mcresolve.consul.watch import (
    HealthServiceSpec,
    Subscription,
    WatchFailure,
    WatchRegistry,
    WatchUpdate,
)
from mcresolve.endpoint import Endpoint
from mcresolve.sources.base import PublishingSource
from mcresolve.sources.target import HealthTarget

__all__ = ["HealthSource", "entries_to_endpoints", "health_spec"]

_log = logging.getLogger(__name__)

_DATACENTER = operator.attrgetter("datacenter")

_CONSISTENCY = {
    "default": Consistency.DEFAULT,
    "stale": Consistency.STALE,
    "consistent": Consistency.CONSISTENT,
    "cached": Consistency.CACHED,
}


def health_spec(target: HealthTarget) -> HealthServiceSpec:
    """The shared-watch key for ``target`` (passing instances only)."""
    return HealthServiceSpec(
        service=target.service,
        datacenter=target.dc,
        passing=True,
        tags=() if target.tag is None else (target.tag,),
        node_meta=target.node_meta,
        near=target.near,
        consistency=_CONSISTENCY[target.consistency],
        port=target.options.port,
        filter=target.filter,
        peer=target.peer,
        ns=target.ns,
        partition=target.partition,
        address=target.address,
    )


def entries_to_endpoints(
    entries: Sequence[ServiceEntry], datacenter: str = "", default_port: int | None = None
) -> tuple[Endpoint, ...]:
    """Endpoints for health entries, in Consul's order (the usable part of
    :func:`~mcresolve.consul.models.convert_entries`: an instance registered without a port takes
    ``default_port``; one that cannot be connected to is left out)."""
    return convert_entries(entries, datacenter, default_port).endpoints


def answering_datacenter(endpoints: Sequence[Endpoint], asked: str | None) -> str | None:
    """The datacenter that answered: the one asked for, else the one every endpoint is in."""
    if asked:
        return asked
    datacenters = set(map(_DATACENTER, endpoints))
    datacenters.discard("")
    return datacenters.pop() if len(datacenters) == 1 else None


class HealthSource(PublishingSource):
    """Publishes the passing instances of a service from a shared blocking watch.

    Every change Consul reports becomes a new :class:`Resolution` (Consul wakes the watch 2–30 ms
    after a check changes). A failed request is published with the last known good endpoints
    kept (``stale``) while the watch backs off and retries.
    """

    def __init__(self, target: HealthTarget, registry: WatchRegistry) -> None:
        check_instance("target", target, (HealthTarget,), "a HealthTarget")
        check_instance("registry", registry, (WatchRegistry,), "a WatchRegistry")
        super().__init__(str(target))
        self._target = target
        self._registry = registry
        self._spec = health_spec(target)
        self._subscription: Subscription[Any] | None = None

    @property
    def spec(self) -> HealthServiceSpec:
        """The watch key (shared with every other consumer of the same key)."""
        return self._spec

    async def start(self) -> None:
        if self._subscription is None and not self._stopped:
            self._subscription = self._registry.subscribe(self._spec, self._on_event)

    async def _run(self) -> None:  # pragma: no cover - driven by the watch's callbacks
        return None

    async def _on_stop(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.aclose()

    def _on_event(self, event: WatchUpdate[Any] | WatchFailure[Any]) -> None:
        try:
            if isinstance(event, WatchFailure):
                self._publish_error(event.error)
                return
            answer = event.value
            if not isinstance(answer, HealthAnswer):  # a spec of another kind: decode here
                answer = HealthAnswer.decode(
                    answer, self._target.dc or "", self._target.options.port
                )
            converted = answer.converted
            self._publish_converted(
                converted,
                answering_datacenter(converted.endpoints, self._target.dc),
                event.meta.address,
                log=False,  # the watch logged it, once for all its subscribers
            )
        except Exception as exc:  # a bug: publish it rather than lose the update unseen
            _log.exception("source %s: cannot use a watch event", self)
            self._publish_error(exc)
