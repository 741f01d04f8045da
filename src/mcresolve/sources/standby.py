"""Warm standby datacenters: the next datacenter's passing instances, known ahead of need.

A prepared query fails over to another datacenter only once Consul's checks have turned the
local instances critical (a check interval or more after they died), and a plain health watch
never does. Meanwhile every request to the dead local nodes fails. :class:`StandbySource` wraps
the stage's own source and adds, to each of its resolutions, the passing instances of the
datacenter(s) traffic would go to next, each endpoint carrying its datacenter. The pool keeps
using the local datacenter while it has a usable endpoint and moves to the most preferred other
datacenter with one as soon as every local endpoint has failed or been ejected
(:mod:`mcresolve.balancer.locality`, rule 2): at once, without waiting for Consul's checks or a
re-execution. When Consul's answer catches up (the query answers from the other datacenter, or
the local instances recover) it takes over again, and fail-back keeps the locality hold-down.

Where the order comes from:

* **stage 3** (on by default, ``standby=N`` datacenters, ``0`` turns it off): the query's
  definition, read by name with ``GET /v1/query/<name>/explain`` (Consul's API docs,
  ``website/content/api-docs/query.mdx`` "Explain Prepared Query": the fully rendered query,
  templates interpolated; ACL ``query:read``; recorded for Consul 1.0.8 in the golden file
  ``06_prepared_queries.json``). The order is Consul's own ``queryFailover``
  (``agent/consul/prepared_query_endpoint.go``): ``Failover.Targets`` datacenters in order
  (Consul 1.14+; peer targets are skipped), else the ``NearestN`` nearest datacenters then the
  ``Failover.Datacenters`` not already chosen, both limited to the known datacenters of
  ``GET /v1/catalog/datacenters``, which Consul sorts by estimated median round-trip time
  ("List Datacenters" in ``api-docs/catalog.mdx``). A token that may not read the definition
  (403): the datacenters executions have answered from, in the order first seen.
* **stage 2** (opt-in, ``consul://svc?failover=dc2,dc3``): the datacenters listed, every one
  kept warm.

The standby set obeys the query's own filters, so it never offers an instance the query would
not: it watches ``/v1/health/service/<svc>?dc=<dc>&passing`` (the same shared watch the
prepared-query source opens for a datacenter it has failed over to: one idle blocking request
per wait period) and keeps the instances whose tags, node meta and service meta match the
query's ``Service.Tags`` (every plain tag present, no ``!tag`` present, case-insensitively),
``NodeMeta`` and ``ServiceMeta``; ``?passing`` is at least as strict as ``OnlyPassing`` and
``IgnoreCheckIDs``. When the definition cannot be read, only instances that an execution has
answered from that datacenter are offered, while the watch still lists them as passing. A query
whose ``Service`` names a peer, namespace or partition gets no standby (not modelled). Stage 2
watches with the target's own filters (tag, node meta, ``filter=``).

The decisions are pure (:func:`failover_order`, :func:`standby_plan`, :func:`merge`,
:meth:`QueryFilters.keeps`); :class:`StandbySource` carries them out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mcresolve.arguments import check_instance, check_int_range, check_seconds
from mcresolve.consul.client import ConsulClient
from mcresolve.consul.errors import PermissionDenied
from mcresolve.consul.models import HealthAnswer, ServiceEntry, convert_entries
from mcresolve.consul.watch import (
    HealthServiceSpec,
    Subscription,
    WatchFailure,
    WatchRegistry,
    WatchUpdate,
)
from mcresolve.endpoint import Endpoint, Key
from mcresolve.sources.base import PublishingSource, Resolution, Source
from mcresolve.sources.health import health_spec
from mcresolve.sources.target import DEFAULT_STANDBY, HealthTarget, PreparedQueryTarget

__all__ = [
    "QueryFilters",
    "StandbyPlan",
    "StandbyPolicy",
    "StandbySource",
    "StandbyView",
    "failover_order",
    "merge",
    "offered_endpoints",
    "standby_plan",
    "view_of_definition",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StandbyPolicy:
    """How many datacenters to keep warm, and how soon to read a definition again."""

    datacenters: int = DEFAULT_STANDBY
    """Standby datacenters, next in the failover order (see
    :data:`~mcresolve.sources.target.DEFAULT_STANDBY`: the next one)."""
    reread: float = 10.0
    """Seconds before reading the query's definition again after a failed read (the agent
    down, the query not defined yet): a stage-3 target's default ``refresh`` period."""

    def __post_init__(self) -> None:
        check_int_range("StandbyPolicy.datacenters", self.datacenters, 0)
        check_seconds("StandbyPolicy.reread", self.reread)


@dataclass(frozen=True, slots=True)
class QueryFilters:
    """What a prepared query keeps of a datacenter's passing instances (its ``Service``
    block's ``Tags``, ``NodeMeta`` and ``ServiceMeta``)."""

    tags: tuple[str, ...] = ()
    node_meta: tuple[tuple[str, str], ...] = ()
    service_meta: tuple[tuple[str, str], ...] = ()

    def keeps(self, entry: ServiceEntry) -> bool:
        """The query would answer ``entry`` (given its checks pass): Consul's ``tagFilter``
        (case-insensitive, ``!tag`` excludes) and exact meta matches, as in
        ``agent/consul/prepared_query_endpoint.go``."""
        present = {tag.lower() for tag in entry.service.tags}
        for tag in self.tags:
            wanted = tag.lower()
            if wanted.startswith("!"):
                if wanted[1:] in present:
                    return False
            elif wanted not in present:
                return False
        node_meta, service_meta = entry.node.meta, entry.service.meta
        return all(node_meta.get(k) == v for k, v in self.node_meta) and all(
            service_meta.get(k) == v for k, v in self.service_meta
        )


@dataclass(frozen=True, slots=True)
class StandbyView:
    """What is known of where a target fails over: the service, the other datacenters in
    order, and the query's filters (``None``: unknown, only instances an execution answered
    are offered)."""

    service: str
    order: tuple[str, ...]
    filters: QueryFilters | None = QueryFilters()


@dataclass(frozen=True, slots=True)
class StandbyPlan:
    """Which datacenters to watch and whose instances to offer as standby."""

    watched: tuple[str, ...]
    offered: tuple[str, ...]


def failover_order(
    failover: Mapping[str, Any], others_by_rtt: Sequence[str] | None
) -> tuple[str, ...]:
    """The datacenters a query's ``Failover`` block tries, in order (Consul's
    ``queryFailover``). ``others_by_rtt``: the other known datacenters, nearest first
    (``None``: unknown; ``NearestN`` then adds nothing and every listed name counts as known)."""
    known = None if others_by_rtt is None else list(others_by_rtt)
    order: list[str] = []
    targets = failover.get("Targets")
    if isinstance(targets, list) and targets:
        for target in targets:
            if not isinstance(target, Mapping) or target.get("Peer"):
                continue
            dc = target.get("Datacenter")
            if isinstance(dc, str) and dc and (known is None or dc in known) and dc not in order:
                order.append(dc)
        return tuple(order)
    nearest = failover.get("NearestN")
    if isinstance(nearest, int) and not isinstance(nearest, bool) and nearest > 0 and known:
        order.extend(known[:nearest])
    for dc in failover.get("Datacenters") or ():
        if isinstance(dc, str) and dc and (known is None or dc in known) and dc not in order:
            order.append(dc)
    return tuple(order)


def view_of_definition(
    definition: Mapping[str, Any], others_by_rtt: Sequence[str] | None, local: str | None
) -> StandbyView | None:
    """The view an ``/explain`` answer (``{"Query": {...}}``) gives; ``None`` when the query
    has no standby this module can offer (no service, or a peer/namespace/partition)."""
    query = definition.get("Query", definition)
    service = query.get("Service") if isinstance(query, Mapping) else None
    if not isinstance(service, Mapping):
        return None
    name = service.get("Service")
    if not isinstance(name, str) or not name:
        return None
    if any(service.get(key) for key in ("Peer", "Namespace", "Partition")):
        return None
    failover = service.get("Failover")
    order = failover_order(failover if isinstance(failover, Mapping) else {}, others_by_rtt)
    filters = QueryFilters(
        tags=tuple(t for t in service.get("Tags") or () if isinstance(t, str)),
        node_meta=_pairs(service.get("NodeMeta")),
        service_meta=_pairs(service.get("ServiceMeta")),
    )
    return StandbyView(name, tuple(dc for dc in order if dc != local), filters)


def standby_plan(
    order: Sequence[str], answered: str | None, local: str | None, count: int
) -> StandbyPlan:
    """The datacenters to offer: the ``count`` next in ``order`` after the one that answered
    (the first ``count`` while the local one answers). Watched as well: the first ``count``
    (kept open across a failover, so the watch a prepared-query source shares stays up)."""
    candidates = [dc for dc in order if dc != local]
    if count <= 0 or not candidates:
        return StandbyPlan((), ())
    start = candidates.index(answered) + 1 if answered in candidates else 0
    offered = tuple(candidates[start : start + count])
    watched = tuple(dict.fromkeys([*candidates[:count], *offered]))
    return StandbyPlan(watched, offered)


def merge(primary: Resolution, standby: Sequence[Endpoint], order: Sequence[str]) -> Resolution:
    """``primary`` with the standby endpoints after its own (those it already has left out)
    and the failover order as the resolution's datacenter preference."""
    keys = {e.key for e in primary.endpoints}
    extra = tuple(e for e in standby if e.key not in keys)
    return replace(primary, endpoints=primary.endpoints + extra, preference=tuple(order))


def offered_endpoints(
    answer: HealthAnswer,
    filters: QueryFilters | None,
    spec: HealthServiceSpec,
    answered: frozenset[Key] = frozenset(),
) -> list[Endpoint]:
    """The standby endpoints of one datacenter's passing instances (``answer``, watched with
    ``spec``): those the query's ``filters`` keep, or with unknown filters (``None``) those an
    execution answered (``answered``)."""
    if filters is None:
        return [e for e in answer.endpoints if e.key in answered]
    kept = [entry for entry in answer.entries if filters.keeps(entry)]
    if len(kept) == len(answer.entries):
        return list(answer.endpoints)
    dc = spec.datacenter or ""
    return list(convert_entries(kept, dc, spec.port, address=spec.address).endpoints)


def _pairs(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in value.items()))


Learn = Callable[["StandbySource"], Awaitable["StandbyView | None"]]


class StandbySource(PublishingSource):
    """A source's resolutions with the standby endpoints added (see the module doc).

    Build it with :meth:`for_query` (stage 3) or :meth:`for_health` (stage 2).
    """

    def __init__(
        self,
        primary: Source,
        registry: WatchRegistry,
        *,
        spec_for: Callable[[str, str], HealthServiceSpec],
        local: str | None,
        count: int,
        view: StandbyView | None = None,
        learn: Learn | None = None,
        reread: float = 10.0,
    ) -> None:
        check_instance("primary", primary, (Source,), "a Source")
        check_instance("registry", registry, (WatchRegistry,), "a WatchRegistry")
        super().__init__(primary.description)
        self._primary = primary
        self._registry = registry
        self._spec_for = spec_for
        self._local = local
        self._count = count
        self._view = view
        self._learn = learn
        self._reread = reread
        self._watches: dict[str, Subscription[Any]] = {}
        self._answers: dict[str, HealthAnswer] = {}
        self._answered_keys: dict[str, frozenset[Key]] = {}
        self._remove_listener: Callable[[], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def for_query(
        cls,
        primary: Source,
        target: PreparedQueryTarget,
        client: ConsulClient | None,
        registry: WatchRegistry,
        policy: StandbyPolicy | None = None,
    ) -> StandbySource:
        """Standby for a prepared query: the order is learnt from its definition, read with
        ``client`` (``None``: the registry's client, the shared one of its configuration)."""
        policy = policy or StandbyPolicy(datacenters=target.standby)
        port = target.options.port

        def spec_for(service: str, dc: str) -> HealthServiceSpec:
            return HealthServiceSpec(service, datacenter=dc, port=port, address=target.address)

        async def learn(source: StandbySource) -> StandbyView | None:
            reader = registry.client if client is None else client  # on the source's loop
            return await _learn_query(target, reader, source)

        return cls(
            primary,
            registry,
            spec_for=spec_for,
            local=target.dc,
            count=policy.datacenters,
            learn=learn,
            reread=policy.reread,
        )

    @classmethod
    def for_health(
        cls, primary: Source, target: HealthTarget, registry: WatchRegistry
    ) -> StandbySource:
        """Standby for a health target's ``failover=`` datacenters (its own filters)."""

        def spec_for(service: str, dc: str) -> HealthServiceSpec:
            return health_spec(replace(target, dc=dc, failover=()))

        view = StandbyView(target.service, target.failover, filters=QueryFilters())
        return cls(
            primary,
            registry,
            spec_for=spec_for,
            local=target.dc,
            count=len(target.failover),
            view=view,
        )

    @property
    def primary(self) -> Source:
        """The wrapped source."""
        return self._primary

    @property
    def view(self) -> StandbyView | None:
        """What is known of the failover order (``None`` until learnt)."""
        return self._view

    @property
    def watched(self) -> tuple[str, ...]:
        """The datacenters watched now."""
        return tuple(self._watches)

    async def start(self) -> None:
        if self._stopped or self._remove_listener is not None:
            return
        self._remove_listener = self._primary.add_listener(self._on_primary)
        await self._primary.start()
        await super().start()
        if self._primary.current is not None:
            self._on_primary(self._primary.current)

    def refresh_now(self) -> None:
        self._primary.refresh_now()

    async def _run(self) -> None:
        while self._view is None and self._learn is not None:
            try:
                view = await self._learn(self)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the agent down, the query not defined yet: later
                _log.info(
                    "source %s: cannot read the failover order yet (%s); again in %.0f s",
                    self,
                    exc,
                    self._reread,
                )
                await asyncio.sleep(self._reread)
                continue
            if view is None:
                _log.info("source %s: no standby datacenter for this query", self)
                return
            self._set_view(view)

    def _set_view(self, view: StandbyView) -> None:
        self._view = view
        _log.info(
            "source %s: failover order %s%s; standby %s",
            self,
            ",".join(view.order) or "(none)",
            "" if view.filters is not None else " (answered so far; definition not readable)",
            ",".join(standby_plan(view.order, None, self._local, self._count).offered) or "none",
        )
        self._republish()

    def set_local(self, datacenter: str | None) -> None:
        """The local datacenter (learnt after construction)."""
        self._local = datacenter

    # --- events ------------------------------------------------------------------------------

    def _on_primary(self, resolution: Resolution) -> None:
        view = self._view
        answered = resolution.datacenter
        if (
            view is not None
            and view.filters is None
            and answered
            and answered != self._local
            and not resolution.stale
        ):
            keys = frozenset(e.key for e in resolution.endpoints if e.datacenter == answered)
            self._answered_keys[answered] = keys
            if answered not in view.order:
                self._set_view(replace(view, order=(*view.order, answered)))
                return
        self._republish()

    def _on_watch(self, dc: str) -> Callable[[WatchUpdate[Any] | WatchFailure[Any]], None]:
        def on_event(event: WatchUpdate[Any] | WatchFailure[Any]) -> None:
            if isinstance(event, WatchFailure):
                return  # the last answer stays: a standby set is a hint, the pool verifies
            answer = event.value
            if not isinstance(answer, HealthAnswer):
                answer = HealthAnswer.decode(answer, dc)
            self._answers[dc] = answer
            self._republish()

        return on_event

    # --- carrying out ------------------------------------------------------------------------

    def _republish(self) -> None:
        primary = self._primary.current
        if primary is None or self._stopped:
            return
        view = self._view
        if view is None:
            if primary != self._current:
                self._publish(primary)
            return
        plan = standby_plan(view.order, primary.datacenter, self._local, self._count)
        self._set_watches(view.service, plan.watched)
        standby: list[Endpoint] = []
        for dc in plan.offered:
            answer = self._answers.get(dc)
            if answer is not None:
                standby.extend(self._endpoints_of(dc, answer, view))
        merged = merge(primary, standby, view.order)
        if merged != self._current:
            self._publish(merged)

    def _endpoints_of(self, dc: str, answer: HealthAnswer, view: StandbyView) -> list[Endpoint]:
        spec = self._spec_for(view.service, dc)
        return offered_endpoints(
            answer, view.filters, spec, self._answered_keys.get(dc, frozenset())
        )

    def _set_watches(self, service: str, wanted: Sequence[str]) -> None:
        for dc in [dc for dc in self._watches if dc not in wanted]:
            self._answers.pop(dc, None)
            self._spawn(self._watches.pop(dc).aclose())
        for dc in wanted:
            if dc not in self._watches:
                spec = self._spec_for(service, dc)
                self._watches[dc] = self._registry.subscribe(spec, self._on_watch(dc))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_stop(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
        await self._primary.aclose()
        watches, self._watches = list(self._watches.values()), {}
        for subscription in watches:
            await subscription.aclose()
        for task in list(self._tasks):
            try:
                await task
            except Exception:  # closing a subscription: nothing left to do about it
                _log.debug("source %s: closing a standby watch failed", self, exc_info=True)


async def _learn_query(
    target: PreparedQueryTarget, client: ConsulClient, source: StandbySource
) -> StandbyView | None:
    """Read the query's failover order (see the module doc); raises on a transient failure."""
    local = target.dc
    if local is None:
        local = await _agent_datacenter(client)
        source.set_local(local)
    try:
        others: list[str] | None = await client.catalog_datacenters()
    except PermissionDenied:
        others = None
    if others is not None and local is None and others:
        local = others[0]  # sorted by round-trip time: the local one (distance 0) first
        source.set_local(local)
    if others is not None:
        others = [dc for dc in others if dc != local]
    try:
        definition = await client.query_explain(target.query, dc=target.dc)
    except PermissionDenied:
        # the token may execute the query but not read it: learn the service from an
        # execution, the order and the instances from what executions answer
        result = await client.query_execute(target.query, dc=target.dc, limit=1)
        if not result.service:
            return None
        return StandbyView(result.service, (), filters=None)
    return view_of_definition(definition, others, local)


async def _agent_datacenter(client: ConsulClient) -> str | None:
    try:
        return (await client.agent_features()).datacenter  # read once per client
    except Exception as exc:  # the order can still be learnt; local then from the catalog
        _log.debug("cannot ask the agent for its datacenter: %s", exc)
        return None
