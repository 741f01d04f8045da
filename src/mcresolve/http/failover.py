"""HTTP failover decisions shared by :mod:`mcresolve.http.httpx` and
:mod:`mcresolve.http.aiohttp` (pure).

The adapters send each attempt through their HTTP library and describe what happened in the
library-neutral terms of this module; every decision is taken here, once, for both:

* :func:`route_for`: which requests go through a pool (a Consul name such as
  ``billing.service.consul``, a ``consul://`` / ``consul+query://`` URL, or a host the caller
  mapped to a target) and which pass through untouched;
* :func:`failed_status`: which answers count as a failed attempt (every 5xx, as Envoy's
  ``consecutive_5xx`` outlier detection counts them) — the others are the caller's answer;
* :func:`classify_http`: what a failed attempt means for the pool (a
  :class:`~mcresolve.pool.planner.AttemptVerdict`: whose fault, which failure kind, whether the
  request may be sent again), from a :class:`TransportFailure` or a :class:`StatusFailure`, the
  :class:`RequestFacts` and the :class:`HttpFailoverPolicy`;
* :func:`parse_retry_after`, :func:`is_idempotent`.

The classification table is in ``docs/http.md``.
"""

from __future__ import annotations

import email.utils
import enum
import errno
import math
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeVar

from mcresolve.arguments import check_instance, check_iterable, check_optional_str
from mcresolve.balancer.outlier import FailureKind
from mcresolve.errors import McResolveError
from mcresolve.pool.planner import REFUSED_ERRNOS, AttemptContext, AttemptVerdict, Fault
from mcresolve.sources.target import (
    HealthTarget,
    PreparedQueryTarget,
    Target,
    TargetError,
    parse_target,
)

__all__ = [
    "IDEMPOTENT_METHODS",
    "HttpFailoverPolicy",
    "RequestFacts",
    "Route",
    "StatusFailure",
    "TransportFailure",
    "classify_http",
    "describe_builtin",
    "failed_status",
    "is_idempotent",
    "parse_retry_after",
    "route_for",
]

R = TypeVar("R")

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""RFC 9110 §9.2.2: the methods whose intended effect is the same however many times the request
is sent, which a client may therefore repeat automatically after a communication failure."""

CONSUL_SCHEMES: Final = frozenset({"consul", "consul+query"})
"""URL schemes whose host is a Consul service (``consul://billing``) or prepared query
(``consul+query://billing``) name; the request goes to the endpoint with
:attr:`HttpFailoverPolicy.scheme`."""


class TransportFailure(enum.Enum):
    """How far a failed attempt got, in library-neutral terms (the adapters map their
    exceptions to these)."""

    REFUSED = "refused"
    """The connection could not be made (refused, unreachable, TLS handshake failed): nothing
    was sent."""
    CONNECT_TIMEOUT = "connect_timeout"
    """The connection was not established in time: nothing was sent."""
    CERTIFICATE = "certificate"
    """The server's certificate did not verify (wrong name, unknown issuer): a configuration
    error, not a node failure."""
    RESET = "reset"
    """The connection broke after the request started (reset, closed without an answer, a
    malformed answer, a body cut short): the server may have acted on it."""
    TIMEOUT = "timeout"
    """No answer in time after the request started (read/write timeout, the pool's attempt
    timeout): the server may have acted on it."""
    LOCAL = "local"
    """A limit of the client itself (its connection pool is full): not the endpoint's fault."""


class StatusFailure(McResolveError, Generic[R]):
    """An attempt answered with a 5xx status (raised inside the attempt so that the pool can
    classify it; the adapters return :attr:`response` to the caller when it is final)."""

    def __init__(self, status: int, retry_after: float | None, response: R) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after
        self.response = response


@dataclass(frozen=True, slots=True)
class HttpFailoverPolicy:
    """What the HTTP adapters retry and how they address endpoints (defaults cite precedents)."""

    retry_statuses: frozenset[int] = frozenset({502, 503, 504})
    """5xx statuses retried on another endpoint (idempotent requests). Envoy's ``gateway-error``
    retry condition (502, 503, 504): the node or the proxy in front of it could not serve, the
    next one may. Other 5xx are returned as they are (an application error is likely to repeat
    everywhere; Envoy's ``5xx`` condition, which retries them too, is opt-in there as well) but
    still count against the endpoint, like Envoy's ``consecutive_5xx`` outlier detection."""
    idempotent_methods: frozenset[str] = IDEMPOTENT_METHODS
    """Methods replayed after the request may have reached a server (RFC 9110 §9.2.2)."""
    idempotency_header: str | None = "Idempotency-Key"
    """A request carrying this header is treated as idempotent whatever its method (the IETF
    ``Idempotency-Key`` header draft for POST/PATCH; Stripe's API). None: ignore it."""
    scheme: Literal["http", "https"] = "http"
    """Scheme used on the endpoints of a ``consul://`` / ``consul+query://`` URL (a
    ``http(s)://billing.service.consul`` URL keeps its own)."""
    host_header: Literal["logical", "endpoint"] = "logical"
    """``logical``: send the name the caller wrote (``Host: billing.service.consul``), as Envoy
    does by default (``host_rewrite`` is opt-in) and as a virtual-hosted server expects;
    ``endpoint``: send the endpoint's ``address:port``."""
    server_hostname: str | None = None
    """TLS server name (SNI, and the name the certificate is checked against) for HTTPS
    endpoints. None: the logical host name, what a client connecting by name would check."""
    consul_names: bool = True
    """Route hosts ending in ``.service[.dc].consul`` / ``.query[.dc].consul`` through a pool
    without an explicit mapping."""

    def __post_init__(self) -> None:
        check_iterable("HttpFailoverPolicy.retry_statuses", self.retry_statuses, "a set of ints")
        for status in self.retry_statuses:
            check_instance("HttpFailoverPolicy.retry_statuses", status, (int,), "a set of ints")
        check_iterable(
            "HttpFailoverPolicy.idempotent_methods", self.idempotent_methods, "a set of strings"
        )
        for method in self.idempotent_methods:
            check_instance(
                "HttpFailoverPolicy.idempotent_methods", method, (str,), "a set of strings"
            )
        check_optional_str("HttpFailoverPolicy.idempotency_header", self.idempotency_header)
        check_optional_str("HttpFailoverPolicy.server_hostname", self.server_hostname)
        check_instance("HttpFailoverPolicy.consul_names", self.consul_names, (bool,), "a bool")
        if not all(500 <= status <= 599 for status in self.retry_statuses):
            raise ValueError("HttpFailoverPolicy.retry_statuses must be 5xx statuses")
        if self.scheme not in ("http", "https"):
            raise ValueError("HttpFailoverPolicy.scheme must be 'http' or 'https'")
        if self.host_header not in ("logical", "endpoint"):
            raise ValueError("HttpFailoverPolicy.host_header must be 'logical' or 'endpoint'")


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the classifier needs to know about the request."""

    method: str
    idempotent: bool
    """The method is idempotent, or the caller marked the request so."""
    body_replayable: bool
    """The body can be sent again (none, bytes, or already read); a streaming body cannot."""

    @property
    def replayable(self) -> bool:
        """Whether the request may be sent again after it may have reached a server."""
        return self.idempotent and self.body_replayable


def is_idempotent(
    method: str,
    headers: Mapping[str, str] | Callable[[str], str | None],
    policy: HttpFailoverPolicy,
    override: bool | None = None,
) -> bool:
    """Whether a request may be repeated: ``override`` when given (the caller knows), else
    an idempotent method or the policy's idempotency header."""
    if override is not None:
        return override
    if method.upper() in policy.idempotent_methods:
        return True
    name = policy.idempotency_header
    if name is None:
        return False
    value = headers(name) if callable(headers) else _header(headers, name)
    return value is not None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, item in headers.items():
        if key.lower() == lowered:
            return item
    return None


def failed_status(status: int) -> bool:
    """Whether an answer with ``status`` is a failed attempt (every 5xx): it is reported
    against the endpoint, retried when :func:`classify_http` says so, and returned to the
    caller only when final."""
    return 500 <= status <= 599


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` in seconds (RFC 9110 §10.2.3: delay-seconds or an HTTP-date), or None
    when absent or malformed. Never negative."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None
    seconds = when.timestamp() - now()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def classify_http(
    failure: TransportFailure | StatusFailure[object] | None,
    request: RequestFacts,
    context: AttemptContext,
    policy: HttpFailoverPolicy,
    detail: str = "",
) -> AttemptVerdict:
    """The pool's verdict on one failed HTTP attempt (the table in ``docs/http.md``).

    * nothing sent (``REFUSED``, ``CONNECT_TIMEOUT``): NODE, replayable for every method —
      the request never left the client (Envoy ``connect-failure``; gRPC transparent retry);
    * ``RESET`` / ``TIMEOUT``: NODE; replayed only when the request is idempotent and its body
      can be sent again (RFC 9110 §9.2.2; Envoy ``reset``);
    * a status in :attr:`HttpFailoverPolicy.retry_statuses`: NODE ``GATEWAY``, replayed like a
      reset (Envoy ``gateway-error``); once every endpoint of the round has answered so, CLUSTER
      (the service as a whole is failing: nothing more is counted against the nodes, the MinIO
      classifier's ``from_every_endpoint`` rule) with the server's ``Retry-After`` as the wait
      (Envoy's ``rate_limited_retry_back_off``, gRPC's server pushback; without it the pool's
      cluster backoff), or a prompt give-up when that wait would pass the deadline;
    * any other 5xx: NODE ``SERVER_ERROR``, not replayed (returned as the answer);
    * ``CERTIFICATE``, ``LOCAL`` or an unknown failure (None): CLIENT, raised at once.
    """
    why = f": {detail}" if detail else ""
    if isinstance(failure, StatusFailure):
        status = failure.status
        if status in policy.retry_statuses:
            if context.every_endpoint_tried:
                hint = failure.retry_after
                wait = "" if hint is None else f", Retry-After {hint:g} s"
                return AttemptVerdict(
                    Fault.CLUSTER,
                    None,
                    request.replayable,
                    retry_after=hint,
                    reason=f"HTTP {status} from every endpoint{wait}",
                )
            return AttemptVerdict(
                Fault.NODE, FailureKind.GATEWAY, request.replayable, reason=f"HTTP {status}"
            )
        return AttemptVerdict(
            Fault.NODE, FailureKind.SERVER_ERROR, False, reason=f"HTTP {status} (final)"
        )
    if failure is TransportFailure.REFUSED:
        return AttemptVerdict(Fault.NODE, FailureKind.CONNECT, True, reason=f"refused{why}")
    if failure is TransportFailure.CONNECT_TIMEOUT:
        return AttemptVerdict(Fault.NODE, FailureKind.TIMEOUT, True, reason=f"connect timeout{why}")
    if failure is TransportFailure.RESET:
        return AttemptVerdict(
            Fault.NODE, FailureKind.RESET, request.replayable, reason=f"reset{why}"
        )
    if failure is TransportFailure.TIMEOUT:
        what = "attempt timeout" if context.timed_out else "timeout"
        return AttemptVerdict(
            Fault.NODE, FailureKind.TIMEOUT, request.replayable, reason=f"{what}{why}"
        )
    if failure is TransportFailure.CERTIFICATE:
        return AttemptVerdict(Fault.CLIENT, None, False, reason=f"certificate{why}")
    return AttemptVerdict(Fault.CLIENT, None, False, reason=f"not a node failure{why}")


def describe_builtin(exc: BaseException) -> TransportFailure | None:
    """The :class:`TransportFailure` of a standard-library exception (None: not a transport
    failure). The adapters try their library's exceptions first."""
    for link in _chain(exc):
        if isinstance(link, ssl.SSLCertVerificationError):
            return TransportFailure.CERTIFICATE
    if isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError)
        and not isinstance(exc, ConnectionError | TimeoutError)
        and exc.errno in REFUSED_ERRNOS
    ):
        return TransportFailure.REFUSED
    if isinstance(exc, TimeoutError):
        return TransportFailure.TIMEOUT
    if isinstance(exc, ConnectionError | EOFError) or (
        isinstance(exc, OSError) and exc.errno in (errno.EPIPE, errno.ECONNRESET)
    ):
        return TransportFailure.RESET
    return None


def caused_by_certificate(exc: BaseException) -> bool:
    """Whether a certificate verification error is anywhere in ``exc``'s cause chain."""
    return any(isinstance(link, ssl.SSLCertVerificationError) for link in _chain(exc))


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and len(seen) < 16 and all(link is not s for s in seen):
        seen.append(link)
        link = link.__cause__ or link.__context__
    return seen


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request URL goes: the pool of :attr:`target` (its key), reached with
    :attr:`scheme`, under the logical host name :attr:`host`."""

    target: str
    """The target string (the pool's key)."""
    scheme: Literal["http", "https"]
    host: str
    """The host the caller wrote (``billing.service.consul``): Host header and TLS name."""


def route_for(
    scheme: str,
    host: str,
    port: int | None,
    targets: Mapping[str, str],
    policy: HttpFailoverPolicy,
) -> Route | None:
    """The route of a request URL, or None for a host that is not a pool's (passed through).

    In order: a host the caller mapped (``targets={"billing": "consul+query://billing"}``,
    case-insensitive); a ``consul://`` / ``consul+query://`` URL (``consul+query://billing``);
    a Consul name (``billing.service.consul``, ``billing.query.dc2.consul``) when
    :attr:`HttpFailoverPolicy.consul_names` is on. A port in the URL of a Consul name overrides the
    service's port (the target's ``port=`` option).
    :class:`~mcresolve.sources.target.TargetError` for a ``consul://`` URL or ``.consul`` name that
    is not a valid target.
    """
    lowered = host.lower().rstrip(".")
    scheme = scheme.lower()
    mapped = targets.get(lowered)
    if mapped is None:
        mapped = next((t for name, t in targets.items() if name.lower() == lowered), None)
    if scheme in CONSUL_SCHEMES:
        target = mapped if mapped is not None else f"{scheme}://{host}"
        if mapped is None:
            parse_target(target)
        return Route(target, policy.scheme, host)
    if scheme not in ("http", "https"):
        return None
    web: Literal["http", "https"] = "https" if scheme == "https" else "http"
    if mapped is not None:
        return Route(mapped, web, host)
    if policy.consul_names and lowered.endswith(".consul"):
        text = host if port is None else f"{host}:{port}"
        parsed: Target = parse_target(text)
        if not isinstance(parsed, HealthTarget | PreparedQueryTarget):
            raise TargetError(f"{host!r} is not a Consul service or query name")
        return Route(text, web, host)
    return None
