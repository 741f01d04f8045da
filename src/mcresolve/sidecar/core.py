"""The sidecar: one pool per target, one listener per local address, an admin port, drain.

::

    async with Sidecar([ListenSpec(("127.0.0.1", 9000), "consul+query://storage-object-minio")],
                       admin=("127.0.0.1", 9901)) as sidecar:
        await sidecar.wait_stopped()      # until stop() (a signal handler calls it)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from mcresolve.arguments import check_seconds
from mcresolve.consul.config import ConsulConfig
from mcresolve.pool import EndpointPool, PoolPolicy
from mcresolve.pool.events import PoolEvent
from mcresolve.sidecar.admin import AdminServer, ListenerCollector, prometheus_registry
from mcresolve.sidecar.health import HealthReport, ListenerView, health_report
from mcresolve.sidecar.http_mode import HttpListener, HttpProxyPolicy
from mcresolve.sidecar.listener import Listener
from mcresolve.sidecar.logs import log_event
from mcresolve.sidecar.spec import ListenSpec, SidecarUsageError, format_address
from mcresolve.sidecar.tcp_mode import TcpListener
from mcresolve.sidecar.tcp_rules import TcpProxyPolicy

__all__ = ["DrainPolicy", "Sidecar", "SidecarBindError"]


class SidecarBindError(SidecarUsageError):
    """A listen or admin address could not be bound (in use, not local, no permission)."""


@dataclass(frozen=True, slots=True)
class DrainPolicy:
    """How the sidecar stops on SIGTERM / SIGINT / :meth:`Sidecar.stop`."""

    unready_delay: float = 5.0
    """Seconds between ``/health`` turning 503 and the listeners closing, so that whoever probes
    the sidecar stops sending first. 5 s is MinIO Sidekick's readiness-check interval: a prober
    at that pace sees the 503 before the port closes."""
    grace: float = 25.0
    """Seconds connections in flight may take to finish once the listeners stopped accepting;
    then they are cut. 25 s leaves the unready delay inside Kubernetes' default 30 s
    ``terminationGracePeriodSeconds`` (after which the kubelet kills the process anyway)."""

    def __post_init__(self) -> None:
        check_seconds("DrainPolicy.unready_delay", self.unready_delay, zero=True)
        check_seconds("DrainPolicy.grace", self.grace, zero=True)


class Sidecar:
    """Local ports forwarded through health-aware pools (see ``docs/sidecar.md``).

    ``listens``: what to listen on and where to forward (:class:`ListenSpec`; one pool per
    distinct target, shared by its listeners). ``consul``: the Consul configuration of Consul
    targets (default: the ``CONSUL_*`` environment). ``admin``: address of ``/health`` and
    ``/metrics`` (None: no admin port). Starting binds every address first; an address that
    cannot be bound is a :class:`SidecarBindError` and nothing stays open.
    """

    def __init__(
        self,
        listens: Sequence[ListenSpec],
        *,
        consul: ConsulConfig | None = None,
        admin: tuple[str, int] | None = None,
        pool_policy: PoolPolicy | None = None,
        tcp_policy: TcpProxyPolicy | None = None,
        http_policy: HttpProxyPolicy | None = None,
        drain: DrainPolicy | None = None,
        namespace: str = "mcresolve",
    ) -> None:
        if not listens:
            raise SidecarUsageError("a sidecar needs at least one listen address")
        for spec in listens:
            if not isinstance(spec, ListenSpec):
                raise TypeError(f"listens must hold ListenSpec values, not {type(spec).__name__}")
        bound = [s.listen for s in listens if s.listen[1] != 0]
        if len(bound) != len(set(bound)):
            raise SidecarUsageError("the same listen address is given twice")
        self._specs = tuple(listens)
        self._consul = consul
        self._admin_address = admin
        self._pool_policy = pool_policy
        self._tcp_policy = tcp_policy
        self._http_policy = http_policy
        self._drain = drain or DrainPolicy()
        self._namespace = namespace
        self._pools: dict[str, EndpointPool] = {}
        self._listeners: list[tuple[ListenSpec, Listener]] = []
        self._admin: AdminServer | None = None
        self._draining = False
        self._stopped = asyncio.Event()
        self._detach: list[Any] = []
        self.registry: Any = None

    # --- introspection -----------------------------------------------------------------------

    @property
    def specs(self) -> tuple[ListenSpec, ...]:
        """What the sidecar listens on, in order (as :attr:`listeners`)."""
        return self._specs

    @property
    def listeners(self) -> tuple[Listener, ...]:
        return tuple(listener for _, listener in self._listeners)

    @property
    def pools(self) -> dict[str, EndpointPool]:
        """The pools by target."""
        return dict(self._pools)

    @property
    def admin_address(self) -> tuple[str, int] | None:
        return None if self._admin is None else self._admin.address

    @property
    def draining(self) -> bool:
        return self._draining

    def views(self) -> list[ListenerView]:
        return [
            ListenerView(
                format_address(listener.address),
                listener.mode,
                spec.target,
                self._pools[spec.target].snapshot(),
                listener.stats(),
            )
            for spec, listener in self._listeners
        ]

    def health(self) -> HealthReport:
        """What ``/health`` answers now."""
        return health_report(self.views(), draining=self._draining)

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Build the pools and listeners, bind every address, start the pools."""
        try:
            for spec in self._specs:
                if spec.target not in self._pools:
                    self._pools[spec.target] = EndpointPool(
                        spec.target, consul=self._consul, policy=self._pool_policy
                    )
                pool = self._pools[spec.target]
                self._listeners.append((spec, self._listener(spec, pool)))
            for spec, listener in self._listeners:
                await self._bind(spec.listen, listener.start)
            if self._admin_address is not None:
                self.registry = prometheus_registry()
                self._admin = AdminServer(self._admin_address, self.health, self.registry)
                await self._bind(self._admin_address, self._admin.start)
                log_event("admin", listen=format_address(self._admin.address))
            self._observe()
            for pool in self._pools.values():
                await pool.start()
        except BaseException:
            await self.aclose()
            raise

    def _listener(self, spec: ListenSpec, pool: EndpointPool) -> Listener:
        if spec.mode == "tcp":
            return TcpListener(spec.listen, pool, policy=self._tcp_policy)
        return HttpListener(spec.listen, pool, policy=self._http_policy)

    async def _bind(self, address: tuple[str, int], start: Any) -> None:
        try:
            await start()
        except OSError as error:
            reason = error.strerror or str(error)
            raise SidecarBindError(
                f"cannot listen on {format_address(address)}: {reason}"
            ) from None

    def _observe(self) -> None:
        if self.registry is not None:
            from mcresolve.pool.metrics import PoolMetrics

            metrics = PoolMetrics(self.registry, self._namespace)
            for pool in self._pools.values():
                self._detach.append(metrics.observe(pool))
            self.registry.register(ListenerCollector(self.views, self._namespace))
        for pool in self._pools.values():
            self._detach.append(pool.events.subscribe(_log_pool_event))

    def stop(self) -> None:
        """Ask the sidecar to drain and stop (safe from a signal handler on the loop)."""
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Until :meth:`stop` is called."""
        await self._stopped.wait()

    async def drain(self) -> None:
        """``/health`` turns 503, then after ``unready_delay`` the listeners stop accepting and
        connections in flight get ``grace`` seconds to finish before they are cut."""
        self._draining = True
        policy = self._drain
        log_event("drain_started", unready_delay=policy.unready_delay, grace=policy.grace)
        if policy.unready_delay > 0:
            await asyncio.sleep(policy.unready_delay)
        await asyncio.gather(*(listener.drain(policy.grace) for listener in self.listeners))
        log_event("drained")

    async def aclose(self) -> None:
        """Close everything at once (listeners, admin port, pools)."""
        self._draining = True
        for detach in self._detach:
            detach()
        self._detach.clear()
        for listener in self.listeners:
            await listener.aclose()
        if self._admin is not None:
            await self._admin.aclose()
        for pool in self._pools.values():
            await pool.aclose()


def _log_pool_event(event: PoolEvent) -> None:
    log_event(
        "pool_event",
        logging.INFO,
        pool=event.pool,
        kind=event.kind.value,
        endpoint=None if event.endpoint is None else event.endpoint.host_port,
        datacenter=event.datacenter,
        reason=None if event.reason is None else event.reason.value,
    )
