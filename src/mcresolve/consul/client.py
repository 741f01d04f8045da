"""A thin asyncio client for the parts of Consul's HTTP API that resolution and registration use.

One :class:`aiohttp.ClientSession` (connection pooling, no connection limit so that long-lived
blocking requests never queue behind each other) for the client's lifetime. Agents are tried in the
configured order; the client sticks to the one that last answered and moves on when it cannot
connect (see :meth:`ConsulClient.request`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl
from multidict import CIMultiDictProxy

from mcresolve.consul.blocking import client_timeout, format_wait
from mcresolve.consul.config import ConsulAddress, ConsulConfig
from mcresolve.consul.errors import (
    ConsulAnswerError,
    ConsulAnswerTooLarge,
    ConsulBodyStalled,
    ConsulError,
    ConsulHTTPError,
    ConsulProtocolError,
    ConsulRedirect,
    ConsulTimeout,
    ConsulUnavailable,
    RateLimited,
    http_error,
)
from mcresolve.consul.features import AgentFeatures, UnsupportedByAgent, health_filter
from mcresolve.consul.models import (
    CatalogService,
    Consistency,
    Indexed,
    NodeInfo,
    PreparedQueryResult,
    QueryMeta,
    ServiceEntry,
    expect_list,
    expect_mapping,
    has_tags,
    parse_entries,
)
from mcresolve.consul.token_file import TokenFile
from mcresolve.lifecycle import AsyncClosing, deprecated_verb
from mcresolve.timing import Backoff, BackoffPolicy, RandomSource

log = logging.getLogger("mcresolve.consul")

#: Largest piece of an answer's body read at once, bytes.
_READ_SIZE = 64 * 1024

Params = Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A successful (2xx) answer before parsing."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    address: ConsulAddress
    elapsed: float

    @property
    def meta(self) -> QueryMeta:
        """The answer's :class:`QueryMeta`."""
        return QueryMeta.from_headers(
            self.headers, address=self.address.base_url, elapsed=self.elapsed
        )


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """How the client answers Consul's refusals for rate.

    Consul's servers (1.15+, when their RPC rate limiter enforces) refuse a request with
    **429** when another server could serve it ("we recommend immediately retrying the request to
    another server") and with **503** when none could ("retrying according to an exponential
    backoff schedule"), without ``Retry-After`` (Consul's "Limit traffic rates overview",
    website/content/docs/agent/limits/index.mdx). An agent also answers 429 to a client address
    holding more than ``limits.http_max_conns_per_client`` (200) connections. A refused request
    was not executed, so retrying it is safe for every method.

    Attributes:
        overloaded_retries: retries of a 503 after a backoff, within the call's time limit.
            3: with the default backoff the retries wait at most 0.25 + 0.5 + 1 s (full jitter:
            0.9 s on average), which fits the 10 s default request timeout, and a fourth 503
            is reported rather than hidden.
        backoff: delays before those retries: :class:`~mcresolve.timing.BackoffPolicy`'s
            defaults (250 ms doubling, capped at 10 s, full jitter, after consul-template).
    """

    overloaded_retries: int = 3
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)

    def __post_init__(self) -> None:
        if self.overloaded_retries < 0:
            raise ValueError(f"overloaded_retries must be >= 0, got {self.overloaded_retries!r}")


@dataclass(frozen=True, slots=True)
class NextAgent:
    """Send the refused request to the next configured agent at once."""


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Send the refused request again after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class Refuse:
    """Raise the refusal to the caller."""


Refusal = NextAgent | RetryLater | Refuse


def plan_refusal(
    status: int,
    *,
    agents_left: int,
    retry: int,
    delay: float,
    time_left: float,
    policy: RateLimitPolicy,
) -> Refusal:
    """What to do with a 429 or 503 answer (pure).

    * 429: the next agent at once while one is left (``agents_left`` not yet tried in this
      call); else raise :class:`~mcresolve.consul.errors.RateLimited`.
    * 503: wait ``delay`` (the backoff's draw for this ``retry``, 1 for the first) and retry,
      while ``retry`` is within ``policy.overloaded_retries`` and the wait ends before the
      call's time limit (``time_left``); else raise :class:`~mcresolve.consul.errors.Overloaded`.
    """
    if status == 429:
        return NextAgent() if agents_left > 0 else Refuse()
    if status == 503 and retry <= policy.overloaded_retries and delay < time_left:
        return RetryLater(delay)
    return Refuse()


class ConsulClient(AsyncClosing):
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

    def __init__(
        self,
        config: ConsulConfig | None = None,
        *,
        rate_limit: RateLimitPolicy | None = None,
        random: RandomSource = random.random,
    ) -> None:
        self._config = config if config is not None else ConsulConfig()
        self._rate_limit = rate_limit if rate_limit is not None else RateLimitPolicy()
        self._random = random
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = (
            self._config.ssl_context() if self._config.uses_tls else None
        )
        self._token_file: TokenFile | None = None
        if self._config.token_file is not None:
            self._token_file = TokenFile(
                self._config.token_file,
                fallback=self._config.token,
                check_interval=self._config.token_file_check_interval,
            )
        self._current = 0
        self._closed = False
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
        return self._config.addresses[self._current]

    async def close(self) -> None:
        """Deprecated: the old name of :meth:`aclose`."""
        deprecated_verb(self, "close")
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session (idempotent). In-flight calls fail. ``async with`` calls it."""
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ConsulError("the Consul client is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, ssl=self._ssl if self._ssl else True)
            # No cookies (Consul sets none; an agent must not plant any) and no proxy from the
            # environment (the token goes to the agent only).
            self._session = aiohttp.ClientSession(
                connector=connector,
                raise_for_status=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        return self._session

    def _token(self) -> str | None:
        if self._token_file is not None:
            return self._token_file.current()
        return self._config.token

    def _headers(self, has_body: bool) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self._token()
        if token:
            headers["X-Consul-Token"] = token
        auth = self._config.http_auth
        if auth is not None:
            # As Consul's Go client (api/api.go, req.SetBasicAuth): beside the token, not for it.
            pair = f"{auth.username}:{auth.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        if has_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _scope_params(self, given: Params = ()) -> list[tuple[str, str]]:
        """``ns`` and ``partition`` when configured and not given by the call itself, else
        nothing (Consul CE refuses any)."""
        params = []
        names = {name for name, _ in given}
        if self._config.namespace is not None and "ns" not in names:
            params.append(("ns", self._config.namespace))
        if self._config.partition is not None and "partition" not in names:
            params.append(("partition", self._config.partition))
        return params

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
        session = self._get_session()
        data: bytes | None
        if body is None:
            data = None
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode()
        total = self._config.request_timeout if time_limit is None else time_limit
        loop = asyncio.get_running_loop()
        deadline = loop.time() + total
        query = [*params, *self._scope_params(params)]
        addresses = self._config.addresses
        first = self._current
        tried: list[tuple[str, str]] = []
        backoff = Backoff(self._rate_limit.backoff, self._random)
        token_retried = False
        step = 0
        while step < len(addresses):
            position = (first + step) % len(addresses)
            address = addresses[position]
            # Each agent gets the whole time limit (a dead agent's connect timeout must not cut
            # a healthy long poll on the next one short); a retry after a 503 what is left.
            budget = total if backoff.failures == 0 else max(deadline - loop.time(), 0.001)
            answer = await self._send(
                session, method, path, query, data, address, position, budget, tried
            )
            if answer is None:  # could not reach this agent: the next one
                step += 1
                continue
            status, response_headers, payload, elapsed = answer
            if position != self._current:
                log.info("consul: switched to agent %s", address)
            self._current = position
            log.debug(
                "consul %s %s -> %s from %s in %.1f ms",
                method,
                path,
                status,
                address,
                elapsed * 1000,
            )
            if 200 <= status < 300:
                return RawResponse(status, response_headers, payload, address, elapsed)
            message = payload.decode("utf-8", errors="replace").strip()
            if status in (429, 503):
                retry = backoff.failures + 1
                delay = backoff.failure() if status == 503 else 0.0
                plan = plan_refusal(
                    status,
                    agents_left=len(addresses) - 1 - step,
                    retry=retry,
                    delay=delay,
                    time_left=deadline - loop.time(),
                    policy=self._rate_limit,
                )
                if isinstance(plan, NextAgent):
                    tried.append((address.base_url, f"answered {status}"))
                    log.info(
                        "consul %s %s: %s refused (%s, rate limit), trying the next agent",
                        method,
                        path,
                        address,
                        status,
                    )
                    step += 1
                    continue
                if isinstance(plan, RetryLater):
                    log.info(
                        "consul %s %s: %s refused (%s, overloaded), retry %d in %.3f s",
                        method,
                        path,
                        address,
                        status,
                        retry,
                        plan.delay,
                    )
                    await asyncio.sleep(plan.delay)
                    continue
            elif status == 403 and self._token_file is not None and not token_retried:
                token_retried = True
                if self._token_file.reload():
                    log.info(
                        "consul %s %s: 403 from %s and the token file changed: retrying with "
                        "the new token",
                        method,
                        path,
                        address,
                    )
                    continue
            if 400 <= status < 600:
                raise http_error(status, message, method=method, path=path, agent=address.base_url)
            raise ConsulProtocolError(
                f"unexpected status {status} from {address} for {method} {path}"
            )
        raise ConsulUnavailable(f"no Consul agent reachable for {method} {path}", tried)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        query: Params,
        data: bytes | None,
        address: ConsulAddress,
        position: int,
        budget: float,
        tried: list[tuple[str, str]],
    ) -> tuple[int, CIMultiDictProxy[str], bytes, float] | None:
        """One request to one agent: its ``(status, headers, body, elapsed)``, or ``None`` when
        the agent could not be reached (the reason appended to ``tried``) and the next one may
        be tried. Raises for what must not be retried elsewhere (a timeout after connecting, a
        redirect, a stalled, oversized or malformed answer, a dropped ``POST``)."""
        timeout = aiohttp.ClientTimeout(
            total=budget, sock_connect=min(self._config.connect_timeout, budget)
        )
        started = time.monotonic()
        try:
            async with session.request(
                method,
                address.base_url + path,
                params=list(query),
                data=data,
                headers=self._headers(data is not None),
                timeout=timeout,
                allow_redirects=False,
                server_hostname=self._config.tls_server_name if self._ssl else None,
            ) as response:
                status = response.status
                response_headers = response.headers
                if 300 <= status < 400:
                    # Consul never redirects: following would hand the token to the host
                    # the answer names. The body is not read.
                    self._current = position
                    raise ConsulRedirect(
                        address.base_url,
                        status,
                        _location_host(response_headers),
                        method=method,
                        path=path,
                    )
                payload = await self._read_body(response, address, method, path, tried)
        except ConsulBodyStalled:
            self._advance_from(position)
            raise
        except aiohttp.ServerTimeoutError as exc:
            if _is_connect_timeout(exc):
                tried.append((address.base_url, "connect timeout"))
                return None
            self._advance_from(position)
            raise self._timeout(method, path, address, budget, tried) from None
        except TimeoutError:
            self._advance_from(position)
            raise self._timeout(method, path, address, budget, tried) from None
        except aiohttp.ClientConnectorError as exc:
            tried.append((address.base_url, _reason(exc)))
            log.debug("consul %s %s: %s unreachable: %s", method, path, address, _reason(exc))
            return None
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
            tried.append((address.base_url, _reason(exc)))
            log.debug("consul %s %s: %s dropped: %s", method, path, address, _reason(exc))
            if method.upper() == "POST":
                self._advance_from(position)
                raise ConsulUnavailable(
                    f"Consul connection lost during {method} {path}", tried
                ) from None
            return None
        except aiohttp.ClientPayloadError as exc:
            self._advance_from(position)
            raise ConsulProtocolError(
                f"incomplete answer from {address} for {method} {path}: {_reason(exc)}"
            ) from None
        except aiohttp.ClientResponseError as exc:
            # The agent answered something that is not HTTP (bad status line, headers or
            # framing): a broken agent, not an unreachable one.
            self._advance_from(position)
            raise ConsulProtocolError(
                f"malformed HTTP answer from {address} for {method} {path}: "
                f"{_first_line(exc.message)}"
            ) from None
        except aiohttp.ClientError as exc:
            tried.append((address.base_url, _reason(exc)))
            return None
        return status, response_headers, payload, time.monotonic() - started

    async def _read_body(
        self,
        response: aiohttp.ClientResponse,
        address: ConsulAddress,
        method: str,
        path: str,
        tried: list[tuple[str, str]],
    ) -> bytes:
        """The answer's body, read piece by piece: at most ``config.max_answer_bytes`` (a
        larger ``Content-Length``, or one byte more streamed, raises
        :class:`ConsulAnswerTooLarge` without reading on), and no pause between pieces longer
        than ``config.body_idle_timeout`` (else :class:`ConsulBodyStalled`)."""
        limit = self._config.max_answer_bytes
        declared = response.content_length
        if declared is not None and declared > limit:
            raise ConsulAnswerTooLarge(
                address.base_url, method, path, limit=limit, received=0, declared=declared
            )
        idle = self._config.body_idle_timeout
        pieces: list[bytes] = []
        received = 0
        while True:
            # Never ask for more than one byte past the limit: the excess is not buffered.
            want = min(_READ_SIZE, limit + 1 - received)
            pause = asyncio.timeout(idle)
            try:
                async with pause:
                    piece = await response.content.read(want)
            except TimeoutError:
                if not pause.expired():
                    raise  # the call's own (total) timeout, handled by the caller
                raise ConsulBodyStalled(
                    f"Consul agent {address.base_url} stopped sending the answer to "
                    f"{method} {path}",
                    [*tried, (address.base_url, f"no body data for {idle:.3g} s")],
                ) from None
            if not piece:
                return b"".join(pieces)
            received += len(piece)
            if received > limit:
                raise ConsulAnswerTooLarge(
                    address.base_url,
                    method,
                    path,
                    limit=limit,
                    received=received,
                    declared=declared,
                )
            pieces.append(piece)

    def _advance_from(self, position: int) -> None:
        self._current = (position + 1) % len(self._config.addresses)

    @staticmethod
    def _timeout(
        method: str, path: str, address: ConsulAddress, total: float, tried: list[tuple[str, str]]
    ) -> ConsulTimeout:
        tried = [*tried, (address.base_url, f"no answer within {total:.3g} s")]
        return ConsulTimeout(f"Consul call {method} {path} timed out", tried)

    # --- helpers -------------------------------------------------------------------------------

    def _dc_params(self, dc: str | None) -> list[tuple[str, str]]:
        chosen = dc if dc is not None else self._config.datacenter
        return [("dc", chosen)] if chosen else []

    @staticmethod
    def _blocking_params(
        index: int | None, wait: float | None
    ) -> tuple[list[tuple[str, str]], float | None]:
        if index is None:
            return [], None
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index!r}")
        params = [("index", str(index))]
        if wait is not None:
            params.append(("wait", format_wait(wait)))
        # Index 0 never blocks (Consul answers at once whatever the wait: "index must be > 0"
        # to block), so it is an ordinary read with the ordinary timeout: a silent agent is
        # reported after ``request_timeout``, not after the long poll's ``wait + wait/16``.
        return params, (None if index == 0 else client_timeout(wait))

    @staticmethod
    def _consistency_params(consistency: Consistency) -> list[tuple[str, str]]:
        return [(consistency.value, "")] if consistency.value else []

    @classmethod
    def _near_meta_consistency_params(
        cls, near: str | None, node_meta: Mapping[str, str] | None, consistency: Consistency
    ) -> list[tuple[str, str]]:
        """``near``, then ``node-meta`` (one per pair), then the consistency mode: the filters
        shared by the health and catalog listings, in the order they send them."""
        params = [("near", near)] if near else []
        params += [("node-meta", f"{k}:{v}") for k, v in (node_meta or {}).items()]
        return params + cls._consistency_params(consistency)

    @staticmethod
    def _json(raw: RawResponse, method: str, path: str) -> Any:
        """The answer's JSON value; anything that is not strict JSON (invalid, nested too
        deeply for the decoder, ``NaN``/``Infinity``, numbers beyond Python's digit limit)
        raises :class:`ConsulAnswerError` naming the agent and path."""
        return decode_json(raw.body, raw.address.base_url, method, path)

    async def _get_json(
        self, path: str, params: Params = (), time_limit: float | None = None
    ) -> tuple[Any, RawResponse]:
        raw = await self.request("GET", path, params=params, time_limit=time_limit)
        return self._json(raw, "GET", path), raw

    async def _get_json_blocking(
        self, path: str, params: list[tuple[str, str]], index: int | None, wait: float | None
    ) -> tuple[Any, RawResponse]:
        """:meth:`_get_json` with the blocking parameters (if ``index`` is given) appended and
        the client timeout that their ``wait`` needs."""
        blocking, timeout = self._blocking_params(index, wait)
        return await self._get_json(path, params + blocking, timeout)

    @staticmethod
    def _indexed_meta(raw: RawResponse, path: str, blocking: bool) -> QueryMeta:
        meta = raw.meta
        if blocking and meta.index is None:
            raise ConsulProtocolError(
                f"blocking answer from {raw.address} for GET {path} has no X-Consul-Index"
            )
        return meta

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
            features = await self.agent_features()
            missing = [
                name
                for name, asked, known in (
                    ("filter", filter is not None, features.filter),
                    ("peer", peer is not None, features.peer),
                )
                if asked and not known
            ]
            if missing:
                needs = missing[0]
                raise UnsupportedByAgent(
                    f"GET {path}: the agent at {self.current_address} runs Consul "
                    f"{features.describe()}, which does not know ?{needs}= (it would ignore it "
                    "and answer more than asked); use a newer agent or drop the option"
                )
            if features.filter:
                expression = health_filter(node_meta, filter)
                node_meta = None
        params += self._near_meta_consistency_params(near, node_meta, consistency)
        if expression is not None:
            params.append(("filter", expression))
        if peer is not None:
            params.append(("peer", peer))
        if ns is not None:
            params.append(("ns", ns))
        if partition is not None:
            params.append(("partition", partition))
        body, raw = await self._get_json_blocking(path, params, index, wait)
        with _answer(raw, "GET", path):
            entries = parse_entries(body, f"GET {path}")
            if len(wanted) > 1:
                entries = tuple(e for e in entries if has_tags(e.service.tags, wanted))
            return Indexed(entries, self._indexed_meta(raw, path, index is not None))

    # --- catalog -------------------------------------------------------------------------------

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
    ) -> Indexed[tuple[CatalogService, ...]]:
        """``GET /v1/catalog/service/<service>`` (no health information)."""
        if not service:
            raise ValueError("service name must not be empty")
        wanted = tuple(tags)
        path = f"/v1/catalog/service/{_segment(service)}"
        params = self._dc_params(dc) + [("tag", t) for t in wanted]
        params += self._near_meta_consistency_params(near, node_meta, consistency)
        body, raw = await self._get_json_blocking(path, params, index, wait)
        with _answer(raw, "GET", path):
            items = expect_list(body, f"GET {path}")
            records = tuple(
                CatalogService.from_json(v, f"GET {path}[{i}]") for i, v in enumerate(items)
            )
            if len(wanted) > 1:
                records = tuple(r for r in records if has_tags(r.service_tags, wanted))
            return Indexed(records, self._indexed_meta(raw, path, index is not None))

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
        params = self._dc_params(dc) + self._consistency_params(consistency)
        body, raw = await self._get_json_blocking(path, params, index, wait)
        with _answer(raw, "GET", path):
            mapping = expect_mapping(body, f"GET {path}")
            result: dict[str, tuple[str, ...]] = {}
            for name, tags in mapping.items():
                tag_list = [] if tags is None else expect_list(tags, f"GET {path}.{name}")
                if not all(isinstance(t, str) for t in tag_list):
                    raise ConsulProtocolError(f"GET {path}.{name}: expected an array of strings")
                result[name] = tuple(tag_list)
            return Indexed(result, self._indexed_meta(raw, path, index is not None))

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
    ) -> Indexed[tuple[NodeInfo, ...]]:
        """``GET /v1/catalog/nodes``."""
        path = "/v1/catalog/nodes"
        params = self._dc_params(dc)
        params += self._near_meta_consistency_params(near, node_meta, consistency)
        body, raw = await self._get_json_blocking(path, params, index, wait)
        with _answer(raw, "GET", path):
            items = expect_list(body, f"GET {path}")
            nodes = tuple(NodeInfo.from_json(v, f"GET {path}[{i}]") for i, v in enumerate(items))
            return Indexed(nodes, self._indexed_meta(raw, path, index is not None))

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
            params.append(("limit", str(limit)))
        params += self._consistency_params(consistency)
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
            body = expect_mapping(self._json(raw, "POST", path), f"POST {path}")
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
        """What the agent supports, from ``/v1/agent/self`` ``Config.Version``; read once and
        cached for the client's life (its agents are expected to run one Consul version).

        An agent that answers with an error (a 403 for a token without ``agent:read``) or an
        unreadable answer gives an *unknown* version (cached too); an unreachable agent raises.
        """
        if self._features is None:
            try:
                answer = await self.agent_self()
            except ConsulHTTPError as error:
                if not 400 <= error.status < 500 or isinstance(error, RateLimited):
                    raise  # transient: ask again next time
                self._features = AgentFeatures(None, f"GET /v1/agent/self answered {error.status}")
            except ConsulProtocolError as error:
                self._features = AgentFeatures(None, f"GET /v1/agent/self: {type(error).__name__}")
            else:
                self._features = AgentFeatures.from_agent_self(answer)
        return self._features

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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_json(body: bytes, agent: str, method: str, path: str) -> Any:
    """Decode an answer body as strict JSON, or raise :class:`ConsulAnswerError` naming the
    agent (base URL) and the request path: invalid JSON or UTF-8, ``NaN``/``Infinity``,
    integers beyond Python's digit limit, nesting deeper than the decoder's recursion limit."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        problem = "nested too deeply to decode"
    except (ValueError, UnicodeDecodeError) as exc:
        problem = f"invalid JSON: {exc}"
    raise ConsulAnswerError(agent, method, path, problem)


def _location_host(headers: Mapping[str, str]) -> str | None:
    """The host a ``Location`` header names (``None`` without one or when unparsable); only
    the host, so that no user-info or query of the target URL ends up in an error."""
    location = headers.get("Location")
    if not location:
        return None
    try:
        return yarl.URL(location).host
    except (ValueError, TypeError):
        return None


def _segment(value: str) -> str:
    """Quote a value used as a path segment (names with ``/`` or ``?`` must not change the path)."""
    return quote(value, safe="")


def _is_connect_timeout(exc: aiohttp.ServerTimeoutError) -> bool:
    connection_timeout = getattr(aiohttp, "ConnectionTimeoutError", None)
    if connection_timeout is not None and isinstance(exc, connection_timeout):
        return True
    return "Connection timeout" in str(exc)


def _first_line(text: str, limit: int = 120) -> str:
    """The first line of an aiohttp message, cut, control characters escaped (it may quote
    the agent's bytes)."""
    lines = (text or "").splitlines()
    line = lines[0] if lines and lines[0] else "unparsable answer"
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
    return line if len(line) <= limit else line[:limit] + "..."


def _reason(exc: BaseException) -> str:
    """A short description of a transport error (no headers, no token)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        text = err.strerror or str(err) if err is not None else str(exc)
        return f"{type(exc).__name__}: {text}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
