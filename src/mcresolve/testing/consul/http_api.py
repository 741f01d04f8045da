"""Consul 1.0.8's HTTP API for one emulated agent (aiohttp), with its exact formats: pretty JSON,
plain-text errors, 405 with ``Allow``, empty 404s, ``X-Consul-*`` headers where Consul sends them,
blocking queries and ``?dc=`` forwarding."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import random
import weakref
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from . import bexpr
from .agent import ZERO_COORD
from .catalog import (
    CHECK_STATES,
    CRITICAL,
    PASSING,
    WARNING,
    CatalogState,
    CheckRecord,
    NodeRecord,
    ServiceRecord,
)
from .contracts import DatacenterUnreachable, EmulatorError, HttpAnswer
from .decoding import (
    ci_get,
    ci_int,
    ci_str,
    ci_str_list,
    ci_str_map,
    decode_object,
)
from .queries import (
    Query,
    bool_param,
    consistency_mode,
    filter_passing,
    first,
    jittered,
    meta_matches,
    node_meta_filters,
    parse_blocking,
    sort_near,
    tag_matches,
)

if TYPE_CHECKING:
    from .datacenter import Datacenter

JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"


@dataclass
class ApiRequest:
    """A parsed request: method, the path remainder after the route prefix, query, body."""

    method: str
    path: str
    tail: str
    query: Query
    body: bytes


Handler = Callable[[ApiRequest], Awaitable[web.StreamResponse]]


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """Pretty-printed JSON like the dev agent (4-space indent, trailing newline)."""
    text = json.dumps(body, indent=4, ensure_ascii=False) + "\n"
    all_headers = {"Content-Type": JSON_TYPE, "Vary": "Accept-Encoding"} | (headers or {})
    return web.Response(status=status, body=text.encode("utf-8"), headers=all_headers)


def text_response(
    message: str, *, status: int, headers: dict[str, str] | None = None
) -> web.Response:
    """A bare plain-text message (no trailing newline)."""
    all_headers = {"Content-Type": TEXT_TYPE, "Vary": "Accept-Encoding"} | (headers or {})
    return web.Response(status=status, body=message.encode("utf-8"), headers=all_headers)


def empty_response(status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A zero-length body without Content-Type."""
    return web.Response(status=status, headers={"Vary": "Accept-Encoding"} | (headers or {}))


def read_headers(index: int, consistency: str | None) -> dict[str, str]:
    """Query meta headers of server-backed reads."""
    headers = {
        "X-Consul-Index": str(index),
        "X-Consul-Knownleader": "true",
        "X-Consul-Lastcontact": "0",
    }
    if consistency is not None:
        headers["X-Consul-Effective-Consistency"] = consistency
    return headers


def _instances_matching(
    catalog: CatalogState, name: str, tag: str | None, meta: Mapping[str, str]
) -> list[ServiceRecord]:
    """The instances of service ``name`` carrying ``tag`` (any tag when ``None``) on nodes whose
    metadata matches every ``meta`` filter, in :meth:`CatalogState.instances` order."""
    return [
        s
        for s in catalog.instances(name)
        if (tag is None or tag_matches(s.tags, tag))
        and meta_matches(catalog.nodes[s.node.lower()].meta, meta)
    ]


FAILED_RPC_HEADERS = {
    "X-Consul-Index": "0",
    "X-Consul-Knownleader": "false",
    "X-Consul-Lastcontact": "0",
}


#: query parameters that do not select a cache entry
_NOT_KEY = frozenset({"index", "wait", "cached"})

ENTERPRISE_FEATURE = {
    "ns": "Namespaces are a Consul Enterprise feature",
    "partition": "Partitions are a Consul Enterprise feature",
}


def reject_enterprise_meta(headers: Mapping[str, str], query: Query) -> None:
    """A Community Edition agent answers 400 to any non-empty namespace or partition, even
    ``default``, in the header or the query (agent/http_ce.go ``parseEntMeta``,
    ``parseEntMetaPartition``: header first, then the parameter)."""
    checks = (
        ("X-Consul-Namespace", "ns"),
        ("X-Consul-Partition", "partition"),
    )
    for header, param in checks:
        if headers.get(header):
            raise EmulatorError(400, f'Invalid header: "{header}" - {ENTERPRISE_FEATURE[param]}')
        if first(query, param):
            raise EmulatorError(
                400, f'Invalid query parameter: "{param}" - {ENTERPRISE_FEATURE[param]}'
            )


def modern_headers(response: web.StreamResponse, profile: Any) -> None:
    """Headers every modern answer of a wrapped endpoint carries (agent/http.go):
    ``X-Consul-Default-Acl-Policy``; with query meta, ``X-Consul-Query-Backend``
    (``blocking-query`` unless streaming) and an ``X-Consul-Index`` never 0 (``setIndex``)."""
    headers = response.headers
    headers["X-Consul-Default-Acl-Policy"] = profile.acl_default_policy
    if "X-Consul-Index" in headers:
        if headers["X-Consul-Index"] == "0":
            headers["X-Consul-Index"] = "1"
        headers.setdefault("X-Consul-Query-Backend", "blocking-query")


def not_found_modern(path: str) -> web.Response:
    """A modern agent's answer to an unknown path (agent/http.go ``Index``, ``Fprintln``)."""
    if "/v1/" in path:
        text = "Invalid URL path: not a recognized HTTP API endpoint\n"
    else:
        text = (
            "Invalid URL path: if attempting to use the HTTP API, ensure the path starts "
            "with '/v1/'\n"
        )
    return text_response(text, status=404)


def _with_peer(entry: dict[str, Any], peer: str) -> dict[str, Any]:
    """A ``/v1/catalog/service`` element imported from a peer: ``PeerName`` before the
    indexes (structs.ServiceNode, omitempty)."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if key == "CreateIndex":
            out["PeerName"] = peer
        out[key] = value
    return out


class ForwardedError(EmulatorError):
    """An error from a server-backed read: sent with zeroed query meta headers."""


#: the path of the request being served (set per request task, read by the blocking responder)
_REQUEST_PATH: contextvars.ContextVar[str] = contextvars.ContextVar("request_path", default="")


@dataclass(frozen=True, slots=True)
class HeldQuery:
    """A blocking query an agent held (its ``?index`` was current), in Consul-time seconds.

    ``woken`` is true when the index passed ``index`` before the wait ran out, false when the
    wait (``wait``, jitter included) ran out first. Queries answered at once are not held.
    """

    path: str
    index: int
    wait: float
    held_at: float
    answered_at: float
    woken: bool


@dataclass(frozen=True)
class Route:
    prefix: str
    methods: tuple[str, ...]
    handler: Handler
    exact: bool = True
    #: whether a modern CE agent parses ``ns``/``partition`` here (``parseEntMeta``)
    enterprise_meta: bool = True


async def _drop_server_header(request: web.Request, response: web.StreamResponse) -> None:
    """Consul sends no ``Server`` header (recorded); aiohttp adds ``Python/… aiohttp/…``."""
    response.headers.popall("Server", None)


class AgentHttpApi:
    """The aiohttp application of one agent.

    :meth:`of` finds the API of a datacenter's agent, whose read-only counters tell tests what
    the agent saw: :attr:`parked` (blocking queries it holds right now, waiting for a change),
    :meth:`requests_served` (requests received per path) and :attr:`held_queries` (how the
    last blocking queries it held were answered: woken by a change or at the end of their wait).
    """

    #: how many answered held queries :attr:`held_queries` keeps
    HELD_QUERIES_KEPT: ClassVar[int] = 512

    _by_datacenter: ClassVar[weakref.WeakKeyDictionary[Datacenter, AgentHttpApi]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, dc: Datacenter) -> None:
        self.dc = dc
        self._rng = random.Random(dc.seed)
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._parked = 0
        self._held: deque[HeldQuery] = deque(maxlen=self.HELD_QUERIES_KEPT)
        self._paths: Counter[str] = Counter()
        self._cache: dict[tuple[str, Any], tuple[int, float]] = {}
        AgentHttpApi._by_datacenter[dc] = self
        self.app = web.Application(client_max_size=16 * 1024 * 1024)
        self.app.on_response_prepare.append(_drop_server_header)
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        get, put = ("GET",), ("PUT",)
        self.routes: list[Route] = [
            Route("/v1/agent/self", get, self.agent_self, True, False),
            Route("/v1/agent/members", get, self.agent_members, True, False),
            Route("/v1/agent/services", get, self.agent_services),
            Route("/v1/agent/checks", get, self.agent_checks),
            Route("/v1/agent/service/register", put, self.agent_service_register),
            Route("/v1/agent/service/deregister/", put, self.agent_service_deregister, False),
            Route("/v1/agent/check/register", put, self.agent_check_register),
            Route("/v1/agent/check/deregister/", put, self.agent_check_deregister, False),
            Route("/v1/agent/check/pass/", put, self._ttl(PASSING), False),
            Route("/v1/agent/check/warn/", put, self._ttl(WARNING), False),
            Route("/v1/agent/check/fail/", put, self._ttl(CRITICAL), False),
            Route("/v1/agent/check/update/", put, self.agent_check_update, False),
            Route("/v1/catalog/register", put, self.catalog_register),
            Route("/v1/catalog/deregister", put, self.catalog_deregister),
            Route("/v1/catalog/datacenters", get, self.catalog_datacenters, True, False),
            Route("/v1/catalog/nodes", get, self.catalog_nodes),
            Route("/v1/catalog/services", get, self.catalog_services),
            Route("/v1/catalog/service/", get, self.catalog_service, False),
            Route("/v1/catalog/node/", get, self.catalog_node, False),
            Route("/v1/health/service/", get, self.health_service, False),
            Route("/v1/health/checks/", get, self.health_checks, False),
            Route("/v1/health/state/", get, self.health_state, False),
            Route("/v1/health/node/", get, self.health_node, False),
            Route("/v1/coordinate/datacenters", get, self.coordinate_datacenters, True, False),
            Route("/v1/coordinate/nodes", get, self.coordinate_nodes, True, False),
            Route("/v1/status/leader", get, self.status_leader, True, False),
            Route("/v1/status/peers", get, self.status_peers, True, False),
            Route("/v1/query", ("GET", "POST"), self.prepared_query),
            Route("/v1/query/", ("GET", "PUT", "DELETE"), self.prepared_query, False),
        ]

    @classmethod
    def of(cls, dc: Datacenter) -> AgentHttpApi:
        """The HTTP API of ``dc``'s agent (it exists once the agent was started)."""
        api = cls._by_datacenter.get(dc)
        if api is None:
            raise LookupError(f"the agent of {dc.name} was never started")
        return api

    @property
    def parked(self) -> int:
        """Blocking queries this agent is holding now (received with an index that is current,
        waiting for a change or the end of their wait), including ``?dc=`` ones it forwards."""
        return self._parked

    @property
    def held_queries(self) -> tuple[HeldQuery, ...]:
        """The last blocking queries this agent held and answered, oldest first (a query
        failed by its forwarding target going away is not listed)."""
        return tuple(self._held)

    def requests_served(self, path: str | None = None) -> int:
        """Requests this agent received for ``path`` (all paths when ``None``)."""
        return sum(self._paths.values()) if path is None else self._paths[path]

    # ------------------------------------------------------------------------ plumbing

    async def drop_in_flight(self) -> None:
        """Cancel every request being served (the agent is going away)."""
        tasks = [t for t in self._in_flight if not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(task), 0.5)

    def _route(self, path: str) -> tuple[Route, str] | None:
        for route in self.routes:
            if route.exact and path == route.prefix:
                return route, ""
            if not route.exact and path.startswith(route.prefix):
                return route, path[len(route.prefix) :]
        return None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            return await self._serve(request)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        response = await self._serve_routed(request)
        if self.dc.profile.modern and self._route(request.path) is not None:
            modern_headers(response, self.dc.profile)
        return response

    async def _serve_routed(self, request: web.Request) -> web.StreamResponse:
        self._paths[request.path] += 1
        _REQUEST_PATH.set(request.path)
        faults = self.dc.faults
        if faults.delay > 0:
            await asyncio.sleep(faults.delay)
        injected = faults.take(request.path)
        if injected is not None:
            if injected.drop:
                if request.transport is not None:
                    request.transport.close()
                raise asyncio.CancelledError()
            return text_response(injected.message, status=injected.status)
        found = self._route(request.path)
        if found is None:
            if self.dc.profile.modern:
                return not_found_modern(request.path)
            return empty_response(404)
        route, tail = found
        if not route.prefix.startswith("/v1/agent/"):
            limited = faults.take_rate_limit()
            if limited is not None:
                return text_response(limited.message, status=limited.status)
        if request.method not in route.methods:
            if request.method == "OPTIONS":
                return empty_response(200, {"Allow": ",".join(("OPTIONS", *route.methods))})
            return text_response(
                f"method {request.method} not allowed",
                status=405,
                headers={"Allow": ",".join(("OPTIONS", *route.methods))},
            )
        query: dict[str, list[str]] = {}
        for key, value in parse_qsl(request.query_string, keep_blank_values=True):
            query.setdefault(key, []).append(value)
        body = await request.read()
        api_request = ApiRequest(request.method, request.path, unquote(tail), query, body)
        try:
            if self.dc.profile.modern and route.enterprise_meta:
                reject_enterprise_meta(request.headers, query)
            return await route.handler(api_request)
        except ForwardedError as exc:
            return text_response(exc.message, status=exc.status, headers=dict(FAILED_RPC_HEADERS))
        except EmulatorError as exc:
            return text_response(exc.message, status=exc.status)

    def _near(self, query: Query) -> str | None:
        """``?near=``; ``_agent`` means this agent's node, also when reading another DC."""
        near = first(query, "near")
        return self.dc.agent_node if near == "_agent" else near

    def _target(self, query: Query) -> Datacenter:
        """The datacenter a read is for (``?dc=``), forwarding through the WAN."""
        name = first(query, "dc")
        if not name or name == self.dc.name:
            return self.dc
        try:
            target = self.dc.cluster.reach(self.dc.name, name)
        except DatacenterUnreachable as exc:
            raise ForwardedError(exc.status, exc.message) from None
        # The cluster holds this agent's kind of datacenter (no import: datacenter imports us).
        assert isinstance(target, type(self.dc))
        return target

    def _peer(self, query: Query) -> str | None:
        """``?peer=`` on a modern agent (health/catalog service reads)."""
        if not self.dc.profile.modern:
            return None
        return first(query, "peer") or None

    def _peer_target(self, peer: str) -> Datacenter:
        """Whose catalog a peer read follows (the exporting datacenter; this one for an
        unknown peer, which answers an empty list)."""
        link = self.dc.peers.get(peer)
        return self.dc if link is None else link.remote

    def _filter(self, query: Query, target: Datacenter | None) -> bexpr.Expr | None:
        """``?filter=`` on a modern agent (ignored, like any unknown parameter, by 1.0.8).

        An expression go-bexpr refuses is a 500 with its text (issues #7338, #9441: the
        filter is built in the RPC, so the HTTP layer cannot tell it from other errors);
        server reads carry the zeroed query meta, ``?dc=`` reads the ``rpc error making
        call: `` prefix of a forwarded RPC; ``target`` ``None`` = an agent-local endpoint.
        """
        expression = first(query, "filter")
        if not self.dc.profile.modern or not expression:
            return None
        try:
            return bexpr.parse(expression)
        except bexpr.FilterSyntaxError as exc:
            message = bexpr.ERROR_PREFIX + str(exc)
            if target is None:
                raise EmulatorError(500, message) from None
            if target is not self.dc:
                message = "rpc error making call: " + message
            raise ForwardedError(500, message) from None

    async def _blocking(
        self, query: Query, target: Datacenter, compute: Callable[[], tuple[int, Any]]
    ) -> tuple[int, Any]:
        """Run a read as a blocking query: return at once unless ``?index`` is at least the
        current index, else when the index passes it or after wait + jitter."""
        params = parse_blocking(query)
        index, body = compute()
        if params.index == 0 or index > params.index:
            return index, body
        clock = self.dc.clock
        wait = jittered(params.wait, self._rng)
        deadline = clock.now() + clock.scaled(wait)
        held_at = clock.consul_now()

        def held(woken: bool) -> None:
            record = HeldQuery(
                _REQUEST_PATH.get(), params.index, wait, held_at, clock.consul_now(), woken
            )
            self._held.append(record)

        self._parked += 1
        try:
            while True:
                remaining = deadline - clock.now()
                if remaining <= 0:
                    held(woken=False)
                    return compute()
                changed = asyncio.ensure_future(target.catalog.changed_event().wait())
                down = asyncio.ensure_future(target.down_event.wait())
                try:
                    await asyncio.wait(
                        {changed, down}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    changed.cancel()
                    down.cancel()
                if target is not self.dc and not target.running:
                    raise ForwardedError(500, "rpc error making call: EOF")
                index, body = compute()
                if index > params.index:
                    held(woken=True)
                    return index, body
        finally:
            self._parked -= 1

    async def _blocking_read(
        self,
        query: Query,
        target: Datacenter,
        consistency: str | None,
        compute: Callable[[], tuple[int, Any]],
        *,
        streaming: bool = False,
        cacheable: str | None = None,
    ) -> web.Response:
        """:meth:`_blocking`, answered as JSON with the read headers (``X-Consul-Index`` etc.).

        On a modern agent, ``streaming`` endpoints (health) answer from the streaming backend
        when ``?index`` > 0 or ``?cached`` is given (agent/rpcclient/health/health.go), and
        ``cacheable`` ones (named by their cache key) add ``X-Cache``/``Age`` with ``?cached``.
        """
        modern = self.dc.profile.modern
        cached = modern and cacheable is not None and "cached" in query
        if cached and "consistent" in query:
            raise EmulatorError(
                400, "Cannot specify ?cached with ?consistent, conflicting semantics."
            )
        index, body = await self._blocking(query, target, compute)
        if not modern:
            return json_response(body, headers=read_headers(index, consistency))
        use_streaming = (
            streaming and "near" not in query and (cached or parse_blocking(query).index > 0)
        )
        if use_streaming:
            # streaming answers carry no LastContact/KnownLeader (api-docs/features/streaming)
            headers = {"X-Consul-Index": str(index), "X-Consul-Query-Backend": "streaming"}
        else:
            headers = read_headers(index, consistency)
        if cached and cacheable is not None:
            headers |= self._cache_meta(cacheable, query, index)
        return json_response(body, headers=headers)

    def _cache_meta(self, path: str, query: Query, index: int) -> dict[str, str]:
        """``X-Cache``/``Age`` of the agent cache (agent/http.go ``setCacheMeta``): MISS on the
        first read of a key, HIT afterwards, ``Age`` = seconds since the entry was last
        fetched; the cache refreshes itself in the background, so a change makes it fresh."""
        key = (path, tuple(sorted((k, tuple(v)) for k, v in query.items() if k not in _NOT_KEY)))
        now = self.dc.clock.consul_now()
        entry = self._cache.get(key)
        if entry is None:
            self._cache[key] = (index, now)
            return {"X-Cache": "MISS"}
        if entry[0] != index:
            self._cache[key] = entry = (index, now)
        return {"X-Cache": "HIT", "Age": f"{max(0.0, now - entry[1]):.0f}"}

    # --------------------------------------------------------------------------- agent

    async def agent_self(self, req: ApiRequest) -> web.StreamResponse:
        dc = self.dc
        member = dc.member(wan=False)
        return json_response(
            {
                "Config": {
                    "Datacenter": dc.name,
                    "NodeName": dc.agent_node,
                    "NodeID": dc.node_id,
                    "Server": True,
                    "Revision": "",
                    "Version": dc.profile.version,
                },
                "DebugConfig": {"Datacenter": dc.name, "NodeName": dc.agent_node},
                "Coord": dict(ZERO_COORD),
                "Member": member,
                "Stats": {"consul": {"server": "true", "leader": "true"}},
                "Meta": {"consul-network-segment": ""},
            }
        )

    async def agent_members(self, req: ApiRequest) -> web.StreamResponse:
        if "wan" in req.query and first(req.query, "wan") not in ("0", "false"):
            members = []
            for name in self.dc.cluster.datacenters_by_rtt(self.dc.name):
                other = self.dc.cluster_dc(name)
                member = other.member(wan=True)
                if other is not self.dc and other.member_failed():
                    member["Status"] = 4
                members.append(member)
            return json_response(members)
        return json_response([self.dc.member(wan=False)])

    async def agent_services(self, req: ApiRequest) -> web.StreamResponse:
        expr = self._filter(req.query, None)
        services = self.dc.agent.render_services()
        if expr is not None:
            services = {k: v for k, v in services.items() if bexpr.evaluate(expr, v)}
        return json_response(services)

    async def agent_checks(self, req: ApiRequest) -> web.StreamResponse:
        expr = self._filter(req.query, None)
        checks = self.dc.agent.render_checks()
        if expr is not None:
            checks = {k: v for k, v in checks.items() if bexpr.evaluate(expr, v)}
        return json_response(checks)

    async def agent_service_register(self, req: ApiRequest) -> web.StreamResponse:
        self.dc.agent.register_service(decode_object(req.body))
        return empty_response()

    async def agent_service_deregister(self, req: ApiRequest) -> web.StreamResponse:
        self.dc.agent.deregister_service(req.tail)
        return empty_response()

    async def agent_check_register(self, req: ApiRequest) -> web.StreamResponse:
        self.dc.agent.register_check(decode_object(req.body))
        return empty_response()

    async def agent_check_deregister(self, req: ApiRequest) -> web.StreamResponse:
        self.dc.agent.deregister_check(req.tail)
        return empty_response()

    def _ttl(self, status: str) -> Handler:
        async def handler(req: ApiRequest) -> web.StreamResponse:
            self.dc.agent.ttl_update(req.tail, status, first(req.query, "note") or "")
            return empty_response()

        return handler

    async def agent_check_update(self, req: ApiRequest) -> web.StreamResponse:
        body = decode_object(req.body)
        status = ci_str(body, "Status")
        if status not in CHECK_STATES:
            raise EmulatorError(400, f"Invalid check status: '{status}'")
        self.dc.agent.ttl_update(req.tail, status, ci_str(body, "Output"))
        return empty_response()

    # ------------------------------------------------------------------------- catalog

    def _write_target(self, body: dict[str, Any]) -> Datacenter:
        name = ci_str(body, "Datacenter")
        if not name or name == self.dc.name:
            return self.dc
        target = self.dc.cluster.reach(self.dc.name, name)
        # The cluster holds this agent's kind of datacenter (no import: datacenter imports us).
        assert isinstance(target, type(self.dc))
        return target

    async def catalog_register(self, req: ApiRequest) -> web.StreamResponse:
        body = decode_object(req.body)
        node_name = ci_str(body, "Node")
        service_def = ci_get(body, "Service")
        service: ServiceRecord | None = None
        if isinstance(service_def, dict):
            name = ci_str(service_def, "Service")
            service = ServiceRecord(
                node=node_name,
                service_id=ci_str(service_def, "ID") or name,
                name=name,
                tags=ci_str_list(service_def, "Tags"),
                address=ci_str(service_def, "Address"),
                meta=ci_str_map(service_def, "Meta"),
                port=ci_int(service_def, "Port"),
                enable_tag_override=bool(ci_get(service_def, "EnableTagOverride", False)),
            )
        raw_checks: list[dict[str, Any]] = []
        single = ci_get(body, "Check")
        if isinstance(single, dict):
            raw_checks.append(single)
        many = ci_get(body, "Checks")
        if isinstance(many, list):
            raw_checks.extend(c for c in many if isinstance(c, dict))
        target = self._write_target(body)
        if not node_name:
            raise EmulatorError(500, "Must provide node")
        skip_node = bool(ci_get(body, "SkipNodeUpdate", False))
        address = ci_str(body, "Address")
        if not address and not skip_node:
            raise EmulatorError(500, "Must provide address if SkipNodeUpdate is not set")
        if service is not None and not service.name:
            raise EmulatorError(500, "Must provide service name")
        checks = []
        for raw in raw_checks:
            status = ci_str(raw, "Status") or CRITICAL
            if status not in CHECK_STATES:
                raise EmulatorError(500, f"Invalid check status: '{status}'")
            checks.append(
                CheckRecord(
                    node=node_name,
                    check_id=ci_str(raw, "CheckID") or ci_str(raw, "ID"),
                    name=ci_str(raw, "Name"),
                    status=status,
                    notes=ci_str(raw, "Notes"),
                    output=ci_str(raw, "Output"),
                    service_id=ci_str(raw, "ServiceID"),
                )
            )
        existing = target.catalog.node(node_name)
        node = NodeRecord(
            name=node_name,
            address=address or (existing.address if existing else ""),
            node_id=ci_str(body, "ID"),
            tagged_addresses=ci_str_map(body, "TaggedAddresses"),
            meta=ci_str_map(body, "NodeMeta"),
        )
        # Consul 1.0.8 rewrites every check of a catalog registration (ModifyIndex moves even
        # when nothing changed), but skips an identical node or service
        target.catalog.register(
            node, service, checks, keep_node=skip_node, force_check_ids=[c.check_id for c in checks]
        )
        return json_response(True)

    async def catalog_deregister(self, req: ApiRequest) -> web.StreamResponse:
        body = decode_object(req.body)
        target = self._write_target(body)
        node_name = ci_str(body, "Node")
        if not node_name:
            raise EmulatorError(500, "Must provide node")
        service_id = ci_str(body, "ServiceID") or None
        check_id = ci_str(body, "CheckID") or None
        target.catalog.deregister(node_name, service_id=service_id, check_id=check_id)
        return json_response(True)

    async def catalog_datacenters(self, req: ApiRequest) -> web.StreamResponse:
        return json_response(self.dc.cluster.datacenters_by_rtt(self.dc.name))

    async def catalog_nodes(self, req: ApiRequest) -> web.StreamResponse:
        mode = consistency_mode(req.query)
        target = self._target(req.query)
        near = self._near(req.query)
        meta = node_meta_filters(req.query)
        expr = self._filter(req.query, target)  # catalog.mdx "List Nodes": filter, 1.5+

        def compute() -> tuple[int, Any]:
            nodes = [n for n in target.catalog.sorted_nodes() if meta_matches(n.meta, meta)]
            if near:
                distances = target.distances_from(near)
                if distances is not None:
                    nodes = sort_near(nodes, lambda n: n.name, distances)
            body = [target.catalog.render_node(n) for n in nodes]
            if expr is not None:
                body = [node for node in body if bexpr.evaluate(expr, node)]
            return target.catalog.max_index("nodes"), body

        return await self._blocking_read(req.query, target, mode, compute)

    async def catalog_services(self, req: ApiRequest) -> web.StreamResponse:
        mode = consistency_mode(req.query)
        target = self._target(req.query)
        meta = node_meta_filters(req.query)
        expr = self._filter(req.query, target)

        def compute() -> tuple[int, Any]:
            catalog = target.catalog
            if expr is not None:
                kept: dict[str, list[str]] = {}
                for svc in sorted(catalog.services.values(), key=lambda s: (s.node, s.service_id)):
                    node = catalog.nodes[svc.node.lower()]
                    if meta_matches(node.meta, meta) and bexpr.evaluate(
                        expr, catalog.catalog_entry(svc)
                    ):
                        tags = kept.setdefault(svc.name, [])
                        tags.extend(t for t in svc.tags if t not in tags)
                return catalog.max_index("services"), dict(sorted(kept.items()))
            if meta:
                allowed = {
                    n.name.lower() for n in catalog.nodes.values() if meta_matches(n.meta, meta)
                }
                summary: dict[str, list[str]] = {}
                for svc in catalog.services.values():
                    if svc.node.lower() in allowed:
                        tags = summary.setdefault(svc.name, [])
                        tags.extend(t for t in svc.tags if t not in tags)
                return catalog.max_index("services"), dict(sorted(summary.items()))
            return catalog.max_index("services"), catalog.services_summary()

        return await self._blocking_read(req.query, target, mode, compute)

    def _service_name(self, req: ApiRequest) -> str:
        if not req.tail:
            raise EmulatorError(400, "Missing service name")
        return req.tail

    async def catalog_service(self, req: ApiRequest) -> web.StreamResponse:
        name = self._service_name(req)
        mode = consistency_mode(req.query)
        target = self._target(req.query)
        tag = first(req.query, "tag")
        near = self._near(req.query)
        meta = node_meta_filters(req.query)
        expr = self._filter(req.query, target)
        peer = self._peer(req.query)
        if peer is not None:
            target = self._peer_target(peer)

        def compute() -> tuple[int, Any]:
            catalog = target.catalog
            instances = _instances_matching(catalog, name, tag, meta)
            if peer is not None:
                link = self.dc.peers.get(peer)
                if link is None or not link.exports(name):
                    instances = []
            if near:
                distances = target.distances_from(near)
                if distances is not None:
                    instances = sort_near(instances, lambda s: s.node, distances)
            body = [catalog.catalog_entry(s) for s in instances]
            if peer is not None:
                body = [_with_peer(entry, peer) for entry in body]
            if expr is not None:
                body = [entry for entry in body if bexpr.evaluate(expr, entry)]
            return catalog.service_read_index(name, with_checks=False), body

        return await self._blocking_read(req.query, target, mode, compute, cacheable=req.path)

    async def catalog_node(self, req: ApiRequest) -> web.StreamResponse:
        mode = consistency_mode(req.query)
        target = self._target(req.query)
        if not req.tail:
            raise EmulatorError(400, "Missing node name")

        def compute() -> tuple[int, Any]:
            catalog = target.catalog
            node = catalog.node(req.tail)
            index = catalog.max_index("nodes", "services")
            if node is None:
                return index, None
            services = {
                s.service_id: catalog.render_service(s)
                for s in sorted(catalog.services.values(), key=lambda s: s.service_id)
                if s.node.lower() == node.name.lower()
            }
            return index, {"Node": catalog.render_node(node), "Services": services}

        return await self._blocking_read(req.query, target, mode, compute)

    # -------------------------------------------------------------------------- health

    async def health_service(self, req: ApiRequest) -> web.StreamResponse:
        name = self._service_name(req)
        mode = consistency_mode(req.query)
        passing = bool_param(req.query, "passing")
        target = self._target(req.query)
        tag = first(req.query, "tag")
        near = self._near(req.query)
        meta = node_meta_filters(req.query)
        expr = self._filter(req.query, target)
        peer = self._peer(req.query)
        if peer is not None:
            target = self._peer_target(peer)

        def compute() -> tuple[int, Any]:
            catalog = target.catalog
            if peer is not None:
                entries = [
                    e
                    for e in self.dc.peer_health_service(peer, name) or []
                    if (tag is None or tag_matches(e["Service"]["Tags"] or [], tag))
                    and meta_matches(e["Node"]["Meta"], meta)
                ]
            else:
                entries = [
                    catalog.health_entry(s) for s in _instances_matching(catalog, name, tag, meta)
                ]
            if expr is not None:
                entries = [entry for entry in entries if bexpr.evaluate(expr, entry)]
            if near:
                entries = target.sort_near(entries, near)
            if passing:
                entries = filter_passing(entries)
            return catalog.service_read_index(name, with_checks=True), entries

        return await self._blocking_read(
            req.query, target, mode, compute, streaming=True, cacheable=req.path
        )

    async def health_checks(self, req: ApiRequest) -> web.StreamResponse:
        name = self._service_name(req)
        mode = consistency_mode(req.query)
        target = self._target(req.query)
        expr = self._filter(req.query, target)

        def compute() -> tuple[int, Any]:
            catalog = target.catalog
            checks = [
                catalog.render_check(c)
                for c in catalog.sorted_checks()
                if c.service_id and c.service_name.lower() == name.lower()
            ]
            if expr is not None:
                checks = [check for check in checks if bexpr.evaluate(expr, check)]
            return catalog.service_read_index(name, with_checks=True), checks

        return await self._blocking_read(req.query, target, mode, compute)

    async def health_state(self, req: ApiRequest) -> web.StreamResponse:
        state = req.tail
        if state not in (*CHECK_STATES, "any"):
            raise EmulatorError(400, "Bad check state")
        mode = consistency_mode(req.query)
        target = self._target(req.query)
        expr = self._filter(req.query, target)

        def compute() -> tuple[int, Any]:
            catalog = target.catalog
            checks = [
                catalog.render_check(c)
                for c in catalog.sorted_checks()
                if state == "any" or c.status == state
            ]
            if expr is not None:
                checks = [check for check in checks if bexpr.evaluate(expr, check)]
            return catalog.max_index("checks"), checks

        return await self._blocking_read(req.query, target, mode, compute)

    async def health_node(self, req: ApiRequest) -> web.StreamResponse:
        if not req.tail:
            raise EmulatorError(400, "Missing node name")
        mode = consistency_mode(req.query)
        target = self._target(req.query)
        expr = self._filter(req.query, target)

        def compute() -> tuple[int, Any]:
            catalog = target.catalog
            checks = [catalog.render_check(c) for c in catalog.node_checks(req.tail)]
            if expr is not None:
                checks = [check for check in checks if bexpr.evaluate(expr, check)]
            return catalog.max_index("checks"), checks

        return await self._blocking_read(req.query, target, mode, compute)

    # ------------------------------------------------------------------ coordinates etc.

    async def coordinate_datacenters(self, req: ApiRequest) -> web.StreamResponse:
        out = []
        for name in self.dc.cluster.datacenters_by_rtt(self.dc.name):
            other = self.dc.cluster_dc(name)
            coord = other.catalog.coordinates.get(other.agent_node.lower())
            out.append(
                {
                    "Datacenter": name,
                    "AreaID": "wan",
                    "Coordinates": [
                        {
                            "Node": other.agent_node,
                            "Segment": "",
                            "Coord": dict(coord["Coord"]) if coord else dict(ZERO_COORD),
                        }
                    ],
                }
            )
        return json_response(out)

    async def coordinate_nodes(self, req: ApiRequest) -> web.StreamResponse:
        target = self._target(req.query)

        def compute() -> tuple[int, Any]:
            catalog = target.catalog
            coords = [catalog.coordinates[k] for k in sorted(catalog.coordinates)]
            return catalog.max_index("coords"), [dict(c) for c in coords]

        return await self._blocking_read(req.query, target, None, compute)

    async def status_leader(self, req: ApiRequest) -> web.StreamResponse:
        return json_response(f"{self.dc.host}:{self.dc.server_port}")

    async def status_peers(self, req: ApiRequest) -> web.StreamResponse:
        return json_response([f"{self.dc.host}:{self.dc.server_port}"])

    # ----------------------------------------------------------------- prepared queries

    async def prepared_query(self, req: ApiRequest) -> web.StreamResponse:
        store = self.dc.prepared_queries
        if store is None:
            return empty_response(404)
        subpath = req.path[len("/v1/query") :]
        result = store.handle(req.method, subpath, req.query, req.body or None)
        if inspect.isawaitable(result):
            result = await result
        return answer_response(result)


def answer_response(answer: HttpAnswer) -> web.Response:
    """Send an :class:`HttpAnswer` produced by another part of the emulator."""
    headers = dict(answer.headers)
    if answer.json_body:
        return json_response(answer.body, status=answer.status, headers=headers)
    if answer.body == "":
        return empty_response(answer.status, headers)
    content_type = headers.pop("Content-Type", TEXT_TYPE)
    return web.Response(
        status=answer.status,
        body=str(answer.body).encode("utf-8"),
        headers={"Content-Type": content_type, "Vary": "Accept-Encoding"} | headers,
    )
