"""The tcp mode's rules, pure: the policy, and when a connection is committed to its endpoint.

A proxied TCP connection has two phases. While **establishing**, the sidecar has connected to an
endpoint and forwards what the client sends, keeping a copy (the replay buffer), until the
endpoint's first byte comes back; a failure in this phase (refused, reset, closed, or no first
byte in time) is retried on another endpoint with the copy replayed. Once **committed** the
bytes flow both ways and nothing is replayed: a failure ends the connection.

:func:`establish_step` decides, from a few numbers, what the establishing phase does next;
:mod:`mcresolve.sidecar.tcp_mode` carries it out on sockets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from mcresolve.arguments import check_int_range, check_seconds

__all__ = [
    "Commit",
    "EstablishStep",
    "TcpProxyPolicy",
    "TimedOut",
    "WaitFor",
    "establish_step",
    "idle_left",
    "replay_fits",
]


@dataclass(frozen=True, slots=True)
class TcpProxyPolicy:
    """Limits of one tcp-mode listener. Durations are seconds."""

    connect_timeout: float = 5.0
    """Limit on one TCP connect to an endpoint; then the next endpoint is tried. 5 s is
    Envoy's cluster ``connect_timeout`` default and HAProxy's documented ``timeout connect 5s``;
    on a LAN a connect takes a millisecond, so 5 s only fires on a blackholed node."""

    first_byte_timeout: float = 10.0
    """Limit, from the client's first bytes reaching an endpoint, on the endpoint's first byte
    back: past it the attempt counts as a timeout and the connection (with the client's bytes
    replayed) moves to another endpoint. When neither side has sent anything for this long
    after the connect, the connection is committed as it is (a client-speaks-first protocol
    whose client is slow to speak: nothing to replay, nothing wrong with the endpoint). 10 s is
    the pool's ``CallPolicy.attempt_timeout`` (its reasoning: fires only on a hung node); HAProxy
    calls the same limit ``timeout server`` (commonly 30 s, but it is also the inactivity limit
    there)."""

    establish_deadline: float = 30.0
    """Limit on the establishing phase as a whole (every attempt and the backoff when every
    endpoint refuses): past it the client connection is closed. 30 s is the pool's
    ``CallPolicy.deadline`` (a library call gives up at the same time)."""

    idle_timeout: float = 3600.0
    """A committed connection with no byte in either direction for this long is closed
    (``math.inf``: never). 1 h is Envoy's ``tcp_proxy`` ``idle_timeout`` default."""

    replay_limit: int = 65536
    """Bytes of client data kept for replay while establishing. A client that sends more before
    the endpoint answers (a large upload) commits the connection: beyond this nothing can be
    replayed. 64 KiB: four HAProxy buffers (``tune.bufsize`` 16 KiB) and well under Envoy's
    1 MiB ``per_connection_buffer_limit_bytes``; 1024 connections hold at most 64 MiB."""

    max_connections: int = 1024
    """Client connections at once; one more is accepted and reset at once (the client sees
    ``ECONNRESET`` rather than hanging in the accept backlog), as Envoy's overload manager
    does beyond ``global_downstream_max_connections``. 1024 is a common ``ulimit -n`` and
    below HAProxy's default ``maxconn`` (derived from it)."""

    chunk_size: int = 65536
    """Bytes read at a time in each direction; each chunk is written and drained before the
    next is read, so a connection holds at most about this much plus the socket's write buffer
    (backpressure as in HAProxy's one buffer per direction)."""

    def __post_init__(self) -> None:
        check_seconds("TcpProxyPolicy.connect_timeout", self.connect_timeout)
        check_seconds("TcpProxyPolicy.first_byte_timeout", self.first_byte_timeout)
        check_seconds("TcpProxyPolicy.establish_deadline", self.establish_deadline)
        check_seconds("TcpProxyPolicy.idle_timeout", self.idle_timeout, inf=True)
        check_int_range("TcpProxyPolicy.replay_limit", self.replay_limit, 0)
        check_int_range("TcpProxyPolicy.max_connections", self.max_connections, 1)
        check_int_range("TcpProxyPolicy.chunk_size", self.chunk_size, 1)


class Commit(Enum):
    """The establishing phase ends with the connection committed to its endpoint, because..."""

    FIRST_BYTE = "first_byte"
    """...the endpoint sent its first byte."""
    SILENT = "silent"
    """...neither side sent anything within ``first_byte_timeout`` of the connect."""
    UNREPLAYABLE = "unreplayable"
    """...the client sent more than ``replay_limit`` bytes: nothing could be replayed anyway."""
    CLOSED = "closed"
    """...the endpoint closed after the client had closed its side: the exchange is over."""


@dataclass(frozen=True, slots=True)
class WaitFor:
    """Wait for bytes from either side for at most ``seconds`` (``math.inf``: no limit)."""

    seconds: float


class TimedOut(Enum):
    """The endpoint did not send its first byte within ``first_byte_timeout`` of the client's
    first bytes: a NODE timeout, retried elsewhere with the client's bytes replayed."""

    NO_FIRST_BYTE = "no_first_byte"


EstablishStep = Commit | WaitFor | TimedOut


def establish_step(
    policy: TcpProxyPolicy,
    *,
    connected_at: float,
    first_sent_at: float | None,
    now: float,
) -> EstablishStep:
    """What the establishing phase does now, on an endpoint connected at ``connected_at``,
    the client's first bytes having reached it at ``first_sent_at`` (None: nothing yet)."""
    start = connected_at if first_sent_at is None else first_sent_at
    left = start + policy.first_byte_timeout - now
    if left > 0:
        return WaitFor(min(left, policy.first_byte_timeout))  # float sums may round above
    return Commit.SILENT if first_sent_at is None else TimedOut.NO_FIRST_BYTE


def replay_fits(policy: TcpProxyPolicy, buffered: int, more: int) -> bool:
    """Whether ``more`` client bytes still fit the replay buffer holding ``buffered``."""
    return buffered + more <= policy.replay_limit


def idle_left(policy: TcpProxyPolicy, last_activity: float, now: float) -> float:
    """Seconds until a committed connection idle since ``last_activity`` is closed (<= 0: now)."""
    if math.isinf(policy.idle_timeout):
        return math.inf
    return last_activity + policy.idle_timeout - now
