"""Sending one request to the Consul agents: the transport under :class:`ConsulClient`.

:class:`ConsulTransport` owns the :class:`aiohttp.ClientSession` (no connection limit, so that
long-lived blocking requests never queue behind each other), the credentials (token, token file,
HTTP basic auth) and the agent rotation: agents are tried in the configured order, the transport
sticks to the one that last answered and moves on when it cannot connect. One request to one
agent is bounded (answer size, stalls between body pieces, no redirect followed). Refusals for
rate are decided by the pure :func:`plan_refusal`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yarl
from multidict import CIMultiDictProxy

from mcresolve.consul.config import ConsulAddress, ConsulConfig
from mcresolve.consul.errors import (
    ConsulAnswerError,
    ConsulAnswerTooLarge,
    ConsulBodyStalled,
    ConsulError,
    ConsulProtocolError,
    ConsulRedirect,
    ConsulTimeout,
    ConsulUnavailable,
    http_error,
)
from mcresolve.consul.models import QueryMeta
from mcresolve.consul.token_file import TokenFile
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


Tried = list[tuple[str, str]]


def encode_body(body: object) -> bytes | None:
    """The request body to send: ``None`` for none, ``bytes`` verbatim, else JSON."""
    if body is None:
        return None
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


@dataclass(slots=True)
class _Call:
    """The state of one :meth:`ConsulTransport.request` across agents and retries."""

    method: str
    path: str
    total: float
    deadline: float
    backoff: Backoff
    tried: Tried = field(default_factory=list)
    token_retried: bool = False
    step: int = 0


class ConsulTransport:
    """Sends requests to the configured agents (see :meth:`request`); owned by
    :class:`~mcresolve.consul.client.ConsulClient`.

    Args:
        config: where and how to reach Consul.
        rate_limit: how 429 and 503 refusals are retried.
        random: uniform ``[0, 1)`` source for the backoff's jitter.
    """

    def __init__(
        self,
        config: ConsulConfig,
        *,
        rate_limit: RateLimitPolicy | None = None,
        random: RandomSource = random.random,
    ) -> None:
        self._config = config
        self._rate_limit = rate_limit if rate_limit is not None else RateLimitPolicy()
        self._random = random
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = config.ssl_context() if config.uses_tls else None
        self._token_file: TokenFile | None = None
        if config.token_file is not None:
            self._token_file = TokenFile(
                config.token_file,
                fallback=config.token,
                check_interval=config.token_file_check_interval,
            )
        self._current = 0
        self._closed = False

    @property
    def current_address(self) -> ConsulAddress:
        """The agent the next request goes to first (the last one that answered)."""
        return self._config.addresses[self._current]

    async def aclose(self) -> None:
        """Close the HTTP session (idempotent). In-flight requests fail."""
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
        """Send one request and return the 2xx answer, raising typed errors otherwise: the loop
        behind :meth:`~mcresolve.consul.client.ConsulClient.request`, whose docstring states its
        rules (agent rotation, refusals for rate, token-file re-read after a 403)."""
        session = self._get_session()
        data = encode_body(body)
        total = self._config.request_timeout if time_limit is None else time_limit
        loop = asyncio.get_running_loop()
        call = _Call(
            method,
            path,
            total,
            loop.time() + total,
            Backoff(self._rate_limit.backoff, self._random),
        )
        query = [*params, *self._scope_params(params)]
        addresses = self._config.addresses
        first = self._current
        while call.step < len(addresses):
            position = (first + call.step) % len(addresses)
            address = addresses[position]
            # Each agent gets the whole time limit (a dead agent's connect timeout must not cut
            # a healthy long poll on the next one short); a retry after a 503 what is left.
            budget = (
                total if call.backoff.failures == 0 else max(call.deadline - loop.time(), 0.001)
            )
            answer = await self._send(session, call, query, data, address, position, budget)
            if answer is None:  # could not reach this agent: the next one
                call.step += 1
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
            await self._after_refusal(call, status, payload, address)
        raise ConsulUnavailable(f"no Consul agent reachable for {method} {path}", call.tried)

    async def _after_refusal(
        self, call: _Call, status: int, payload: bytes, address: ConsulAddress
    ) -> None:
        """Carry out what a non-2xx answer calls for: return to send the request again (to
        the next agent when ``call.step`` moved on, else to the same one), or raise."""
        method, path = call.method, call.path
        if status in (429, 503):
            retry = call.backoff.failures + 1
            delay = call.backoff.failure() if status == 503 else 0.0
            plan = plan_refusal(
                status,
                agents_left=len(self._config.addresses) - 1 - call.step,
                retry=retry,
                delay=delay,
                time_left=call.deadline - asyncio.get_running_loop().time(),
                policy=self._rate_limit,
            )
            if isinstance(plan, NextAgent):
                call.tried.append((address.base_url, f"answered {status}"))
                log.info(
                    "consul %s %s: %s refused (%s, rate limit), trying the next agent",
                    method,
                    path,
                    address,
                    status,
                )
                call.step += 1
                return
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
                return
        elif status == 403 and self._token_file is not None and not call.token_retried:
            call.token_retried = True
            if self._token_file.reload():
                log.info(
                    "consul %s %s: 403 from %s and the token file changed: retrying with "
                    "the new token",
                    method,
                    path,
                    address,
                )
                return
        message = payload.decode("utf-8", errors="replace").strip()
        if 400 <= status < 600:
            raise http_error(status, message, method=method, path=path, agent=address.base_url)
        raise ConsulProtocolError(f"unexpected status {status} from {address} for {method} {path}")

    async def _send(
        self,
        session: aiohttp.ClientSession,
        call: _Call,
        query: Params,
        data: bytes | None,
        address: ConsulAddress,
        position: int,
        budget: float,
    ) -> tuple[int, CIMultiDictProxy[str], bytes, float] | None:
        """One request to one agent: its ``(status, headers, body, elapsed)``, or ``None`` when
        the agent could not be reached (the reason appended to ``call.tried``) and the next one
        may be tried. Raises for what must not be retried elsewhere (a timeout after
        connecting, a redirect, a stalled, oversized or malformed answer, a dropped ``POST``)."""
        method, path = call.method, call.path
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
                payload = await self._read_body(response, address, method, path, call.tried)
        except ConsulBodyStalled:
            self._advance_from(position)
            raise
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = self._failure(exc, call, address, position, budget)
            if failure is None:
                return None
            raise failure from None
        return status, response_headers, payload, time.monotonic() - started

    def _failure(
        self,
        exc: TimeoutError | aiohttp.ClientError,
        call: _Call,
        address: ConsulAddress,
        position: int,
        budget: float,
    ) -> ConsulError | None:
        """What a transport error means: ``None`` when the next agent may be tried (the
        reason noted in ``call.tried``), else the error to raise (the next call then starts
        with the next agent)."""
        method, path, tried = call.method, call.path, call.tried
        if isinstance(exc, aiohttp.ServerTimeoutError) and _is_connect_timeout(exc):
            tried.append((address.base_url, "connect timeout"))
            return None
        if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError included
            self._advance_from(position)
            return self._timeout(method, path, address, budget, tried)
        if isinstance(exc, aiohttp.ClientConnectorError):
            tried.append((address.base_url, _reason(exc)))
            log.debug("consul %s %s: %s unreachable: %s", method, path, address, _reason(exc))
            return None
        if isinstance(exc, (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)):
            tried.append((address.base_url, _reason(exc)))
            log.debug("consul %s %s: %s dropped: %s", method, path, address, _reason(exc))
            if method.upper() == "POST":
                self._advance_from(position)
                return ConsulUnavailable(f"Consul connection lost during {method} {path}", tried)
            return None
        if isinstance(exc, aiohttp.ClientPayloadError):
            self._advance_from(position)
            return ConsulProtocolError(
                f"incomplete answer from {address} for {method} {path}: {_reason(exc)}"
            )
        if isinstance(exc, aiohttp.ClientResponseError):
            # The agent answered something that is not HTTP (bad status line, headers or
            # framing): a broken agent, not an unreachable one.
            self._advance_from(position)
            return ConsulProtocolError(
                f"malformed HTTP answer from {address} for {method} {path}: "
                f"{_first_line(exc.message)}"
            )
        tried.append((address.base_url, _reason(exc)))
        return None

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
