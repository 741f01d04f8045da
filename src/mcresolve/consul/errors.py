"""Typed exceptions for Consul's answers and for failing to get one.

Consul answers errors with a status and a bare ``text/plain`` message (``No path to datacenter``,
``Missing service name``, ``Query not found``...); the message is kept verbatim in
:attr:`ConsulHTTPError.message`. No exception ever carries the ACL token or request headers.
"""

from __future__ import annotations

from collections.abc import Sequence

from mcresolve.errors import McResolveError

#: Longest part of a response body quoted in an exception message.
_QUOTE_LIMIT = 200


def _quote(text: str) -> str:
    """At most :data:`_QUOTE_LIMIT` characters of an agent's text, control characters (line
    breaks, terminal escapes) shown as ``\\xNN`` so an error stays one harmless line."""
    cut = text if len(text) <= _QUOTE_LIMIT else text[:_QUOTE_LIMIT] + "…"
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in cut)


class ConsulError(McResolveError):
    """Base class of every error raised by :mod:`mcresolve.consul` (itself under mcresolve's
    root, :class:`~mcresolve.errors.McResolveError`)."""


class ConsulConfigError(ConsulError, ValueError):
    """The configuration (arguments or ``CONSUL_*`` environment variables) is invalid."""


class ConsulUnavailable(ConsulError):
    """No agent could be reached: every address was tried and failed at the transport level
    (connection refused, reset, TLS failure) or the call timed out.

    Attributes:
        tried: the base URLs tried, in order, with the reason each one failed.
    """

    def __init__(self, message: str, tried: Sequence[tuple[str, str]] = ()) -> None:
        self.tried: tuple[tuple[str, str], ...] = tuple(tried)
        detail = "; ".join(f"{url}: {reason}" for url, reason in self.tried)
        super().__init__(f"{message} ({detail})" if detail else message)


class ConsulTimeout(ConsulUnavailable):
    """The agent accepted the request but did not answer within the client timeout."""


class ConsulBodyStalled(ConsulTimeout):
    """The agent sent its answer's headers, then stopped sending the body for longer than the
    body idle timeout (``ConsulConfig.body_idle_timeout``). Consul writes a whole answer at
    once after a blocking wait, so a body that stops flowing is a stuck connection or agent.
    """


class ConsulProtocolError(ConsulError):
    """The agent answered something that is not what the Consul API promises (invalid JSON,
    unexpected shape, missing ``X-Consul-Index`` on a blocking endpoint)."""


class ConsulRedirect(ConsulProtocolError):
    """The agent answered with a redirect (3xx). Consul's HTTP API never redirects clients, so
    the redirect is not followed: following it would send the request, and its ACL token, to
    whatever host the answer names.

    Attributes:
        agent: the base URL of the agent that answered (``scheme://host:port``).
        status: the 3xx status.
        location_host: the host the ``Location`` header names (``None`` when there is none or
            it cannot be parsed); only the host, never the rest of the URL.
    """

    def __init__(
        self, agent: str, status: int, location_host: str | None, *, method: str, path: str
    ) -> None:
        self.agent = agent
        self.status = status
        self.location_host = location_host
        target = "" if location_host is None else f" to host {_quote(location_host)!r}"
        super().__init__(
            f"Consul agent {agent} answered {status} (redirect{target}) for {method} {path}; "
            "Consul's API never redirects, so it was not followed"
        )


class ConsulAnswerError(ConsulProtocolError):
    """An answer could not be decoded: not JSON, nested deeper than the decoder handles, a
    non-finite number (``NaN``), or a top-level value of the wrong type.

    Attributes:
        agent: the base URL of the agent that answered.
        path: the request path.
    """

    def __init__(self, agent: str, method: str, path: str, problem: str) -> None:
        self.agent = agent
        self.path = path
        super().__init__(f"malformed answer from {agent} for {method} {path}: {_quote(problem)}")


class ConsulAnswerTooLarge(ConsulProtocolError):
    """An answer was larger than the configured limit (``ConsulConfig.max_answer_bytes``);
    reading stopped at the limit.

    Attributes:
        agent: the base URL of the agent that answered.
        limit: the limit in bytes.
        received: body bytes read (after decompression) before giving up, at most
            ``limit + 1``; 0 when the ``Content-Length`` header alone exceeded the limit.
        declared: the answer's ``Content-Length``, if it had one (the compressed size for a
            compressed answer: the limit applies to the decompressed bytes).
    """

    def __init__(
        self,
        agent: str,
        method: str,
        path: str,
        *,
        limit: int,
        received: int,
        declared: int | None,
    ) -> None:
        self.agent = agent
        self.limit = limit
        self.received = received
        self.declared = declared
        size = f"declares {declared} bytes" if received == 0 else "more bytes were sent"
        super().__init__(
            f"answer from {agent} for {method} {path} is larger than the {limit}-byte limit "
            f"({size}); not read further"
        )


class ConsulHTTPError(ConsulError):
    """Consul answered with an error status.

    Attributes:
        status: the HTTP status code.
        message: Consul's plain-text error message, verbatim (may be empty, e.g. a 404 for an
            unknown path).
        method: the request method.
        path: the request path (without the query string, which may hold user data).
        agent: the base URL of the agent that answered (``scheme://host:port``; ``""`` when
            unknown). Never the token, headers or query string.
    """

    def __init__(
        self, status: int, message: str, *, method: str = "", path: str = "", agent: str = ""
    ) -> None:
        self.status = status
        self.message = message
        self.method = method
        self.path = path
        self.agent = agent
        who = f"Consul agent {agent}" if agent else "Consul"
        where = f" for {method} {path}" if method or path else ""
        text = f": {_quote(message)}" if message else ""
        super().__init__(f"{who} answered {status}{where}{text}")


class BadRequest(ConsulHTTPError):
    """400: the request was malformed (``Invalid wait time``, ``Missing service name``, ...)."""


class PermissionDenied(ConsulHTTPError):
    """403: the ACL token does not allow the operation (``Permission denied``, ``ACL not
    found``)."""


class NotFound(ConsulHTTPError):
    """404: unknown path, or an unknown prepared query (``Query not found``)."""


class MethodNotAllowed(ConsulHTTPError):
    """405: the endpoint does not accept that method (``method GET not allowed``)."""


class RateLimited(ConsulHTTPError):
    """429: the request was refused for rate, not served: by the servers' RPC rate limiter
    (Consul 1.15+, "429 Resource Exhausted": another server could serve it, retry elsewhere at
    once) or by the agent beyond ``limits.http_max_conns_per_client`` concurrent connections
    from one client address (default 200). Consul sends no ``Retry-After``. The client moves on
    to the next configured agent at once and raises this only when every agent refused
    (see :class:`~mcresolve.consul.client.RateLimitPolicy`)."""


class ServerError(ConsulHTTPError):
    """500 (or another 5xx): Consul failed to serve the request.

    Recognisers for the messages that callers act upon are provided as properties.
    """

    @property
    def no_path_to_datacenter(self) -> bool:
        """The requested datacenter is unknown or unreachable (``No path to datacenter``, or an
        ``rpc error`` while the remote datacenter's servers are down)."""
        return self.message.startswith(("No path to datacenter", "rpc error"))

    @property
    def no_cluster_leader(self) -> bool:
        """The servers have no leader (``No cluster leader``)."""
        return "No cluster leader" in self.message

    @property
    def check_has_no_ttl(self) -> bool:
        """A TTL update went to an unknown or non-TTL check
        (``CheckID "x" does not have associated TTL``)."""
        return "does not have associated TTL" in self.message

    @property
    def query_not_found(self) -> bool:
        """A prepared query was not found in the datacenter it was run in (``?dc=`` on a query
        defined elsewhere answers 500 ``rpc error making call: Query not found``)."""
        return "Query not found" in self.message


class Overloaded(ServerError):
    """503: the servers' RPC rate limiter (Consul 1.15+, "503 Service Unavailable") says no
    server can serve the request now (consistent reads, writes): retry after an exponential,
    jittered backoff. Consul sends no ``Retry-After``. The client retries within the call's
    time limit and raises this when the limit or the attempts run out (see
    :class:`~mcresolve.consul.client.RateLimitPolicy`)."""


_BY_STATUS: dict[int, type[ConsulHTTPError]] = {
    400: BadRequest,
    403: PermissionDenied,
    404: NotFound,
    405: MethodNotAllowed,
    429: RateLimited,
}


def http_error(
    status: int, message: str, *, method: str = "", path: str = "", agent: str = ""
) -> ConsulHTTPError:
    """The typed exception for an error answer ``status`` with body ``message`` from ``agent``."""
    if status == 503:
        return Overloaded(status, message, method=method, path=path, agent=agent)
    if status >= 500:
        return ServerError(status, message, method=method, path=path, agent=agent)
    cls = _BY_STATUS.get(status, ConsulHTTPError)
    return cls(status, message, method=method, path=path, agent=agent)
