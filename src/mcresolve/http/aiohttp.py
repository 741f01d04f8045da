"""An aiohttp session wrapper that sends requests for Consul services through an endpoint pool.

::

    from mcresolve.http.aiohttp import PoolSession

    async with PoolSession() as session:
        async with session.get("http://billing.service.consul/invoices") as response:
            invoices = await response.json()

The same routing, retry and classification rules as :mod:`mcresolve.http.httpx`
(:mod:`mcresolve.http.failover` decides for both): a request whose host is a Consul name, whose
URL is ``consul://…`` / ``consul+query://…``, or whose host is mapped in ``targets`` goes
through the pool of that target; every other request goes to the wrapped
``aiohttp.ClientSession`` untouched. ``docs/http.md`` has the rules and measurements.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping
from types import TracebackType
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from mcresolve.endpoint import Endpoint
from mcresolve.errors import CallFailed
from mcresolve.http._pools import (
    AsyncPools,
    RequestOptions,
    call_policy,
    check_options,
    final_answer,
    split_targets,
)
from mcresolve.http.failover import (
    HttpFailoverPolicy,
    RequestFacts,
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
from mcresolve.lifecycle import AsyncClosing, deprecated_verb
from mcresolve.pool import EndpointPool
from mcresolve.pool.planner import AttemptContext, AttemptVerdict
from mcresolve.sources.target import Target

__all__ = [
    "HttpFailoverPolicy",
    "PoolSession",
    "RequestOptions",
    "describe_aiohttp_error",
]

_CONNECT_TIMEOUT: tuple[type[BaseException], ...] = tuple(
    cls for cls in (getattr(aiohttp, "ConnectionTimeoutError", None),) if cls is not None
)


def describe_aiohttp_error(exc: BaseException) -> TransportFailure | None:
    """What an aiohttp exception says about how far the attempt got."""
    if isinstance(
        exc, aiohttp.ClientConnectorCertificateError | aiohttp.ServerFingerprintMismatch
    ) or (isinstance(exc, aiohttp.ClientConnectorError) and caused_by_certificate(exc)):
        return TransportFailure.CERTIFICATE
    if _CONNECT_TIMEOUT and isinstance(exc, _CONNECT_TIMEOUT):
        return TransportFailure.CONNECT_TIMEOUT
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportFailure.REFUSED
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return TransportFailure.TIMEOUT
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return TransportFailure.RESET
    if isinstance(exc, aiohttp.ClientError):
        return None
    return describe_builtin(exc)


def _body_replayable(kwargs: Mapping[str, Any]) -> bool:
    data = kwargs.get("data")
    return data is None or isinstance(data, bytes | bytearray | str | Mapping | list | tuple)


def _join(base: str | None, url: str | URL) -> URL:
    text = str(url)
    if base is not None and not URL(text).is_absolute():
        return URL(base.rstrip("/") + "/" + text.lstrip("/"), encoded=True)
    return URL(text, encoded=True)


def _authority(host: str, port: int | None) -> str:
    return host if port is None else f"{host}:{port}"


class _RequestContext:
    """What :meth:`PoolSession.request` returns: await it for the response, or use it as an
    async context manager (the response is released on exit), like aiohttp's own."""

    __slots__ = ("_coro", "_response")

    def __init__(self, coro: Awaitable[aiohttp.ClientResponse]) -> None:
        self._coro = coro
        self._response: aiohttp.ClientResponse | None = None

    def __await__(self) -> Generator[Any, None, aiohttp.ClientResponse]:
        return self._coro.__await__()

    async def __aenter__(self) -> aiohttp.ClientResponse:
        self._response = await self._coro
        return self._response

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._response is not None:
            self._response.release()


class PoolSession(AsyncClosing):
    """An ``aiohttp.ClientSession`` wrapper that fails over between a service's endpoints.

    ``targets``: host name → target string, parsed target or a running
    :class:`~mcresolve.pool.EndpointPool` (used as is, not closed). ``session``: the session
    that sends each attempt and every other request (default: a new ``ClientSession(**
    session_kwargs)``, closed with this wrapper; one passed in is left open). ``base_url``:
    joined with relative URLs (``"consul+query://billing"`` works). ``policy``:
    :class:`HttpFailoverPolicy`. ``pool_options``: keyword arguments for each
    :class:`~mcresolve.pool.EndpointPool` created here.

    ``request()`` and the verb methods take aiohttp's keyword arguments plus
    ``mcresolve=RequestOptions(...)``. When the pool gives up after a server answered 5xx,
    that response is returned (its body already read); when no server answered, the pool's
    :class:`~mcresolve.errors.CallFailed` is raised, and a failure that must not be replayed is
    raised as aiohttp raised it. Redirects are followed by aiohttp from the endpoint's address.
    Do not set ``raise_for_status`` on the session: a 5xx must reach the classifier.
    """

    def __init__(
        self,
        targets: Mapping[str, str | Target | EndpointPool] | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        base_url: str | None = None,
        policy: HttpFailoverPolicy | None = None,
        pool_options: Mapping[str, Any] | None = None,
        **session_kwargs: Any,
    ) -> None:
        if session is not None and session_kwargs:
            raise TypeError("PoolSession: pass either session= or ClientSession arguments")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(
                f"session must be an aiohttp.ClientSession, got {type(session).__name__}"
            )
        if base_url is not None and not isinstance(base_url, str):
            raise TypeError(f"base_url must be a str, got {type(base_url).__name__}")
        check_options(policy, pool_options)
        strings, given = split_targets(targets)
        self._targets = strings
        self._policy = policy or HttpFailoverPolicy()
        self._pools = AsyncPools(given, pool_options or {})
        self._own_session = session is None
        self._session_kwargs = session_kwargs
        self._session = session
        self._base_url = base_url

    @property
    def session(self) -> aiohttp.ClientSession:
        """The wrapped session (created on first use)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(**self._session_kwargs)
        return self._session

    @property
    def pools(self) -> dict[str, EndpointPool]:
        """The pools in use, by target."""
        return self._pools.pools

    async def close(self) -> None:
        """Deprecated: the old name of :meth:`aclose`."""
        deprecated_verb(self, "close")
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pools created here and the session if it was created here (``async with``
        calls it)."""
        await self._pools.aclose()
        if self._own_session and self._session is not None:
            await self._session.close()

    def request(
        self,
        method: str,
        url: str | URL,
        *,
        mcresolve: RequestOptions | None = None,
        **kwargs: Any,
    ) -> _RequestContext:
        """Send a request (through a pool when its host is one's); see the class docstring."""
        return _RequestContext(self._request(method.upper(), url, mcresolve, kwargs))

    def get(self, url: str | URL, **kwargs: Any) -> _RequestContext:
        """``request("GET", url, ...)``."""
        return self.request("GET", url, **kwargs)

    def head(self, url: str | URL, **kwargs: Any) -> _RequestContext:
        """``request("HEAD", url, ...)``."""
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str | URL, **kwargs: Any) -> _RequestContext:
        """``request("OPTIONS", url, ...)``."""
        return self.request("OPTIONS", url, **kwargs)

    def post(self, url: str | URL, **kwargs: Any) -> _RequestContext:
        """``request("POST", url, ...)``."""
        return self.request("POST", url, **kwargs)

    def put(self, url: str | URL, **kwargs: Any) -> _RequestContext:
        """``request("PUT", url, ...)``."""
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str | URL, **kwargs: Any) -> _RequestContext:
        """``request("PATCH", url, ...)``."""
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str | URL, **kwargs: Any) -> _RequestContext:
        """``request("DELETE", url, ...)``."""
        return self.request("DELETE", url, **kwargs)

    async def _request(
        self,
        method: str,
        url: str | URL,
        options: RequestOptions | None,
        kwargs: dict[str, Any],
    ) -> aiohttp.ClientResponse:
        full = _join(self._base_url, url)
        route = route_for(
            full.scheme, full.raw_host or "", full.explicit_port, self._targets, self._policy
        )
        session = self.session
        if route is None:
            return await session.request(method, full, **kwargs)
        if options is not None and not isinstance(options, RequestOptions):
            raise TypeError(
                f"mcresolve= must be a mcresolve.http.aiohttp.RequestOptions, got "
                f"{type(options).__name__}"
            )
        options = options or RequestOptions()
        pool = await self._pools.get(route.target)
        headers: CIMultiDict[str] = CIMultiDict(kwargs.pop("headers", None) or {})

        def header(name: str) -> str | None:
            return headers.get(name) or session.headers.get(name)

        idempotent = is_idempotent(method, header, self._policy, options.idempotent)
        facts = RequestFacts(method, idempotent, _body_replayable(kwargs))
        policy = call_policy(pool, options)
        hedging = facts.replayable and policy.hedging
        logical = _authority(route.host, full.explicit_port)
        if route.scheme == "https" and "server_hostname" not in kwargs:
            kwargs["server_hostname"] = self._policy.server_hostname or route.host

        async def attempt(endpoint: Endpoint) -> aiohttp.ClientResponse:
            sent = CIMultiDict(headers)
            sent["Host"] = endpoint.host_port if self._policy.host_header == "endpoint" else logical
            target = _endpoint_url(route.scheme, endpoint, full)
            response = await session.request(method, target, headers=sent, **kwargs)
            return await _settle(response, read_body=hedging)

        try:
            return await pool.call(
                attempt,
                idempotent=facts.replayable,
                classify=_classifier(facts, self._policy),
                policy=policy,
            )
        except StatusFailure as final:
            return final.response  # type: ignore[no-any-return]
        except CallFailed as error:
            answer = final_answer(error)
            if isinstance(answer, aiohttp.ClientResponse):
                return answer
            raise


def _endpoint_url(scheme: str, endpoint: Endpoint, full: URL) -> URL:
    """``full``'s path and query sent to ``endpoint`` (an IPv6 address in brackets)."""
    host = f"[{endpoint.address}]" if ":" in endpoint.address else endpoint.address
    return URL.build(
        scheme=scheme,
        host=host,
        port=endpoint.port,
        path=full.raw_path,
        query_string=full.raw_query_string,
        encoded=True,
    )


async def _settle(response: aiohttp.ClientResponse, *, read_body: bool) -> aiohttp.ClientResponse:
    """``response`` if it is not a failure status, else :class:`StatusFailure` carrying it
    (its body read and its connection released). ``read_body``: read a success's body here
    (a losing hedge must not hold a connection). The response is closed on any other error."""
    try:
        if failed_status(response.status):
            await response.read()
            response.release()
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise StatusFailure(response.status, retry_after, response)
        if read_body:
            await response.read()
    except BaseException as exc:
        if not isinstance(exc, StatusFailure):
            response.close()
        raise
    return response


def _classifier(
    facts: RequestFacts, policy: HttpFailoverPolicy
) -> Callable[[BaseException, AttemptContext], AttemptVerdict]:
    def classify(exc: BaseException, context: AttemptContext) -> AttemptVerdict:
        if isinstance(exc, StatusFailure):
            return classify_http(exc, facts, context, policy)
        return classify_http(describe_aiohttp_error(exc), facts, context, policy, repr(exc))

    return classify
