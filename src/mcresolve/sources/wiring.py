"""Wiring: from what a user hands an :class:`~mcresolve.pool.EndpointPool` to what it consumes.

The pool consumes resolutions from a :class:`~mcresolve.sources.Source`. Given a target string or
a parsed target instead, :func:`wire` parses it, builds the source
(:func:`~mcresolve.sources.factory.from_target`) and says which datacenter is local when the
caller did not: the target's ``dc=``, else the Consul agent's own datacenter
(``/v1/agent/self``, asked once at start through :class:`AgentLookup`), else the first
resolution's (decided by the pool). Nothing here runs while the pool serves calls.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TypeGuard

from mcresolve.consul.client import ConsulClient
from mcresolve.consul.config import ConsulConfig
from mcresolve.consul.watch import WatchRegistry
from mcresolve.sources.base import Source
from mcresolve.sources.factory import from_target
from mcresolve.sources.target import (
    DnsTarget,
    HealthTarget,
    PreparedQueryTarget,
    StaticTarget,
    Target,
    parse_target,
)

__all__ = ["AgentLookup", "Wiring", "is_target", "wire"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgentLookup:
    """Who to ask for the local datacenter: a Consul client, closed after the lookup when
    ``owned`` (built here from the same configuration the source uses)."""

    client: ConsulClient
    owned: bool

    async def datacenter(self, timeout: float) -> str | None:  # noqa: ASYNC109 (a fallback, not an error)
        """The agent's datacenter, or None when it cannot say within ``timeout`` seconds (the
        pool then takes the first resolution's)."""
        try:
            async with asyncio.timeout(timeout):
                info = await self.client.agent_self()
        except Exception as exc:  # agent down: fall back to the first resolution's datacenter
            _log.warning("cannot ask the Consul agent for its datacenter: %s", exc)
            return None
        finally:
            if self.owned:
                await self.client.aclose()
        config = info.get("Config")
        dc = config.get("Datacenter") if isinstance(config, dict) else None
        return dc if isinstance(dc, str) and dc else None


@dataclass(frozen=True, slots=True)
class Wiring:
    """What a pool consumes: its source (stopped by the pool when ``owns_source``), the local
    datacenter when known now, and whom to ask for it at start otherwise."""

    source: Source
    owns_source: bool
    local_datacenter: str | None
    agent: AgentLookup | None


def wire(
    source: Source | str | Target,
    *,
    local_datacenter: str | None = None,
    consul: ConsulClient | ConsulConfig | None = None,
    registry: WatchRegistry | None = None,
) -> Wiring:
    """The :class:`Wiring` for ``source`` (a :class:`~mcresolve.sources.Source`, a target string
    or a parsed target). :class:`TypeError` for anything else, naming the parameter."""
    if isinstance(source, Source):
        return Wiring(source, False, local_datacenter, _agent_for(None, consul, registry))
    if isinstance(source, str):
        target: Target = parse_target(source)
    elif is_target(source):
        target = source
    else:
        raise TypeError(
            "source must be a Source, a target string or a parsed target, "
            f"not {type(source).__name__}"
        )
    built = from_target(target, consul=consul, registry=registry)
    if local_datacenter is None and isinstance(target, HealthTarget | PreparedQueryTarget):
        local_datacenter = target.dc
    return Wiring(built, True, local_datacenter, _agent_for(target, consul, registry))


def is_target(value: object) -> TypeGuard[Target]:
    """``value`` is a parsed target."""
    return isinstance(value, StaticTarget | DnsTarget | HealthTarget | PreparedQueryTarget)


def _agent_for(
    target: Target | None,
    consul: ConsulClient | ConsulConfig | None,
    registry: WatchRegistry | None,
) -> AgentLookup | None:
    """The client passed in, the registry's client, or (Consul targets without ``agent=``) a
    client from the same configuration :func:`~mcresolve.sources.factory.from_target` uses."""
    if isinstance(consul, ConsulClient):
        return AgentLookup(consul, False)
    if registry is not None:
        return AgentLookup(registry.client, False)
    if isinstance(target, HealthTarget | PreparedQueryTarget) and target.agent is None:
        return AgentLookup(ConsulClient(consul or ConsulConfig.from_env()), True)
    return None
