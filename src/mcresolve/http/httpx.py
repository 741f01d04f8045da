"""httpx transports that send requests for Consul services through an endpoint pool.

::

    try:
    import httpx
except ImportError as missing:  # pragma: no cover - depends on the installation
    raise ImportError(
        "mcresolve.http.httpx needs httpx: pip install 'mcresolve[httpx]'"
    ) from missing
    from mcresolve.http.httpx import AsyncPoolTransport

    async with httpx.AsyncClient(transport=AsyncPoolTransport()) as client:
        r = await client.get("http://billing.service.consul/invoices")

    with httpx.Client(transport=PoolTransport(targets={"billing": "consul+query://billing"})) as c:
        c.get("http://billing/invoices")

A request whose host is a Consul name (``billing.service.consul``, ``billing.query.consul``),
whose URL is ``consul://…`` / ``consul+query://…``, or whose host is mapped in ``targets`` goes
through the pool of that target (created on first use, closed with the transport): each attempt
is sent by the inner transport to one endpoint, failed attempts are retried on another endpoint
when :func:`mcresolve.http.failover.classify_http` allows it, and failing endpoints are ejected.
Every other request goes to the inner transport untouched. Install with
``pip install mcresolve[httpx]``; ``docs/http.md`` has the rules and measurements.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from mcresolve.endpoint import Endpoint
from mcresolve.errors import CallFailed
from mcresolve.http._pools import (
    AsyncPools,
    AttemptClock,
    RequestOptions,
    SyncPools,
    call_policy,
    check_options,
    final_answer,
    split_targets,
)
from mcresolve.http.failover import (
    HttpFailoverPolicy,
    RequestFacts,
    Route,
    StatusFailure,
    TransportFailure,
    caused_by_certificate,
    classify_http,
    describe_builtin,
    failed_status,
    is_idempotent,
    parse_retry_after,
    route_for,
)
from mcresolve.pool import BackgroundPool, EndpointPool
from mcresolve.pool.planner import AttemptContext, AttemptVerdict
from mcresolve.sources.target import Target

__all__ = [
    "OPTIONS_KEY",
    "AsyncPoolTransport",
    "HttpFailoverPolicy",
    "PoolTransport",
    "RequestOptions",
    "describe_httpx_error",
]

OPTIONS_KEY = "mcresolve"
"""Request extension carrying :class:`RequestOptions`:
``client.post(url, extensions={"mcresolve": RequestOptions(idempotent=True)})``."""

ENDPOINT_KEY = "mcresolve.endpoint"
"""Response extension: the :class:`~mcresolve.endpoint.Endpoint` that answered."""


def describe_httpx_error(exc: BaseException) -> TransportFailure | None:
    """What an httpx exception says about how far the attempt got."""
    if isinstance(exc, httpx.ConnectError):
        if caused_by_certificate(exc):
            return TransportFailure.CERTIFICATE
        return TransportFailure.REFUSED
    if isinstance(exc, httpx.ConnectTimeout):
        return TransportFailure.CONNECT_TIMEOUT
    if isinstance(exc, httpx.PoolTimeout):
        return TransportFailure.LOCAL
    if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout):
        return TransportFailure.TIMEOUT
    if isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.CloseError):
        return TransportFailure.RESET
    if isinstance(exc, httpx.RemoteProtocolError):
        return TransportFailure.RESET
    if isinstance(exc, httpx.HTTPError | httpx.StreamError):
        return None
    return describe_builtin(exc)


def _body_replayable(request: httpx.Request) -> bool:
    if isinstance(request.stream, httpx.ByteStream):
        return True
    try:
        request.content  # noqa: B018 - raises RequestNotRead for an unread stream
    except httpx.RequestNotRead:
        return False
    return True


def _options(request: httpx.Request) -> RequestOptions:
    options = request.extensions.get(OPTIONS_KEY)
    if options is None:
        return RequestOptions()
    if not isinstance(options, RequestOptions):
        raise TypeError(
            f"extensions[{OPTIONS_KEY!r}] must be a mcresolve.http.httpx.RequestOptions, "
            f"got {type(options).__name__}"
        )
    return options


class _Router:
    """What both transports share: routing, request facts, rewriting, classification."""

    def __init__(self, targets: Mapping[str, str], policy: HttpFailoverPolicy) -> None:
        self.targets = dict(targets)
        self.policy = policy

    def route(self, request: httpx.Request) -> Route | None:
        url = request.url
        return route_for(url.scheme, url.host, url.port, self.targets, self.policy)

    def facts(self, request: httpx.Request, options: RequestOptions) -> RequestFacts:
        idempotent = is_idempotent(
            request.method, request.headers.get, self.policy, options.idempotent
        )
        return RequestFacts(request.method, idempotent, _body_replayable(request))

    def classifier(self, facts: RequestFacts) -> Callable[[BaseException, AttemptContext], Any]:
        policy = self.policy

        def classify(exc: BaseException, context: AttemptContext) -> AttemptVerdict:
            if isinstance(exc, StatusFailure):
                return classify_http(exc, facts, context, policy)
            return classify_http(describe_httpx_error(exc), facts, context, policy, repr(exc))

        return classify

    def rewrite(
        self,
        request: httpx.Request,
        endpoint: Endpoint,
        route: Route,
        limit: float | None = None,
    ) -> httpx.Request:
        url = request.url.copy_with(scheme=route.scheme, host=endpoint.address, port=endpoint.port)
        headers = request.headers.copy()
        if self.policy.host_header == "endpoint":
            headers["Host"] = endpoint.host_port
        elif "host" not in headers:
            headers["Host"] = route.host
        extensions = {k: v for k, v in request.extensions.items() if k != OPTIONS_KEY}
        if route.scheme == "https":
            extensions["sni_hostname"] = self.policy.server_hostname or route.host
        if limit is not None and math.isfinite(limit):
            timeouts = dict(extensions.get("timeout") or {})
            for name in ("connect", "read", "write", "pool"):
                current = timeouts.get(name)
                timeouts[name] = limit if current is None else min(current, limit)
            extensions["timeout"] = timeouts
        return httpx.Request(
            request.method, url, headers=headers, stream=request.stream, extensions=extensions
        )


class AsyncPoolTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncClient`` transport that fails over between a service's endpoints.

    ``targets``: host name → target string (``consul+query://billing``,
    ``consul://billing?tag=v2``, ``static://…``), parsed target or a running
    :class:`~mcresolve.pool.EndpointPool` (used as is, not closed). ``inner``: the transport
    that sends each attempt and every request that is not a pool's (default
    ``httpx.AsyncHTTPTransport()``; pass one with your ``verify=``/``cert=``/limits; it is closed
    with this transport). ``policy``: :class:`HttpFailoverPolicy`. ``pool_options``: keyword
    arguments for each :class:`~mcresolve.pool.EndpointPool` created here (``consul=``,
    ``registry=``, ``policy=``…).

    Per request: ``extensions={"mcresolve": RequestOptions(...)}``. The response of a pool
    request carries the endpoint that answered in ``response.extensions["mcresolve.endpoint"]``.
    When the pool gives up after a server answered 5xx, that answer is returned; when no server
    answered, the pool's :class:`~mcresolve.errors.CallFailed` (with every attempt) is raised,
    and a failure that must not be replayed is raised as httpx raised it.
    """

    def __init__(
        self,
        targets: Mapping[str, str | Target | EndpointPool] | None = None,
        *,
        inner: httpx.AsyncBaseTransport | None = None,
        policy: HttpFailoverPolicy | None = None,
        pool_options: Mapping[str, Any] | None = None,
    ) -> None:
        check_options(policy, pool_options)
        if inner is not None and not isinstance(inner, httpx.AsyncBaseTransport):
            raise TypeError(
                f"inner must be an httpx.AsyncBaseTransport, got {type(inner).__name__}"
            )
        strings, given = split_targets(targets)
        if not all(isinstance(pool, EndpointPool) for pool in given.values()):
            raise TypeError("AsyncPoolTransport targets: pools must be EndpointPool instances")
        self._router = _Router(strings, policy or HttpFailoverPolicy())
        self._inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self._pools = AsyncPools(given, pool_options or {})

    @property
    def pools(self) -> dict[str, EndpointPool]:
        """The pools in use, by target."""
        return self._pools.pools

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = self._router.route(request)
        if route is None:
            return await self._inner.handle_async_request(request)
        pool = await self._pools.get(route.target)
        options = _options(request)
        facts = self._router.facts(request, options)
        policy = call_policy(pool, options)
        hedging = facts.replayable and policy.hedging
        inner = self._inner
        router = self._router

        async def attempt(endpoint: Endpoint) -> httpx.Response:
            response = await inner.handle_async_request(router.rewrite(request, endpoint, route))
            try:
                response.extensions[ENDPOINT_KEY] = endpoint
                if failed_status(response.status_code):
                    await response.aread()
                    retry_after = parse_retry_after(response.headers.get("retry-after"))
                    raise StatusFailure(response.status_code, retry_after, response)
                if hedging:  # a losing hedge must not hold a connection: read it here
                    await response.aread()
            except BaseException:
                await response.aclose()
                raise
            return response

        try:
            return await pool.call(
                attempt,
                idempotent=facts.replayable,
                classify=router.classifier(facts),
                policy=policy,
            )
        except StatusFailure as final:
            return final.response  # type: ignore[no-any-return]
        except CallFailed as error:
            answer = final_answer(error)
            if isinstance(answer, httpx.Response):
                return answer
            raise

    async def aclose(self) -> None:
        await self._pools.aclose()
        await self._inner.aclose()


def _close_response(response: httpx.Response) -> None:
    response.close()


class PoolTransport(httpx.BaseTransport):
    """An ``httpx.Client`` transport that fails over between a service's endpoints (the
    synchronous twin of :class:`AsyncPoolTransport`; pools run on mcresolve's shared background
    loop thread, values of ``targets`` may be running
    :class:`~mcresolve.pool.BackgroundPool`\\ s).

    Each attempt's connect/read/write/pool timeouts are capped at
    ``min(attempt timeout, time left before the deadline)``: a blocking attempt cannot be
    interrupted, so this is what bounds it. No hedging (blocking attempts run one at a time).
    """

    def __init__(
        self,
        targets: Mapping[str, str | Target | BackgroundPool] | None = None,
        *,
        inner: httpx.BaseTransport | None = None,
        policy: HttpFailoverPolicy | None = None,
        pool_options: Mapping[str, Any] | None = None,
    ) -> None:
        check_options(policy, pool_options)
        if inner is not None and not isinstance(inner, httpx.BaseTransport):
            raise TypeError(f"inner must be an httpx.BaseTransport, got {type(inner).__name__}")
        strings, given = split_targets(targets)
        if not all(isinstance(pool, BackgroundPool) for pool in given.values()):
            raise TypeError("PoolTransport targets: pools must be BackgroundPool instances")
        self._router = _Router(strings, policy or HttpFailoverPolicy())
        self._inner = inner if inner is not None else httpx.HTTPTransport()
        self._pools = SyncPools(given, pool_options or {})

    @property
    def pools(self) -> dict[str, BackgroundPool]:
        """The background pools in use, by target."""
        return self._pools.pools

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        route = self._router.route(request)
        if route is None:
            return self._inner.handle_request(request)
        background = self._pools.get(route.target)
        pool = background.pool
        options = _options(request)
        facts = self._router.facts(request, options)
        policy = call_policy(pool, options)
        clock = AttemptClock(policy)
        inner = self._inner
        router = self._router

        def attempt(endpoint: Endpoint) -> httpx.Response:
            sent = router.rewrite(request, endpoint, route, clock.limit())
            response = inner.handle_request(sent)
            try:
                response.extensions[ENDPOINT_KEY] = endpoint
                if failed_status(response.status_code):
                    response.read()
                    retry_after = parse_retry_after(response.headers.get("retry-after"))
                    raise StatusFailure(response.status_code, retry_after, response)
            except BaseException:
                response.close()
                raise
            return response

        try:
            return pool.call_sync(
                attempt,
                idempotent=facts.replayable,
                classify=router.classifier(facts),
                policy=policy,
                discard=_close_response,  # a hedge that lost gives its connection back
            )
        except StatusFailure as final:
            return final.response  # type: ignore[no-any-return]
        except CallFailed as error:
            answer = final_answer(error)
            if isinstance(answer, httpx.Response):
                return answer
            raise

    def close(self) -> None:
        self._pools.close()
        self._inner.close()
