"""What an S3/MinIO failure means for failover: this node, the whole cluster, or an answer.

Pure (no I/O). The I/O layer describes one failed attempt as an :class:`Outcome` (directly, or
with :func:`outcome_from_exception`, which only inspects exception objects raised by ``minio``,
``urllib3``, ``ssl``, ``socket`` and asyncio) and :func:`classify` returns a :class:`Verdict`:

* :attr:`Fault.NODE <mcresolve.pool.planner.Fault.NODE>` — this endpoint is at fault: report
  ``verdict.failure_kind`` to the outlier detector (most kinds eject at once) and retry on
  *another* endpoint at once, if ``verdict.replay_safe``.
* :attr:`Fault.CLUSTER <mcresolve.pool.planner.Fault.CLUSTER>` — the storage cluster as a whole
  cannot serve: do not count it against the node; the pool's planner waits (``Retry-After`` when
  given, within the caller's deadline), retries if ``replay_safe``, and finally the wrapper
  raises :class:`StorageClusterDegraded`, which says whether reads or writes are affected. A
  quorum code from the first node asked is that node's own view of its peers
  (``verdict.confirmed`` False): the call asks another node before it gives up or waits.
* :attr:`Fault.CLIENT <mcresolve.pool.planner.Fault.CLIENT>` — an answer (``NoSuchKey``,
  ``AccessDenied``, any other 4xx, a 304/3xx) or an error that is not the storage's at all (a
  bug, the caller's stream failing): raise at once, never retry; the node answered, so it counts
  as a success for outlier detection (``verdict.node_ok``).

Verdicts speak the planner's vocabulary: ``verdict.error_class`` is a
:class:`~mcresolve.pool.planner.Fault` (``ErrorClass``, this module's former enum of the same three
values, remains as a deprecated alias of it).

The rules, their order and the MinIO facts behind them are listed on :func:`classify` and in
``docs/decision-logic.md``.
"""

from __future__ import annotations

import email.utils
import enum
import errno
import http.client
import socket
import ssl
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3.exceptions as u3
from minio.error import InvalidResponseError, S3Error, ServerError

from mcresolve.balancer.outlier import FailureKind
from mcresolve.errors import McResolveError
from mcresolve.pool.planner import REFUSED_ERRNOS, Fault

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
"""RFC 9110 §9.2.2. S3 ``PUT`` (object, part) and ``DELETE`` are idempotent; ``POST`` is not in
general (``CompleteMultipartUpload``); pass ``idempotent=True`` for POSTs that are (multi-object
delete, ``SelectObjectContent``)."""
READ_METHODS = frozenset({"GET", "HEAD"})


class Transport(enum.Enum):
    """How an attempt failed below HTTP (no complete response was received)."""

    REFUSED = "refused"
    """Could not connect: refused, host/network unreachable, name resolution, proxy down.
    Nothing was sent."""
    CONNECT_TIMEOUT = "connect_timeout"
    """The TCP connect timed out. Nothing was sent."""
    TLS = "tls"
    """The TLS handshake or certificate verification failed. Nothing was sent."""
    RESET = "reset"
    """The connection was reset, aborted or closed before a response: the server may have
    executed the request."""
    READ_TIMEOUT = "read_timeout"
    """No response within the read timeout (or the caller's per-attempt timeout): the server may
    have executed the request, or may still be executing it."""
    BROKEN_RESPONSE = "broken_response"
    """A response started and its body was cut (incomplete read, bad chunk): the request was
    executed; a read can resume with a Range request."""
    MALFORMED = "malformed"
    """A response arrived but could not be understood (:class:`MalformedAnswer`: an error body
    that is not XML although it says so, a status minio cannot handle): the node is at fault;
    the request may have executed."""


_NOT_SENT = frozenset({Transport.REFUSED, Transport.CONNECT_TIMEOUT, Transport.TLS})


class Affects(enum.Enum):
    """Which operations a degraded cluster cannot serve."""

    READS = "reads"
    WRITES = "writes"
    READS_AND_WRITES = "reads and writes"

    @property
    def reads(self) -> bool:
        """Whether reads are affected."""
        return self is not Affects.WRITES

    @property
    def writes(self) -> bool:
        """Whether writes are affected."""
        return self is not Affects.READS


# --- S3 / MinIO error codes -------------------------------------------------------------------

NODE_LOCAL_CODES = frozenset({"XMinioServerNotInitialized", "XMinioBackendDown"})
"""503s that describe the answering node only: a node restarted alone answers
``XMinioServerNotInitialized`` until its peers return (observed on MinIO 2019)."""
CLUSTER_CODES: Mapping[str, Affects | None] = {
    # Read quorum lost implies write quorum lost too (write quorum > read quorum).
    "XMinioReadQuorum": Affects.READS_AND_WRITES,
    "XMinioWriteQuorum": Affects.WRITES,
    "SlowDownRead": Affects.READS,
    "SlowDownWrite": Affects.WRITES,
    "XMinioStorageFull": Affects.WRITES,
    # None: affects the kind of operation that failed (read for GET/HEAD, write otherwise).
    "SlowDown": None,
    "ServerBusy": None,
    "TooManyRequests": None,
    "RequestTimeout": None,
    "XMinioServerBusy": None,
}
"""Codes that describe the cluster (MinIO 2019 and current; 503/429/507 with Retry-After)."""
QUORUM_CODES = frozenset({"XMinioReadQuorum", "XMinioWriteQuorum"})
"""Cluster codes a node answers from its *own* view of its peers' disks: right after a restart a
MinIO 2019 node reconnects its peers only every 10 s and answers ``503 XMinioReadQuorum``
meanwhile, while the other nodes serve the same object. Cluster-wide only once another node
confirms (:attr:`Outcome.confirmed_elsewhere`, :attr:`Outcome.from_every_endpoint`)."""
MAX_RETRY_AFTER = 86_400.0
"""Upper bound of a parsed ``Retry-After`` in seconds (one day; MinIO sends 60 or 120): a larger
or absurd value means "not within any deadline" all the same, and keeps the arithmetic finite."""


# --- input and output -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """One failed attempt, described without the exception object.

    Exactly one of ``transport`` (no complete response) or ``status`` (an HTTP response) is
    normally set; when neither is, the failure is not the storage's and is propagated.
    """

    method: str
    """HTTP method of the attempt (``GET``, ``HEAD``, ``PUT``, ``POST``, ``DELETE``)."""
    transport: Transport | None = None
    status: int | None = None
    """HTTP status of the error response."""
    code: str | None = None
    """S3 error code from the XML body (absent for HEAD, whose errors have no body)."""
    retry_after: float | None = None
    """``Retry-After`` in seconds, when the response had one (see :func:`parse_retry_after`)."""
    from_every_endpoint: bool = False
    """The same failure has now come from every endpoint this call could use."""
    confirmed_elsewhere: bool = False
    """Another endpoint already answered a cluster-wide code during this call (a quorum code
    from this node then confirms the condition)."""
    body_replayable: bool = True
    """The request body can be sent again identically (none, bytes, or a seekable stream that
    was rewound to its start). False for a consumed one-shot stream."""
    idempotent: bool | None = None
    """Whether executing the request twice has the effect of once (None: from ``method``)."""
    detail: str = ""
    """Human-readable description of the failure (exception type and message) for errors."""

    @property
    def is_idempotent(self) -> bool:
        """``idempotent`` if given, else whether ``method`` is idempotent per RFC 9110."""
        if self.idempotent is not None:
            return self.idempotent
        return self.method.upper() in IDEMPOTENT_METHODS

    @property
    def is_read(self) -> bool:
        """Whether the attempt was a read (GET or HEAD)."""
        return self.method.upper() in READ_METHODS


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do about one failed attempt."""

    error_class: Fault
    failure_kind: FailureKind | None
    """For NODE: what to report to :meth:`OutlierDetector.record_failure`; None otherwise."""
    node_ok: bool
    """True for CLIENT answers: report :meth:`OutlierDetector.record_success` (the node served).
    CLUSTER verdicts report nothing."""
    replay_safe: bool
    """Whether the request may be sent again (anywhere) without risking a double effect or a
    corrupt body: the body is replayable, and either nothing was sent / the server rejected it
    before executing, or the request is idempotent. Always False for CLIENT."""
    may_have_executed: bool
    """Whether the server may have executed the request despite the failure."""
    affects: Affects | None
    """For CLUSTER: which operations the cluster cannot serve; None otherwise."""
    retry_after: float | None
    """The server's ``Retry-After`` in seconds, if any."""
    reason: str
    """Why, in words, for logs and error messages."""
    confirmed: bool = True
    """For CLUSTER: whether the condition is known to be cluster-wide. False for a quorum code
    from the first node asked (its own view of its peers): the caller should try another node
    at once, not counting it against this one, and give up (or wait) only when another node
    confirms or no other node is left."""

    @property
    def unconfirmed_cluster(self) -> bool:
        """CLUSTER by one node's own view only: seek confirmation on another node first."""
        return self.error_class is Fault.CLUSTER and not self.confirmed


class StorageClusterDegraded(McResolveError):
    """The storage cluster as a whole cannot serve this request (quorum lost, throttling, or the
    same server failure from every node), and waiting within the caller's deadline did not
    help. :attr:`affects` says whether reads, writes or both are affected. Raised whatever the
    number of endpoints in the pool (a quorum answer is confirmed on a second node first, when
    there is one). :attr:`attempts` is the number of attempts made."""

    def __init__(
        self,
        affects: Affects,
        reason: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        attempts: int = 0,
    ) -> None:
        self.affects = affects
        self.reason = reason
        self.code = code
        self.status = status
        self.retry_after = retry_after
        self.attempts = attempts
        answer = f"{status} {code}" if code else (str(status) if status else "")
        parts = [f"storage cluster degraded: {affects.value} affected ({reason})"]
        if answer:
            parts.append(f"last answer {answer}")
        if retry_after is not None:
            parts.append(f"server asked to retry after {retry_after:g} s")
        if attempts:
            parts.append(f"{attempts} attempt(s)")
        super().__init__("; ".join(parts))

    @property
    def reads_affected(self) -> bool:
        """Whether reads are affected."""
        return self.affects.reads

    @property
    def writes_affected(self) -> bool:
        """Whether writes are affected."""
        return self.affects.writes


class MalformedAnswer(McResolveError):
    """A storage node answered, and its answer could not be understood: ``minio`` failed while
    reading it with an error that is not one of its own (an XML ``ParseError`` from a truncated
    or garbage error body, a ``ValueError`` from a status it does not expect). Raised in place of
    that error (its ``__cause__``) so that it is classified as the node's fault
    (:attr:`Transport.MALFORMED`) and retried elsewhere, not mistaken for a bug in the caller."""

    def __init__(self, where: str, error: BaseException) -> None:
        self.where = where
        self.error = error
        super().__init__(f"{where} answered something unreadable ({type(error).__name__}: {error})")


# --- the decision -----------------------------------------------------------------------------


def _affects_by_method(outcome: Outcome) -> Affects:
    return Affects.READS if outcome.is_read else Affects.WRITES


def _verdict(
    outcome: Outcome,
    error_class: Fault,
    reason: str,
    *,
    failure_kind: FailureKind | None = None,
    may_have_executed: bool,
    affects: Affects | None = None,
    confirmed: bool = True,
) -> Verdict:
    if error_class is Fault.CLIENT:
        replay_safe = False
    else:
        replay_safe = outcome.body_replayable and (not may_have_executed or outcome.is_idempotent)
    if error_class is Fault.CLUSTER and affects is None:
        affects = _affects_by_method(outcome)
    return Verdict(
        error_class=error_class,
        failure_kind=failure_kind if error_class is Fault.NODE else None,
        node_ok=error_class is Fault.CLIENT,
        replay_safe=replay_safe,
        may_have_executed=may_have_executed,
        affects=affects if error_class is Fault.CLUSTER else None,
        retry_after=outcome.retry_after,
        reason=reason,
        confirmed=confirmed or error_class is not Fault.CLUSTER,
    )


_TRANSPORT_KIND = {
    Transport.REFUSED: FailureKind.CONNECT,
    Transport.TLS: FailureKind.CONNECT,
    Transport.CONNECT_TIMEOUT: FailureKind.TIMEOUT,
    Transport.READ_TIMEOUT: FailureKind.TIMEOUT,
    Transport.RESET: FailureKind.RESET,
    Transport.BROKEN_RESPONSE: FailureKind.RESET,
    Transport.MALFORMED: FailureKind.SERVER_ERROR,
}


def classify(outcome: Outcome) -> Verdict:
    """Classify one failed attempt. Total: every :class:`Outcome` gets exactly one verdict.

    Rules, first match wins:

    1. **Transport failures** (no complete response, or one that cannot be understood) are
       NODE: refused / unreachable / TLS → ``CONNECT``; connect or read timeout → ``TIMEOUT``;
       reset / broken body → ``RESET``; a malformed answer → ``SERVER_ERROR``.
       From every endpoint: a *read timeout* becomes CLUSTER (the nodes accept connections but
       none answers in time: MinIO 2019 with write quorum lost hangs PUTs ~600 s, then 500); a
       *TLS* failure becomes CLIENT (a certificate no node can satisfy is a configuration
       error: retrying cannot help); the others stay NODE (every node unreachable: the pool
       re-resolves, fails over to another datacenter or backs off).
    2. **Cluster codes** (``XMinioReadQuorum``, ``XMinioWriteQuorum``, ``SlowDown*``,
       ``ServerBusy``, ``TooManyRequests``, ``RequestTimeout``, ``XMinioStorageFull``) are
       CLUSTER: throttling is cluster-wide by nature, and trying every node would be the
       hammering the budget is meant to prevent. A *quorum* code is the answering node's own
       view of its peers (a restarted MinIO node answers ``XMinioReadQuorum`` for ~10 s while
       the others serve): CLUSTER with ``confirmed`` False until another node of the call
       answered a cluster code too (``confirmed_elsewhere``) or no other endpoint is left
       (``from_every_endpoint``).
    3. **Node-local codes** (``XMinioServerNotInitialized``, ``XMinioBackendDown``) are NODE
       (``GATEWAY``), or CLUSTER when every node says so (the whole cluster is starting).
    4. **Status 429 and 408** are CLUSTER (throttling / the server gave up waiting).
    5. **Status 502, 504** are NODE (``GATEWAY``); **501** is CLIENT (not implemented);
       **other 5xx** (500 ``InternalError``, a 503 without a known code — every HEAD error has
       no code) are NODE (``SERVER_ERROR``, ejects after a streak). Any 5xx from every endpoint
       is CLUSTER.
    6. **Everything else** — 4xx, 3xx, 2xx, or no transport failure and no status (not a
       storage failure) — is CLIENT.

    ``may_have_executed`` is False when nothing was sent and for answers that reject before
    executing: 429, and the cluster and node-local codes (MinIO sends them from its admission,
    lock and quorum checks, and reverts a write that misses its quorum). True otherwise,
    including a 503 without one of those codes: a proxy or gateway in front of the node may
    answer 503 after the node executed the request (a reset upstream connection, a timeout).
    ``replay_safe`` is ``body_replayable and (not may_have_executed or idempotent)``; CLIENT is
    never replayed.
    """
    detail = f" ({outcome.detail})" if outcome.detail else ""
    if outcome.transport is not None:
        return _classify_transport(outcome, outcome.transport, detail)
    by_code = _classify_code(outcome, detail)
    if by_code is not None:
        return by_code
    return _classify_status(outcome, detail)


def _classify_transport(outcome: Outcome, transport: Transport, detail: str) -> Verdict:
    """Rule 1 of :func:`classify`: no complete, understandable response."""
    every = outcome.from_every_endpoint
    if every and transport is Transport.READ_TIMEOUT:
        return _verdict(
            outcome,
            Fault.CLUSTER,
            f"no node answered in time{detail}",
            may_have_executed=True,
        )
    if every and transport is Transport.TLS:
        return _verdict(
            outcome,
            Fault.CLIENT,
            f"TLS failed with every node: check CA, certificates and server name{detail}",
            may_have_executed=False,
        )
    return _verdict(
        outcome,
        Fault.NODE,
        f"{transport.value.replace('_', ' ')}{detail}",
        failure_kind=_TRANSPORT_KIND[transport],
        may_have_executed=transport not in _NOT_SENT,
    )


def _classify_code(outcome: Outcome, detail: str) -> Verdict | None:
    """Rules 2 and 3 of :func:`classify`: MinIO's cluster and node-local codes (``None`` for
    any other code or none)."""
    every = outcome.from_every_endpoint
    code = outcome.code
    answer = f"{outcome.status} {code}" if code else f"{outcome.status}"
    if code is not None and code in CLUSTER_CODES:
        confirmed = code not in QUORUM_CODES or every or outcome.confirmed_elsewhere
        who = "cluster answered" if confirmed else "node answered, by its own view of the cluster,"
        return _verdict(
            outcome,
            Fault.CLUSTER,
            f"{who} {answer}{detail}",
            may_have_executed=False,
            affects=CLUSTER_CODES[code],
            confirmed=confirmed,
        )
    if code in NODE_LOCAL_CODES:
        if every:
            return _verdict(
                outcome,
                Fault.CLUSTER,
                f"every node answered {answer}{detail}",
                may_have_executed=False,
                affects=Affects.READS_AND_WRITES,
            )
        return _verdict(
            outcome,
            Fault.NODE,
            f"node answered {answer}{detail}",
            failure_kind=FailureKind.GATEWAY,
            may_have_executed=False,
        )
    return None


def _classify_status(outcome: Outcome, detail: str) -> Verdict:
    """Rules 4 to 6 of :func:`classify`: by the HTTP status alone."""
    status = outcome.status
    answer = f"{status} {outcome.code}" if outcome.code else f"{status}"
    if status is None:
        return _verdict(
            outcome, Fault.CLIENT, f"not a storage failure{detail}", may_have_executed=False
        )
    if status in (429, 408):
        return _verdict(
            outcome,
            Fault.CLUSTER,
            f"cluster answered {answer}{detail}",
            may_have_executed=status == 408,
        )
    if status == 501 or not 500 <= status <= 599:
        return _verdict(outcome, Fault.CLIENT, f"answer {answer}{detail}", may_have_executed=False)
    # Here no MinIO code says the request was refused before executing: a 503 without one (a
    # proxy's or gateway's "Service Unavailable", which may come after the server executed
    # the request) may have executed like any other 5xx.
    if outcome.from_every_endpoint:
        return _verdict(
            outcome,
            Fault.CLUSTER,
            f"every node answered {answer}{detail}",
            may_have_executed=True,
        )
    kind = FailureKind.GATEWAY if status in (502, 504) else FailureKind.SERVER_ERROR
    return _verdict(
        outcome,
        Fault.NODE,
        f"node answered {answer}{detail}",
        failure_kind=kind,
        may_have_executed=True,
    )


def parse_retry_after(value: str | None, now_epoch: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds (what MinIO sends) or an HTTP date (needs
    ``now_epoch``, wall-clock seconds, to compute the delta). None when absent or invalid;
    never negative, at most :data:`MAX_RETRY_AFTER` (also for a huge number of digits)."""
    if value is None:
        return None
    text = value.strip()
    if text and text.isascii() and text.isdigit():
        digits = text.lstrip("0") or "0"
        if len(digits) > len(str(int(MAX_RETRY_AFTER))):
            return MAX_RETRY_AFTER
        return min(float(int(digits)), MAX_RETRY_AFTER)
    if now_epoch is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    try:
        delta = when.timestamp() - now_epoch
    except (OverflowError, OSError, ValueError):
        return None
    return min(max(0.0, delta), MAX_RETRY_AFTER)


# --- mapping real exceptions ------------------------------------------------------------------

_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE})


def transport_of(exc: BaseException) -> Transport | None:
    """The :class:`Transport` failure an exception stands for, or None when it is not a
    transport failure. Unwraps ``urllib3`` ``MaxRetryError``/``ProtocolError``/``ProxyError``
    wrappers; order matters because urllib3's ``NewConnectionError`` subclasses
    ``ConnectTimeoutError``."""
    if isinstance(exc, MalformedAnswer):
        return Transport.MALFORMED
    if isinstance(exc, u3.MaxRetryError):
        return transport_of(exc.reason) if exc.reason is not None else None
    if isinstance(exc, u3.ProxyError):
        return Transport.REFUSED
    if isinstance(exc, u3.NewConnectionError):  # includes NameResolutionError
        return Transport.REFUSED
    if isinstance(exc, u3.ConnectTimeoutError):
        return Transport.CONNECT_TIMEOUT
    if isinstance(exc, u3.ReadTimeoutError):
        return Transport.READ_TIMEOUT
    if isinstance(exc, u3.SSLError | ssl.SSLError):
        return Transport.TLS
    if isinstance(exc, u3.IncompleteRead | u3.InvalidChunkLength | http.client.IncompleteRead):
        return Transport.BROKEN_RESPONSE
    if isinstance(exc, u3.ProtocolError):
        # urlopen wraps failures before a response as ("Connection aborted.", inner); failures
        # while reading a body are "Connection broken: ...", "Response ended prematurely", ...
        message = str(exc.args[0]) if exc.args else ""
        if message.startswith("Connection aborted"):
            inner = next((a for a in exc.args[1:] if isinstance(a, BaseException)), None)
            found = transport_of(inner) if inner is not None else None
            return found if found is not None else Transport.RESET
        return Transport.BROKEN_RESPONSE
    if isinstance(exc, u3.DecodeError):
        return Transport.BROKEN_RESPONSE
    if isinstance(exc, ConnectionRefusedError | socket.gaierror):
        return Transport.REFUSED
    if isinstance(exc, ConnectionError):  # reset, aborted, broken pipe, RemoteDisconnected
        return Transport.RESET
    if isinstance(exc, TimeoutError):  # socket.timeout, asyncio per-attempt timeouts
        return Transport.READ_TIMEOUT
    if isinstance(exc, OSError) and exc.errno is not None:
        # Only network errnos: an OSError from a file (the caller's upload stream) falls
        # through to None, i.e. not a storage failure.
        if exc.errno in REFUSED_ERRNOS:
            return Transport.REFUSED
        if exc.errno in _RESET_ERRNOS:
            return Transport.RESET
        if exc.errno == errno.ETIMEDOUT:
            return Transport.READ_TIMEOUT
    return None


def _header(response: Any, name: str) -> str | None:
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get(name)
    return str(value) if value is not None else None


def outcome_from_exception(
    exc: BaseException,
    *,
    method: str,
    from_every_endpoint: bool = False,
    confirmed_elsewhere: bool = False,
    body_replayable: bool = True,
    idempotent: bool | None = None,
    now_epoch: float | None = None,
) -> Outcome:
    """Describe an exception raised by one attempt as an :class:`Outcome` (pure inspection).

    Understands ``minio.error.S3Error`` (status, code and ``Retry-After`` from its response),
    ``minio.error.ServerError`` (status only: HEAD errors have no body),
    ``minio.error.InvalidResponseError`` (a non-XML answer, e.g. a proxy's HTML 502: status
    only), urllib3 exceptions, ``ssl.SSLError``, ``ConnectionError``, ``TimeoutError`` and
    network ``OSError``s. Anything else yields an outcome without transport or status (CLIENT).
    ``now_epoch`` (wall-clock seconds) is needed only for HTTP-date ``Retry-After`` values.
    """
    common: dict[str, Any] = {
        "method": method.upper(),
        "from_every_endpoint": from_every_endpoint,
        "confirmed_elsewhere": confirmed_elsewhere,
        "body_replayable": body_replayable,
        "idempotent": idempotent,
        "detail": f"{type(exc).__name__}: {exc}",
    }
    if isinstance(exc, S3Error):
        response = getattr(exc, "response", None)
        status = getattr(response, "status", None)
        return Outcome(
            status=int(status) if status is not None else None,
            code=exc.code,
            retry_after=parse_retry_after(_header(response, "Retry-After"), now_epoch),
            **common,
        )
    if isinstance(exc, ServerError):
        return Outcome(status=int(exc.status_code), **common)
    if isinstance(exc, InvalidResponseError):
        status = getattr(exc, "_code", None)  # minio keeps the status only in this attribute
        return Outcome(status=int(status) if isinstance(status, int) else None, **common)
    return Outcome(transport=transport_of(exc), **common)


def classify_exception(
    exc: BaseException,
    *,
    method: str,
    from_every_endpoint: bool = False,
    confirmed_elsewhere: bool = False,
    body_replayable: bool = True,
    idempotent: bool | None = None,
    now_epoch: float | None = None,
) -> Verdict:
    """:func:`classify` of :func:`outcome_from_exception`."""
    return classify(
        outcome_from_exception(
            exc,
            method=method,
            from_every_endpoint=from_every_endpoint,
            confirmed_elsewhere=confirmed_elsewhere,
            body_replayable=body_replayable,
            idempotent=idempotent,
            now_epoch=now_epoch,
        )
    )


def __getattr__(name: str) -> object:
    """``ErrorClass``: the deprecated name of :class:`~mcresolve.pool.planner.Fault`."""
    if name == "ErrorClass":
        warnings.warn(
            "mcresolve.minio.classify.ErrorClass is deprecated: use mcresolve.Fault",
            DeprecationWarning,
            stacklevel=2,
        )
        return Fault
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
