"""A thin asyncio client for the parts of Consul's HTTP API that resolution and registration use.

:class:`ConsulClient` holds the typed endpoint methods (health, catalog, prepared queries,
agent); sending goes through the :class:`~mcresolve.consul.transport.ConsulTransport` it owns:
one :class:`aiohttp.ClientSession` for the client's lifetime, agents tried in the configured
order, sticking to the one that last answered (see :meth:`ConsulClient.request`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from mcresolve.arguments import check_instance, check_int_range, check_seconds
from mcresolve.consul.blocking import client_timeout, format_wait
from mcresolve.consul.config import ConsulAddress, ConsulConfig
from mcresolve.consul.errors import (
    ConsulAnswerError,
    ConsulProtocolError,
)
from mcresolve.consul.features import (
    AgentFeatures,
    NodeMetaSelector,
    health_scope,
    read_agent_features,
)
from mcresolve.consul.models import (
    AddressMode,
    CatalogService,
    Consistency,
    EntryMemo,
    Indexed,
    NodeInfo,
    PreparedQueryResult,
    QueryMeta,
    ServiceEntry,
    decode_entries,
    expect_list,
    expect_mapping,
    has_tags,
)
from mcresolve.consul.transport import (
    ConsulTransport,
    NextAgent,
    Params,
    RateLimitPolicy,
    RawResponse,
    Refusal,
    Refuse,
    RetryLater,
    decode_json,
    plan_refusal,
)
from mcresolve.lifecycle import AsyncClosing, deprecated_verb
from mcresolve.timing import RandomSource

__all__ = [
    "ConsulClient",
    "NextAgent",
    "RateLimitPolicy",
    "RawResponse",
    "Refusal",
    "Refuse",
    "RetryLater",
    "decode_json",
    "plan_refusal",
]


class _ConsulRequests(AsyncClosing):
    """The client's state and its one way to Consul: configuration, the transport (agents,
    limits, credentials), ``request`` and the JSON helpers every endpoint method uses."""

    def __init__(
        self,
        config: ConsulConfig | None = None,
        *,
        rate_limit: RateLimitPolicy | None = None,
        random: RandomSource = random.random,
    ) -> None:
        if config is not None:
            check_instance("config", config, (ConsulConfig,), "a ConsulConfig or None")
        if rate_limit is not None:
            check_instance(
                "rate_limit", rate_limit, (RateLimitPolicy,), "a RateLimitPolicy or None"
            )
        if not callable(random):
            raise TypeError(f"random must be a callable, not {type(random).__name__}")
        self._config = config if config is not None else ConsulConfig()
        self._transport = ConsulTransport(self._config, rate_limit=rate_limit, random=random)
        self._features: AgentFeatures | None = None

    def __repr__(self) -> str:
        return f"ConsulClient(current={self.current_address.base_url!r}, config={self._config!r})"

    @property
    def config(self) -> ConsulConfig:
        """The configuration (its ``repr`` hides the token)."""
        return self._config

    @property
    def current_address(self) -> ConsulAddress:
        """The agent the next request goes to first (the last one that answered)."""
        return self._transport.current_address

    async def close(self) -> None:
        """Deprecated: the old name of :meth:`aclose`."""
        deprecated_verb(self, "close")
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session (idempotent). In-flight calls fail. ``async with`` calls it."""
        await self._transport.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params = (),
        body: object = None,
        time_limit: float | None = None,
    ) -> RawResponse:
        """Send one request and return the 2xx answer, raising typed errors otherwise.

        Agents are tried starting with :attr:`current_address`. A failure to *connect* (refused,
        unreachable, connect timeout, TLS handshake) moves on to the next agent at once; so does a
        connection dropped mid-request, except for ``POST`` (not idempotent in Consul's API). A
        request that times out after connecting is not retried (its time budget is spent) but the
        next call starts with the next agent. The agent that answers becomes the current one.

        Refusals for rate (see :class:`RateLimitPolicy`): a 429 moves on to the next agent at
        once (:class:`RateLimited` when every agent refused); a 503 is retried after a jittered
        backoff within ``time_limit`` (:class:`Overloaded` when the retries run out). A 403
        while the token comes from a file re-reads the file and, if the token changed, sends
        the request once more with the new token.

        Args:
            method: HTTP method.
            path: API path, e.g. ``/v1/health/service/web``.
            params: query parameters in order (repeated names allowed); ``ns``/``partition``
                are added when configured.
            body: JSON-serialisable request body, or ``bytes`` sent verbatim, or ``None``.
            time_limit: total seconds for the call (default: ``config.request_timeout``),
                retries after a 503 included.
        """
        check_instance("method", method, (str,), "a string")
        check_instance("path", path, (str,), "a string")
        check_seconds("time_limit", time_limit, optional=True)
        return await self._transport.request(
            method, path, params=params, body=body, time_limit=time_limit
        )

    # --- helpers -------------------------------------------------------------------------------

    def _dc_params(self, dc: str | None) -> list[tuple[str, str]]:
        chosen = dc if dc is not None else self._config.datacenter
        return [("dc", chosen)] if chosen else []

    async def _get_json(
        self, path: str, params: Params = (), time_limit: float | None = None
    ) -> tuple[Any, RawResponse]:
        raw = await self.request("GET", path, params=params, time_limit=time_limit)
        return _json(raw, "GET", path), raw

    async def _get_json_blocking(
        self, path: str, params: list[tuple[str, str]], index: int | None, wait: float | None
    ) -> tuple[Any, RawResponse]:
        """:meth:`_get_json` with the blocking parameters (if ``index`` is given) appended and
        the client timeout that their ``wait`` needs."""
        blocking, timeout = _blocking_params(index, wait)
        return await self._get_json(path, params + blocking, timeout)


class _QueryAndAgentEndpoints(_ConsulRequests):
    """Prepared queries (``/v1/query``), the local agent (``/v1/agent``) and ``/v1/status``."""

    # --- prepared queries ----------------------------------------------------------------------

    async def query_execute(
        self,
        name_or_id: str,
        *,
        dc: str | None = None,
        near: str | None = None,
        limit: int | None = None,
        consistency: Consistency = Consistency.DEFAULT,
    ) -> PreparedQueryResult:
        """``GET /v1/query/<name or id>/execute``. Raises :class:`NotFound` for an unknown
        query. Prepared queries cannot block."""
        path = f"/v1/query/{_segment(name_or_id)}/execute"
        params = self._dc_params(dc)
        if near:
            params.append(("near", near))
        if limit is not None:
            check_int_range("limit", limit, 1)
            params.append(("limit", str(limit)))
        params += _consistency_params(consistency)
        body, raw = await self._get_json(path, params)
        with _answer(raw, "GET", path):
            return PreparedQueryResult.from_json(body, raw.meta)

    async def query_explain(self, name_or_id: str, *, dc: str | None = None) -> dict[str, Any]:
        """``GET /v1/query/<name or id>/explain``: the rendered definition (``{"Query": ...}``)."""
        path = f"/v1/query/{_segment(name_or_id)}/explain"
        body, raw = await self._get_json(path, self._dc_params(dc))
        with _answer(raw, "GET", path):
            return dict(expect_mapping(body, f"GET {path}"))

    async def query_create(self, definition: Mapping[str, Any], *, dc: str | None = None) -> str:
        """``POST /v1/query``: create a prepared query; returns its ID."""
        path = "/v1/query"
        raw = await self.request("POST", path, params=self._dc_params(dc), body=dict(definition))
        with _answer(raw, "POST", path):
            body = expect_mapping(_json(raw, "POST", path), f"POST {path}")
            query_id = body.get("ID")
            if not isinstance(query_id, str) or not query_id:
                raise ConsulProtocolError(f"POST {path}: answer has no ID")
            return query_id

    async def query_list(self, *, dc: str | None = None) -> list[dict[str, Any]]:
        """``GET /v1/query``: every prepared query definition."""
        path = "/v1/query"
        body, raw = await self._get_json(path, self._dc_params(dc))
        with _answer(raw, "GET", path):
            return [
                dict(expect_mapping(q, f"GET {path}[]")) for q in expect_list(body, f"GET {path}")
            ]

    async def query_get(self, query_id: str, *, dc: str | None = None) -> dict[str, Any]:
        """``GET /v1/query/<id>``: one definition (by ID only; Consul rejects names)."""
        path = f"/v1/query/{_segment(query_id)}"
        body, raw = await self._get_json(path, self._dc_params(dc))
        with _answer(raw, "GET", path):
            items = expect_list(body, f"GET {path}")
            if len(items) != 1:
                raise ConsulProtocolError(f"GET {path}: expected one query, got {len(items)}")
            return dict(expect_mapping(items[0], f"GET {path}[0]"))

    async def query_update(
        self, query_id: str, definition: Mapping[str, Any], *, dc: str | None = None
    ) -> None:
        """``PUT /v1/query/<id>``: replace a definition."""
        path = f"/v1/query/{_segment(query_id)}"
        await self.request("PUT", path, params=self._dc_params(dc), body=dict(definition))

    async def query_delete(self, query_id: str, *, dc: str | None = None) -> None:
        """``DELETE /v1/query/<id>``."""
        path = f"/v1/query/{_segment(query_id)}"
        await self.request("DELETE", path, params=self._dc_params(dc))

    # --- agent ---------------------------------------------------------------------------------

    async def agent_service_register(
        self, definition: Mapping[str, Any], *, replace_existing_checks: bool = False
    ) -> None:
        """``PUT /v1/agent/service/register`` with a service definition
        (``{"Name", "ID", "Port", "Tags", "Meta", "Check"/"Checks", ...}``)."""
        params = [("replace-existing-checks", "true")] if replace_existing_checks else []
        await self.request(
            "PUT", "/v1/agent/service/register", params=params, body=dict(definition)
        )

    async def agent_service_deregister(self, service_id: str) -> None:
        """``PUT /v1/agent/service/deregister/<id>`` (unknown IDs are not an error)."""
        await self.request("PUT", f"/v1/agent/service/deregister/{_segment(service_id)}")

    async def agent_check_register(self, definition: Mapping[str, Any]) -> None:
        """``PUT /v1/agent/check/register`` with a check definition (``{"Name", "CheckID",
        "ServiceID", "TTL" | "HTTP" + "Interval" | ..., "Status", "Notes",
        "DeregisterCriticalServiceAfter"}``). Registering an existing ``CheckID`` replaces it.
        Consul's refusals are typed: ``BadRequest`` (e.g. ``Missing check name``),
        ``ServerError`` (e.g. ``ServiceID "x" does not exist``), ``PermissionDenied``."""
        await self.request("PUT", "/v1/agent/check/register", body=dict(definition))

    async def agent_check_deregister(self, check_id: str) -> None:
        """``PUT /v1/agent/check/deregister/<id>`` (unknown IDs are not an error on Consul
        1.0.8: recorded in ``08_errors.json``)."""
        await self.request("PUT", f"/v1/agent/check/deregister/{_segment(check_id)}")

    async def _ttl(self, verb: str, check_id: str, note: str | None) -> None:
        params = [("note", note)] if note is not None else []
        await self.request("PUT", f"/v1/agent/check/{verb}/{_segment(check_id)}", params=params)

    async def agent_check_pass(self, check_id: str, note: str | None = None) -> None:
        """``PUT /v1/agent/check/pass/<id>`` (TTL checks; ``note`` becomes the output)."""
        await self._ttl("pass", check_id, note)

    async def agent_check_warn(self, check_id: str, note: str | None = None) -> None:
        """``PUT /v1/agent/check/warn/<id>``."""
        await self._ttl("warn", check_id, note)

    async def agent_check_fail(self, check_id: str, note: str | None = None) -> None:
        """``PUT /v1/agent/check/fail/<id>``."""
        await self._ttl("fail", check_id, note)

    async def agent_check_update(self, check_id: str, status: str, output: str = "") -> None:
        """``PUT /v1/agent/check/update/<id>`` with ``{"Status", "Output"}``."""
        await self.request(
            "PUT",
            f"/v1/agent/check/update/{_segment(check_id)}",
            body={"Status": status, "Output": output},
        )

    async def agent_services(self) -> dict[str, dict[str, Any]]:
        """``GET /v1/agent/services``: the services registered on this agent, by ID."""
        path = "/v1/agent/services"
        body, raw = await self._get_json(path)
        with _answer(raw, "GET", path):
            mapping = expect_mapping(body, f"GET {path}")
            return {k: dict(expect_mapping(v, f"GET {path}.{k}")) for k, v in mapping.items()}

    async def agent_checks(self) -> dict[str, dict[str, Any]]:
        """``GET /v1/agent/checks``: the checks registered on this agent, by ID."""
        path = "/v1/agent/checks"
        body, raw = await self._get_json(path)
        with _answer(raw, "GET", path):
            mapping = expect_mapping(body, f"GET {path}")
            return {k: dict(expect_mapping(v, f"GET {path}.{k}")) for k, v in mapping.items()}

    async def agent_features(self) -> AgentFeatures:
        """What the agent supports (:func:`~mcresolve.consul.features.read_agent_features`),
        read once and cached for the client's life (its agents are expected to run one Consul
        version); a transient failure is not cached."""
        if self._features is None:
            self._features = await read_agent_features(self.agent_self)
        return self._features

    async def local_datacenter(self, address: AddressMode) -> str | None:
        """The agent's own datacenter when ``address`` needs it to tell an instance of
        another datacenter (``auto``), else ``None`` (no request). Read with
        :meth:`agent_features`, so once per client; ``None`` when the agent does not say."""
        if address != "auto":
            return None
        return (await self.agent_features()).datacenter

    async def agent_self(self) -> dict[str, Any]:
        """``GET /v1/agent/self``: the agent's configuration and member record."""
        path = "/v1/agent/self"
        body, raw = await self._get_json(path)
        with _answer(raw, "GET", path):
            return dict(expect_mapping(body, f"GET {path}"))

    async def status_leader(self) -> str:
        """``GET /v1/status/leader``: the leader's ``host:port`` (``""`` without a leader)."""
        path = "/v1/status/leader"
        body, raw = await self._get_json(path)
        with _answer(raw, "GET", path):
            if not isinstance(body, str):
                raise ConsulProtocolError(f"GET {path}: expected a string")
            return body


class ConsulClient(_QueryAndAgentEndpoints):
    """Asynchronous Consul HTTP API client.

    Use as an async context manager (``async with ConsulClient(config) as consul: ...``) or call
    :meth:`close` when done. Every method raises a :class:`~mcresolve.consul.errors.ConsulError`
    subclass on failure: :class:`ConsulUnavailable` when no agent could be reached,
    :class:`ConsulTimeout` when the call timed out, a :class:`ConsulHTTPError` subclass carrying
    Consul's message for error answers, :class:`ConsulProtocolError` for malformed answers.

    Args:
        config: where and how to reach Consul (default: ``ConsulConfig()``, the local agent).
        rate_limit: how 429 and 503 refusals are retried (see :class:`RateLimitPolicy`).
        random: uniform ``[0, 1)`` source for the backoff's jitter (injected by tests).
    """

    # --- health --------------------------------------------------------------------------------

    async def health_service(
        self,
        service: str,
        *,
        passing: bool = False,
        tags: Iterable[str] = (),
        dc: str | None = None,
        near: str | None = None,
        node_meta: Mapping[str, str] | None = None,
        consistency: Consistency = Consistency.DEFAULT,
        index: int | None = None,
        wait: float | None = None,
        filter: str | None = None,
        peer: str | None = None,
        ns: str | None = None,
        partition: str | None = None,
        memo: EntryMemo | None = None,
    ) -> Indexed[tuple[ServiceEntry, ...]]:
        """``GET /v1/health/service/<service>``: instances with their node and checks.

        Args:
            passing: only instances whose every check is passing (``?passing=1``).
            tags: instances carrying *all* these tags (case-insensitive). Consul < 1.2 honours only
                the first ``?tag``; the others are applied here on the answer.
            dc: datacenter (default: ``config.datacenter``, else the agent's).
            near: sort by round-trip time from this node (``_agent`` = the answering agent).
            node_meta: only nodes with these ``key: value`` metadata pairs. Sent inside
                ``filter`` to agents that have it (the plain parameter is deprecated there),
                as ``?node-meta=`` to older ones (see :mod:`mcresolve.consul.features`).
            consistency: read consistency mode.
            index: blocking query: wait for a change after this index (0 = answer at once).
            wait: blocking wait in seconds (Consul's default 5 min when ``None``); the client
                timeout is ``wait + wait/16 + margin``.
            filter: a go-bexpr expression (``Service.Meta.version == "2"``), sent as is.
                :class:`~mcresolve.consul.features.UnsupportedByAgent` on agents older than 1.5,
                which would ignore it and answer unfiltered.
            peer: read the service as exported by this cluster peer (1.13+; refused the same
                way on older agents).
            ns, partition: Consul Enterprise namespace/partition for this read (instead of the
                configured ones); never sent unless given.
            memo: the :class:`~mcresolve.consul.models.EntryMemo` of a watch: entries equal,
                byte for byte, to one of the previous answer's are not decoded again (see
                :func:`~mcresolve.consul.models.decode_entries`).
        """
        if not service:
            raise ValueError("service name must not be empty")
        wanted = tuple(tags)
        path = f"/v1/health/service/{_segment(service)}"
        params: list[tuple[str, str]] = self._dc_params(dc)
        if passing:
            params.append(("passing", "1"))
        params += [("tag", t) for t in wanted]
        expression: str | None = None
        if node_meta or filter is not None or peer is not None:
            where = f"GET {path}: the agent at {self.current_address}"
            expression, node_meta = health_scope(
                await self.agent_features(), where, node_meta=node_meta, filter=filter, peer=peer
            )
        params += _near_meta_consistency_params(near, node_meta, consistency)
        params += _given(filter=expression, peer=peer, ns=ns, partition=partition)
        blocking, timeout = _blocking_params(index, wait)
        raw = await self.request("GET", path, params=params + blocking, time_limit=timeout)
        with _answer(raw, "GET", path):
            agent = raw.address.base_url
            entries = decode_entries(
                raw.body, lambda body: decode_json(body, agent, "GET", path), f"GET {path}", memo
            )
            if len(wanted) > 1:
                entries = tuple(e for e in entries if has_tags(e.service.tags, wanted))
            return Indexed(entries, _indexed_meta(raw, path, index is not None))

    # --- catalog -------------------------------------------------------------------------------

    async def _catalog_scope(
        self,
        path: str,
        node_meta: Mapping[str, str] | None,
        filter: str | None,
        selector: NodeMetaSelector,
    ) -> tuple[str | None, Mapping[str, str] | None]:
        """``(filter expression, node_meta sent plainly)`` for a catalog listing, decided from
        the agent's version as for health reads (:func:`~mcresolve.consul.features.
        health_scope`): ``filter`` on 1.5+ (node metadata inside it), refused on older agents,
        which would ignore it and answer unfiltered."""
        if not node_meta and filter is None:
            return None, node_meta
        where = f"GET {path}: the agent at {self.current_address}"
        return health_scope(
            await self.agent_features(),
            where,
            node_meta=node_meta,
            filter=filter,
            peer=None,
            selector=selector,
        )

    async def catalog_service(
        self,
        service: str,
        *,
        tags: Iterable[str] = (),
        dc: str | None = None,
        near: str | None = None,
        node_meta: Mapping[str, str] | None = None,
        consistency: Consistency = Consistency.DEFAULT,
        index: int | None = None,
        wait: float | None = None,
        filter: str | None = None,
    ) -> Indexed[tuple[CatalogService, ...]]:
        """``GET /v1/catalog/service/<service>`` (no health information).

        ``filter`` (go-bexpr over the flat catalog record: ``ServiceMeta.version == "2"``,
        ``"primary" in ServiceTags``) and ``node_meta`` follow the agent's version as for
        :meth:`health_service` (api-docs/catalog.mdx; node metadata as ``NodeMeta["k"]``)."""
        if not service:
            raise ValueError("service name must not be empty")
        wanted = tuple(tags)
        path = f"/v1/catalog/service/{_segment(service)}"
        params = self._dc_params(dc) + [("tag", t) for t in wanted]
        expression, node_meta = await self._catalog_scope(path, node_meta, filter, "NodeMeta")
        params += _near_meta_consistency_params(near, node_meta, consistency)
        params += _given(filter=expression)
        body, raw = await self._get_json_blocking(path, params, index, wait)
        with _answer(raw, "GET", path):
            items = expect_list(body, f"GET {path}")
            records = tuple(
                CatalogService.from_json(v, f"GET {path}[{i}]") for i, v in enumerate(items)
            )
            if len(wanted) > 1:
                records = tuple(r for r in records if has_tags(r.service_tags, wanted))
            return Indexed(records, _indexed_meta(raw, path, index is not None))

    async def catalog_services(
        self,
        *,
        dc: str | None = None,
        consistency: Consistency = Consistency.DEFAULT,
        index: int | None = None,
        wait: float | None = None,
    ) -> Indexed[dict[str, tuple[str, ...]]]:
        """``GET /v1/catalog/services``: every service name with the union of its tags."""
        path = "/v1/catalog/services"
        params = self._dc_params(dc) + _consistency_params(consistency)
        body, raw = await self._get_json_blocking(path, params, index, wait)
        with _answer(raw, "GET", path):
            mapping = expect_mapping(body, f"GET {path}")
            result: dict[str, tuple[str, ...]] = {}
            for name, tags in mapping.items():
                tag_list = [] if tags is None else expect_list(tags, f"GET {path}.{name}")
                if not all(isinstance(t, str) for t in tag_list):
                    raise ConsulProtocolError(f"GET {path}.{name}: expected an array of strings")
                result[name] = tuple(tag_list)
            return Indexed(result, _indexed_meta(raw, path, index is not None))

    async def catalog_datacenters(self) -> list[str]:
        """``GET /v1/catalog/datacenters``: every known datacenter, nearest first."""
        path = "/v1/catalog/datacenters"
        body, raw = await self._get_json(path)
        with _answer(raw, "GET", path):
            items = expect_list(body, f"GET {path}")
            if not all(isinstance(d, str) for d in items):
                raise ConsulProtocolError(f"GET {path}: expected an array of strings")
            return list(items)

    async def catalog_nodes(
        self,
        *,
        dc: str | None = None,
        near: str | None = None,
        node_meta: Mapping[str, str] | None = None,
        consistency: Consistency = Consistency.DEFAULT,
        index: int | None = None,
        wait: float | None = None,
        filter: str | None = None,
    ) -> Indexed[tuple[NodeInfo, ...]]:
        """``GET /v1/catalog/nodes``. ``filter`` (go-bexpr over each node: ``Meta.rack ==
        "r1"``) and ``node_meta`` as for :meth:`catalog_service` (node metadata as
        ``Meta["k"]``)."""
        path = "/v1/catalog/nodes"
        params = self._dc_params(dc)
        expression, node_meta = await self._catalog_scope(path, node_meta, filter, "Meta")
        params += _near_meta_consistency_params(near, node_meta, consistency)
        params += _given(filter=expression)
        body, raw = await self._get_json_blocking(path, params, index, wait)
        with _answer(raw, "GET", path):
            items = expect_list(body, f"GET {path}")
            nodes = tuple(NodeInfo.from_json(v, f"GET {path}[{i}]") for i, v in enumerate(items))
            return Indexed(nodes, _indexed_meta(raw, path, index is not None))


def _blocking_params(
    index: int | None, wait: float | None
) -> tuple[list[tuple[str, str]], float | None]:
    if index is not None:
        check_int_range("index", index, 0)
    check_seconds("wait", wait, zero=True, inf=True, optional=True)
    if index is None:
        return [], None
    params = [("index", str(index))]
    if wait is not None:
        params.append(("wait", format_wait(wait)))
    # Index 0 never blocks (Consul answers at once whatever the wait: "index must be > 0"
    # to block), so it is an ordinary read with the ordinary timeout: a silent agent is
    # reported after ``request_timeout``, not after the long poll's ``wait + wait/16``.
    return params, (None if index == 0 else client_timeout(wait))


def _consistency_params(consistency: Consistency) -> list[tuple[str, str]]:
    return [(consistency.value, "")] if consistency.value else []


def _given(**values: str | None) -> list[tuple[str, str]]:
    """The query parameters among ``values`` that are set (never sends an empty option)."""
    return [(name, value) for name, value in values.items() if value is not None]


def _near_meta_consistency_params(
    near: str | None, node_meta: Mapping[str, str] | None, consistency: Consistency
) -> list[tuple[str, str]]:
    """``near``, then ``node-meta`` (one per pair), then the consistency mode: the filters
    shared by the health and catalog listings, in the order they send them."""
    params = [("near", near)] if near else []
    params += [("node-meta", f"{k}:{v}") for k, v in (node_meta or {}).items()]
    return params + _consistency_params(consistency)


def _json(raw: RawResponse, method: str, path: str) -> Any:
    """The answer's JSON value; anything that is not strict JSON (invalid, nested too
    deeply for the decoder, ``NaN``/``Infinity``, numbers beyond Python's digit limit)
    raises :class:`ConsulAnswerError` naming the agent and path."""
    return decode_json(raw.body, raw.address.base_url, method, path)


def _indexed_meta(raw: RawResponse, path: str, blocking: bool) -> QueryMeta:
    meta = raw.meta
    if blocking and meta.index is None:
        raise ConsulProtocolError(
            f"blocking answer from {raw.address} for GET {path} has no X-Consul-Index"
        )
    return meta


@contextmanager
def _answer(raw: RawResponse, method: str, path: str) -> Iterator[None]:
    """Turn any failure to make sense of an answer into one :class:`ConsulAnswerError` naming
    the agent and the path: the parsers' :class:`ConsulProtocolError` (wrong shape), and, as a
    last line, any ``ValueError``/``TypeError``/``KeyError``/``RecursionError`` a parser lets
    out on a hostile value, so that no answer makes the client raise a non-Consul error."""
    try:
        yield
    except ConsulAnswerError:
        raise
    except ConsulProtocolError as exc:
        raise ConsulAnswerError(raw.address.base_url, method, path, str(exc)) from None
    except RecursionError:
        raise ConsulAnswerError(
            raw.address.base_url, method, path, "nested too deeply to parse"
        ) from None
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise ConsulAnswerError(
            raw.address.base_url, method, path, f"{type(exc).__name__}: {exc}"
        ) from None


def _segment(value: str) -> str:
    """Quote a value used as a path segment (names with ``/`` or ``?`` must not change the path)."""
    return quote(value, safe="")
