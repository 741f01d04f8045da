"""Build the source a target string asks for: :func:`from_target`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcresolve.consul.client import ConsulClient
from mcresolve.consul.config import ConsulAddress, ConsulConfig
from mcresolve.consul.watch import WatchRegistry
from mcresolve.sources.arbiter import ArbiterPolicy
from mcresolve.sources.base import Source
from mcresolve.sources.composite import ResilientSource
from mcresolve.sources.dns import DnsCache, DnsSource
from mcresolve.sources.health import HealthSource
from mcresolve.sources.prepared_query import PreparedQuerySource
from mcresolve.sources.static import StaticSource
from mcresolve.target import (
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
) -> Source:
    """The source for ``target`` (a string is parsed with :func:`~mcresolve.target.parse_target`,
    raising :class:`~mcresolve.target.TargetError` when it is invalid).

    Consul targets use, in order: ``registry`` (its client; share one registry per process so
    that every pool watching the same service shares one request stream), else ``consul`` (a
    client, or a config to create one), else :meth:`ConsulConfig.from_env`. A target naming its
    agent (``consul://host:port/svc``) gets its own client with that address and the other
    settings (token, TLS) of the given or environment config. Whatever this function creates
    is closed when the source stops; what was passed in is left open.

    Every source except a static list is wrapped in a
    :class:`~mcresolve.sources.composite.ResilientSource` (last known good, suspect empty
    answers, snapshot file and fallback from the target's common options).
    """
    spec = parse_target(target) if isinstance(target, str) else target
    if isinstance(spec, StaticTarget):
        return StaticSource(spec)
    cleanup: list[Cleanup] = []
    primary: Source
    if isinstance(spec, DnsTarget):
        primary = DnsSource(spec, cache=dns_cache)
    else:
        client, watches = _consul_for(spec.agent, consul, registry, cleanup)
        if isinstance(spec, HealthTarget):
            primary = HealthSource(spec, watches)
        else:
            assert isinstance(spec, PreparedQueryTarget)
            primary = PreparedQuerySource(spec, client, watches)
    fallback_target = spec.options.fallback
    fallback: Callable[[], Source] | None = None
    if fallback_target is not None:

        def fallback() -> Source:
            return from_target(
                fallback_target, consul=consul, registry=registry, dns_cache=dns_cache
            )

    return ResilientSource(
        primary,
        policy=ArbiterPolicy.from_options(spec.options),
        fallback=fallback,
        snapshot=spec.options.snapshot,
        cleanup=cleanup,
    )


def _consul_for(
    agent: HostPort | None,
    consul: ConsulClient | ConsulConfig | None,
    registry: WatchRegistry | None,
    cleanup: list[Cleanup],
) -> tuple[ConsulClient, WatchRegistry]:
    """The client and watch registry a Consul target uses (creating what is missing)."""
    if agent is None and registry is not None:
        return registry.client, registry
    client: ConsulClient
    if agent is None and isinstance(consul, ConsulClient):
        client = consul
    else:
        if isinstance(consul, ConsulClient):
            config = consul.config
        elif consul is None:
            config = ConsulConfig.from_env()
        else:
            config = consul
        if agent is not None:
            scheme = config.addresses[0].scheme if config.addresses else "http"
            config = config.with_options(addresses=(ConsulAddress.parse(str(agent), scheme),))
        client = ConsulClient(config)
        cleanup.append(client.close)
    watches = WatchRegistry(client)
    cleanup.insert(0, watches.aclose)
    return client, watches
