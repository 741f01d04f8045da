"""Build the source a target string asks for: :func:`from_target`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcresolve.arguments import check_instance
from mcresolve.consul.client import ConsulClient
from mcresolve.consul.config import ConsulAddress, ConsulConfig
from mcresolve.consul.watch import SHARED_WATCHES, SharedWatchRegistries, WatchRegistry
from mcresolve.sources.arbiter import ArbiterPolicy
from mcresolve.sources.base import Source
from mcresolve.sources.composite import ResilientSource
from mcresolve.sources.dns import DnsCache, DnsSource
from mcresolve.sources.health import HealthSource
from mcresolve.sources.prepared_query import PreparedQuerySource
from mcresolve.sources.standby import StandbySource
from mcresolve.sources.static import StaticSource
from mcresolve.sources.target import (
    DnsTarget,
    HealthTarget,
    HostPort,
    PreparedQueryTarget,
    StaticTarget,
    Target,
    parse_target,
)

__all__ = ["from_target"]

Cleanup = Callable[[], Awaitable[None]]


def from_target(
    target: str | Target,
    *,
    consul: ConsulClient | ConsulConfig | None = None,
    registry: WatchRegistry | None = None,
    dns_cache: DnsCache | None = None,
    shared: SharedWatchRegistries = SHARED_WATCHES,
) -> Source:
    """The source for ``target`` (a string is parsed with
    :func:`~mcresolve.sources.target.parse_target`, raising
    :class:`~mcresolve.sources.target.TargetError` when it is invalid).

    Consul targets watch through ``registry`` when it is given (and the target names no agent);
    otherwise through a lease on the process-wide ``shared`` registries
    (:data:`~mcresolve.consul.watch.SHARED_WATCHES`), keyed by the Consul configuration and the
    event loop: every source of the process watching the same service, datacenter, filters and
    consistency with the same configuration on the same loop shares one request stream, without
    passing anything around. The configuration is ``consul`` (a client, shared by identity, or
    a config), else :meth:`ConsulConfig.from_env`; a target naming its agent
    (``consul://host:port/svc``) uses that address with the other settings (token, TLS) of the
    given or environment config. Prepared-query executions use the client of the registry
    the source watches through (``registry``'s, or the shared one of the lease), and are shared
    the same way (:mod:`~mcresolve.sources.query_stream`): one execution stream per query,
    configuration and loop in the process. Whatever this function creates (client,
    lease) is closed when the source stops; what was passed in is left open.

    A stage-3 target (unless ``standby=0``) and a stage-2 target with ``failover=`` get warm
    standby datacenters (:class:`~mcresolve.sources.standby.StandbySource`, around the stage's
    source and inside the resilience wrapper).

    Every source except a static list is wrapped in a
    :class:`~mcresolve.sources.composite.ResilientSource` (last known good, suspect empty
    answers, snapshot file and fallback from the target's common options).
    """
    check_instance(
        "target",
        target,
        (str, StaticTarget, DnsTarget, HealthTarget, PreparedQueryTarget),
        "a target string or a parsed Target",
    )
    if consul is not None:
        check_instance(
            "consul", consul, (ConsulClient, ConsulConfig), "a ConsulClient or ConsulConfig or None"
        )
    if registry is not None:
        check_instance("registry", registry, (WatchRegistry,), "a WatchRegistry or None")
    if dns_cache is not None:
        check_instance("dns_cache", dns_cache, (DnsCache,), "a DnsCache or None")
    spec = parse_target(target) if isinstance(target, str) else target
    if isinstance(spec, StaticTarget):
        return StaticSource(spec)
    cleanup: list[Cleanup] = []
    primary: Source
    if isinstance(spec, DnsTarget):
        primary = DnsSource(spec, cache=dns_cache)
    else:
        primary = _consul_source(spec, consul, registry, shared, cleanup)
    fallback_target = spec.options.fallback
    fallback: Callable[[], Source] | None = None
    if fallback_target is not None:

        def fallback() -> Source:
            return from_target(
                fallback_target,
                consul=consul,
                registry=registry,
                dns_cache=dns_cache,
                shared=shared,
            )

    return ResilientSource(
        primary,
        policy=ArbiterPolicy.from_options(spec.options),
        fallback=fallback,
        snapshot=spec.options.snapshot,
        cleanup=cleanup,
    )


def _consul_source(
    spec: HealthTarget | PreparedQueryTarget,
    consul: ConsulClient | ConsulConfig | None,
    registry: WatchRegistry | None,
    shared: SharedWatchRegistries,
    cleanup: list[Cleanup],
) -> Source:
    """The health or prepared-query source of a Consul target, watching through ``registry``
    or a lease on ``shared`` (see :func:`from_target`); what it creates goes to ``cleanup``."""
    watches: WatchRegistry
    if spec.agent is None and registry is not None:
        watches = registry
    else:
        lease = shared.lease(_config_for(spec.agent, consul))
        cleanup.insert(0, lease.aclose)
        watches = lease
    if isinstance(spec, HealthTarget):
        health = HealthSource(spec, watches)
        if spec.failover:
            return StandbySource.for_health(health, spec, watches)
        return health
    # executions use the registry's client: the shared one of this configuration and loop, so
    # that every source of the process executing this query follows one execution stream
    query = PreparedQuerySource(spec, None, watches)
    if spec.standby:  # its reads (the query's definition, its order) use the same client
        return StandbySource.for_query(query, spec, None, watches)
    return query


def _config_for(
    agent: HostPort | None, consul: ConsulClient | ConsulConfig | None
) -> ConsulClient | ConsulConfig:
    """The client given, or the configuration a Consul target uses (its own agent address with
    the given or environment settings)."""
    if agent is None and isinstance(consul, ConsulClient):
        return consul
    if isinstance(consul, ConsulClient):
        config = consul.config
    elif consul is None:
        config = ConsulConfig.from_env()
    else:
        config = consul
    if agent is not None:
        scheme = config.addresses[0].scheme if config.addresses else "http"
        config = config.with_options(addresses=(ConsulAddress.parse(str(agent), scheme),))
    return config
