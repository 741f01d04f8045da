"""The clients compared side by side: each offers blocking ``read``/``write`` on one object.

* ``plain``: ``minio.Minio`` with its DEFAULT settings (urllib3 300 s timeouts, 5 retries, also
  on 503 with ``Retry-After``) on the address Consul DNS gave once at start-up (stage 1 without
  library help: resolved, cached, never re-resolved). When several answers come back we follow
  the application instance that landed on the node the single-node faults hit; instances pinned
  elsewhere see nothing of those faults.
* ``mcresolve-dns`` / ``mcresolve-health`` / ``mcresolve-query`` (stages 1-3):
  :class:`mcresolve.minio.ResilientMinio` on the stage's target string, with the benchmark's
  attempt timeout. ``ResilientMinio`` has no hedging (its calls run through the pool's
  synchronous ``call_sync``), so ``mcresolve-query-hedged`` shows what hedging adds: reads through
  the stage-3 pool's asyncio ``pool.call(..., hedge_delay=...)`` on the per-endpoint clients of
  the same ``ResilientMinio`` (writes as ``mcresolve-query``).
* ``multiminio``: ``multiminio.MultiMinio`` (PyPI) over one client per node, in the order the
  single-node faults hurt most (faulted node first, then the local datacenter, then the remote
  one), each client with the benchmark's short timeouts and no urllib3 retries. SeaweedFS does
  not serve MinIO's ``/minio/health/live``, which MultiMinio probes; the adapter probes the
  gateway's liveness URL ``/healthz`` instead (MinIO's liveness would answer 200 too).
* ``haproxy``: one client (short timeouts, no retries) on an HAProxy in front of the nodes
  (:mod:`benchmarks.failover.haproxy`).
* ``sidecar``: one plain client (short timeouts, no retries) on the mcresolve sidecar's http
  mode (:class:`mcresolve.sidecar.http_mode.HttpListener`) over the stage-3 pool, the way an
  unmodified application uses it. The listener runs in this process, on the loop thread of its
  background pool (a deployed sidecar is a process of its own).

Each peer logs which node it sent each attempt to (``visits``) where it can know it, and reaches
Consul only through its own counting relays.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.rdatatype
import minio
import urllib3
from benchmarks.failover.environment import LOCAL_DC, REMOTE_DC, BenchEnvironment
from benchmarks.failover.haproxy import HAProxyProcess, HAProxyServer, HAProxySettings
from benchmarks.failover.records import NodeVisit, PoolChange
from benchmarks.failover.relay import ConsulRelays

__all__ = ["PEER_KINDS", "Peer", "PeerSettings", "open_peer"]

REGION = "us-east-1"


@dataclass(frozen=True)
class PeerSettings:
    """What every tuned peer shares (seconds)."""

    attempt_timeout: float = 1.0
    connect_timeout: float = 1.0
    deadline: float = 3.0
    hedge_delay: float | None = 0.05
    workers: int = 32


class Peer:
    """One client under test."""

    kind: str = ""
    description: str = ""

    def __init__(self, relays: ConsulRelays | None) -> None:
        self.relays = relays
        self.visits: list[NodeVisit] = []
        self.pool_changes: list[PoolChange] = []
        self._visits_lock = threading.Lock()

    @property
    def consul_requests(self) -> int:
        """Requests this peer has sent to Consul so far (HTTP and DNS)."""
        return self.relays.counts.total if self.relays is not None else 0

    def consul_breakdown(self) -> dict[str, int]:
        """Consul requests by HTTP path / DNS transport."""
        return dict(self.relays.counts.by_label) if self.relays is not None else {}

    def visit(self, endpoint: str, at: float | None = None) -> None:
        with self._visits_lock:
            self.visits.append(NodeVisit(time.monotonic() if at is None else at, endpoint))

    @property
    def knows_nodes(self) -> bool:
        """Whether ``visits`` says which node each attempt went to."""
        return True

    def client(self) -> minio.Minio:
        """The ``minio.Minio``-compatible object requests go through."""
        raise NotImplementedError

    def before_call(self) -> None:
        """Hook: record a visit for peers that know their node before the call."""

    def read(self, bucket: str, key: str) -> int:
        """GET one object, read it whole; returns its size."""
        self.before_call()
        response = self.client().get_object(bucket, key)
        try:
            return len(response.read())
        finally:
            response.close()
            response.release_conn()

    def write(self, bucket: str, key: str, data: bytes) -> None:
        """PUT one object from bytes (replayable)."""
        self.before_call()
        self.client().put_object(bucket, key, io.BytesIO(data), len(data))

    async def close(self) -> None:
        """Release what the peer holds (threads stuck in a request are abandoned)."""


def _short_http(settings: PeerSettings, read_timeout: float | None = None) -> urllib3.PoolManager:
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(
            connect=settings.connect_timeout, read=read_timeout or settings.attempt_timeout
        ),
        retries=False,
        maxsize=settings.workers,
    )


async def _srv_lookup(relays: ConsulRelays, name: str) -> list[str]:
    """``host:port`` of every SRV answer for ``name`` through the peer's DNS relay, in order."""
    resolver = dns.asyncresolver.Resolver(configure=False)
    host, port = relays.dns_address.split(":")
    resolver.nameservers = [host]
    resolver.port = int(port)
    resolver.lifetime = 5.0
    answer = await resolver.resolve(name, "SRV", tcp=False)
    addresses: dict[str, str] = {}
    for rrset in answer.response.additional:
        if rrset.rdtype == dns.rdatatype.A:
            for item in rrset:
                addresses[rrset.name.to_text()] = item.address
    out = []
    for record in answer:
        target = record.target.to_text()
        out.append(f"{addresses.get(target, '127.0.0.1')}:{record.port}")
    return out


# -- peers --------------------------------------------------------------------------------------


class PlainMinioPeer(Peer):
    kind = "plain"
    description = "minio.Minio, default settings, address from Consul DNS resolved once"

    def __init__(self, relays: ConsulRelays, endpoint: str, env: BenchEnvironment) -> None:
        super().__init__(relays)
        self.endpoint = endpoint
        self._client = minio.Minio(
            endpoint, access_key=env.access_key, secret_key=env.secret_key, secure=False
        )

    def client(self) -> minio.Minio:
        return self._client

    def before_call(self) -> None:
        self.visit(self.endpoint)


class ResilientPeer(Peer):
    description = "mcresolve ResilientMinio"

    def __init__(self, relays: ConsulRelays, kind: str, client: Any, background: Any) -> None:
        super().__init__(relays)
        self.kind = kind
        self._client = client
        self._background = background

        def on_attempt(record: Any) -> None:
            endpoint = record.endpoint
            self.visit(f"{endpoint.address}:{endpoint.port}", record.started)

        def on_event(event: Any) -> None:
            endpoint = event.endpoint
            if endpoint is not None:
                node = f"{endpoint.address}:{endpoint.port}"
                self.pool_changes.append(PoolChange(event.at, event.kind.value, node))

        self._remove_listener: Callable[[], None] = client.pool.add_attempt_listener(on_attempt)
        self._unsubscribe: Callable[[], None] = client.pool.events.subscribe(on_event)

    def client(self) -> minio.Minio:
        client: minio.Minio = self._client
        return client

    async def close(self) -> None:
        self._remove_listener()
        self._unsubscribe()
        await asyncio.to_thread(self._client.close)
        await asyncio.to_thread(self._background.close)


class HedgedReadPeer(ResilientPeer):
    """Stage 3 with hedged reads: ``pool.call`` (asyncio, hedging) on ResilientMinio's clients."""

    description = "mcresolve stage-3 pool.call with hedging (reads), ResilientMinio (writes)"

    def __init__(
        self, relays: ConsulRelays, kind: str, client: Any, background: Any, settings: PeerSettings
    ) -> None:
        super().__init__(relays, kind, client, background)
        self._settings = settings
        self._executor = concurrent.futures.ThreadPoolExecutor(
            settings.workers * 2, thread_name_prefix="bench-hedged"
        )

    def read(self, bucket: str, key: str) -> int:
        from mcresolve.minio.classify import classify_exception

        pool = self._client.pool
        executor = self._executor

        def get(endpoint: Any) -> int:
            response = self._client.client_for(endpoint).get_object(bucket, key)
            try:
                return len(response.read())
            finally:
                response.close()
                response.release_conn()

        async def attempt(endpoint: Any) -> int:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(executor, get, endpoint)

        def classify(exc: BaseException, context: Any) -> Any:
            return classify_exception(
                exc,
                method="GET",
                from_every_endpoint=context.every_endpoint_tried,
                idempotent=True,
                now_epoch=time.time(),
            )

        call = pool.call(attempt, hedge_delay=self._settings.hedge_delay, classify=classify)
        future = asyncio.run_coroutine_threadsafe(call, self._background.loop)
        result: int = future.result()
        return result

    async def close(self) -> None:
        await super().close()
        self._executor.shutdown(wait=False, cancel_futures=True)


class MultiMinioPeer(Peer):
    kind = "multiminio"
    description = "multiminio.MultiMinio (fallback order) over per-node clients"

    def __init__(
        self,
        relays: ConsulRelays,
        endpoints: list[str],
        env: BenchEnvironment,
        settings: PeerSettings,
    ) -> None:
        super().__init__(relays)
        from multiminio import MultiMinio  # type: ignore[import-untyped]
        from multiminio.multiminio import HealthStatus  # type: ignore[import-untyped]

        health_http = urllib3.PoolManager(
            timeout=urllib3.Timeout(total=MultiMinio.HEALTH_CHECK_TIMEOUT), retries=False
        )

        class SeaweedMultiMinio(MultiMinio):  # type: ignore[misc]
            """MultiMinio probing the gateway's liveness URL (SeaweedFS has no /minio/...)."""

            def _check_health_status(self, client: minio.Minio) -> HealthStatus:
                url = self._get_client_url(client)
                started = self._ts_type.now()
                status: int | Exception
                try:
                    status = health_http.request("GET", f"{url}/healthz").status
                except Exception as exc:  # MultiMinio records any probe error the same way
                    status = exc
                return HealthStatus(status, float(self._ts_type.now() - started))

        self.endpoints = endpoints
        self.clients = [
            minio.Minio(
                e,
                access_key=env.access_key,
                secret_key=env.secret_key,
                secure=False,
                region=REGION,
                http_client=_short_http(settings),
            )
            for e in endpoints
        ]
        self._client = SeaweedMultiMinio(self.clients)

    def client(self) -> minio.Minio:
        client: minio.Minio = self._client
        return client

    def before_call(self) -> None:
        self.visit(self.endpoints[self._client._current_client_index])

    async def close(self) -> None:
        # MultiMinio retries a failed call in a loop for up to ``fallback_timeout`` (60 s),
        # spinning when its cached health says the failing node is fine; threads the workload
        # abandoned would keep spinning into the next scenario. End their loops now.
        self._client._fallback_timeout = 0.0


class HAProxyPeer(Peer):
    kind = "haproxy"
    description = "minio.Minio (short timeouts) through HAProxy with health checks + redispatch"

    def __init__(
        self,
        relays: ConsulRelays,
        process: HAProxyProcess,
        env: BenchEnvironment,
        settings: PeerSettings,
    ) -> None:
        super().__init__(relays)
        self.process = process
        # HAProxy retries itself: give the client room for its retries within the deadline.
        self._client = minio.Minio(
            process.endpoint,
            access_key=env.access_key,
            secret_key=env.secret_key,
            secure=False,
            region=REGION,
            http_client=_short_http(settings, settings.deadline),
        )

    @property
    def knows_nodes(self) -> bool:
        return False

    def client(self) -> minio.Minio:
        return self._client

    async def close(self) -> None:
        await self.process.stop()


class SidecarPeer(Peer):
    kind = "sidecar"
    description = "minio.Minio (short timeouts) through the mcresolve sidecar (http mode, stage 3)"

    def __init__(
        self,
        relays: ConsulRelays,
        background: Any,
        listener: Any,
        env: BenchEnvironment,
        settings: PeerSettings,
    ) -> None:
        super().__init__(relays)
        self._background = background
        self._listener = listener
        host, port = listener.address
        # the sidecar retries itself within its deadline: the client waits that long
        self._client = minio.Minio(
            f"{host}:{port}",
            access_key=env.access_key,
            secret_key=env.secret_key,
            secure=False,
            region=REGION,
            http_client=_short_http(settings, settings.deadline + settings.attempt_timeout),
        )

        def on_attempt(record: Any) -> None:
            endpoint = record.endpoint
            self.visit(f"{endpoint.address}:{endpoint.port}", record.started)

        self._remove_listener: Callable[[], None] = background.pool.add_attempt_listener(on_attempt)

    def client(self) -> minio.Minio:
        return self._client

    async def close(self) -> None:
        self._remove_listener()
        await asyncio.to_thread(self._background.run, self._listener.aclose(), 10.0)
        await asyncio.to_thread(self._background.close)


# -- construction -----------------------------------------------------------------------------

PEER_KINDS: tuple[str, ...] = (
    "plain",
    "mcresolve-dns",
    "mcresolve-health",
    "mcresolve-query",
    "mcresolve-query-hedged",
    "mcresolve-query-nostandby",
    "mcresolve-health-failover",
    "multiminio",
    "haproxy",
    "sidecar",
)

#: The peers a run has unless told otherwise: every kind but stage 3 without its warm standby
#: (``standby=0``, the stage-3 behaviour before standby datacenters, kept for comparison runs).
DEFAULT_PEERS = tuple(k for k in PEER_KINDS if k != "mcresolve-query-nostandby")

_STAGE_OF = {
    "mcresolve-dns": "dns",
    "mcresolve-health": "consul",
    "mcresolve-query": "query",
    "mcresolve-query-hedged": "query",
    "mcresolve-query-nostandby": "query",
    "mcresolve-health-failover": "consul",
}

#: Target options of the peers that differ from their stage's plain target.
_OPTIONS_OF = {
    "mcresolve-query-nostandby": "?standby=0",
    "mcresolve-health-failover": f"?failover={REMOTE_DC}",
}


def mcresolve_target(kind: str, env: BenchEnvironment, relays: ConsulRelays) -> str:
    """The stage's target string, pointed at the peer's own relays."""
    service = env.service
    stage = _STAGE_OF[kind]
    options = _OPTIONS_OF.get(kind, "")
    if stage == "dns":
        return f"dns://{service}.service.consul?server={relays.dns_address}"
    if stage == "consul":
        return f"consul://{relays.http_address}/{service}{options}"
    return f"consul+query://{relays.http_address}/{service}{options}"


async def open_peer(kind: str, env: BenchEnvironment, settings: PeerSettings) -> Peer:
    """Build and start one peer of ``kind`` (see :data:`PEER_KINDS`)."""
    relays = await env.open_relays()
    victim = env.victim.storage.endpoint
    if kind == "plain":
        answers = await _srv_lookup(relays, f"{env.service}.service.consul")
        endpoint = victim if victim in answers else answers[0]
        return PlainMinioPeer(relays, endpoint, env)
    if kind in _STAGE_OF:
        from mcresolve.minio import HttpPolicy, ResilientMinio
        from mcresolve.pool import EndpointPool, PoolPolicy
        from mcresolve.pool.call_policy import CallPolicy

        hedged = kind.endswith("hedged")
        policy = CallPolicy(
            attempt_timeout=settings.attempt_timeout,
            deadline=settings.deadline,
            hedge_delay=settings.hedge_delay if hedged else None,
        )
        http = HttpPolicy(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.attempt_timeout,
            max_connections=settings.workers,
        )
        target = mcresolve_target(kind, env, relays)

        def build() -> tuple[Any, Any]:
            background = EndpointPool.start_in_thread(
                target, ready_timeout=10.0, policy=PoolPolicy(call=policy)
            )
            client = ResilientMinio(
                background,
                access_key=env.access_key,
                secret_key=env.secret_key,
                secure=False,
                region=REGION,
                http=http,
                call_policy=policy,
            )
            return background, client

        background, client = await asyncio.to_thread(build)
        if hedged:
            return HedgedReadPeer(relays, kind, client, background, settings)
        return ResilientPeer(relays, kind, client, background)
    if kind == "multiminio":
        local = await _srv_lookup(relays, f"{env.service}.service.consul")
        remote = await _srv_lookup(relays, f"{env.service}.service.{REMOTE_DC}.consul")
        ordered = sorted(local, key=lambda e: e != victim) + remote
        return MultiMinioPeer(relays, ordered, env, settings)
    if kind == "haproxy":
        local = await _srv_lookup(relays, f"{env.service}.service.consul")
        remote = await _srv_lookup(relays, f"{env.service}.service.{REMOTE_DC}.consul")
        servers = [HAProxyServer(f"{LOCAL_DC}-{i}", *_split(e)) for i, e in enumerate(local)]
        servers += [
            HAProxyServer(f"{REMOTE_DC}-{i}", *_split(e), backup=True) for i, e in enumerate(remote)
        ]
        process = HAProxyProcess(
            servers,
            HAProxySettings(
                connect_timeout=settings.connect_timeout, server_timeout=settings.attempt_timeout
            ),
        )
        await process.start()
        return HAProxyPeer(relays, process, env, settings)
    if kind == "sidecar":
        from mcresolve.pool import EndpointPool, PoolPolicy
        from mcresolve.pool.call_policy import CallPolicy
        from mcresolve.sidecar.http_mode import HttpListener

        policy = CallPolicy(attempt_timeout=settings.attempt_timeout, deadline=settings.deadline)
        target = mcresolve_target("mcresolve-query", env, relays)

        def build_sidecar() -> tuple[Any, Any]:
            background = EndpointPool.start_in_thread(
                target, ready_timeout=10.0, policy=PoolPolicy(call=policy)
            )
            listener = HttpListener(("127.0.0.1", 0), background.pool)
            background.run(listener.start(), 10.0)
            return background, listener

        background, listener = await asyncio.to_thread(build_sidecar)
        return SidecarPeer(relays, background, listener, env, settings)
    raise ValueError(f"unknown peer kind {kind!r}; expected one of {', '.join(PEER_KINDS)}")


def _split(endpoint: str) -> tuple[str, int]:
    host, port = endpoint.rsplit(":", 1)
    return host, int(port)
