"""Datacenter priority: stay in the local datacenter, fail over to others, fail back with a
hold-down.

A small pure state machine: :func:`step` takes the current :class:`LocalityState`, the set of
datacenters that currently have at least one usable endpoint, and ``now`` (float seconds,
monotonic), and returns the next state. The pool calls it whenever usability changes and at
:func:`failback_due` (a timer), then builds its picker from the endpoints of ``state.active``.

Rules:

1. While the active datacenter is the local one, it stays active as long as it has a usable
   endpoint.
2. When the local datacenter has none, the most preferred *other* datacenter with a usable
   endpoint becomes active: ``policy.preference`` order first (e.g. Consul's ``NearestN`` / RTT
   order, or the prepared query's ``Datacenters`` list), then any other in name order. When no
   datacenter has a usable endpoint, nothing changes (the pool's panic handling takes over).
3. While a remote datacenter is active, the local one must be usable *continuously* for
   ``failback_hold_down`` seconds before traffic fails back (a flapping local datacenter would
   otherwise bounce traffic between datacenters). Any moment without a usable local endpoint
   restarts the hold-down.
4. If the active remote datacenter itself loses its last usable endpoint, traffic moves at once:
   to the local datacenter if it is usable (even before the hold-down ends: it is still the
   preferred choice and the alternative is another remote), otherwise to the next usable remote
   by rule 2. A more preferred remote becoming usable again does not by itself cause a move.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import compress

from mcresolve.endpoint import Endpoint

_DATACENTER = operator.attrgetter("datacenter")

DEFAULT_FAILBACK_HOLD_DOWN = 30.0
"""Seconds the local datacenter must stay usable before failing back: three periods of Consul's
customary 10 s check interval, i.e. a time-based HAProxy ``rise 3`` (HAProxy's own ``rise 2``
at 2 s is tuned for a proxy's active checks, not for Consul's slower ones)."""


@dataclass(frozen=True, slots=True)
class LocalityPolicy:
    """Which datacenter is local, which others are preferred, and the fail-back hold-down."""

    local: str
    """The local datacenter's name (Consul's ``Datacenter`` of the local agent)."""
    preference: tuple[str, ...] = ()
    """Other datacenters, most preferred first (e.g. in RTT order)."""
    failback_hold_down: float = DEFAULT_FAILBACK_HOLD_DOWN
    """Seconds the local datacenter must be usable without interruption before failing back."""

    def __post_init__(self) -> None:
        if self.failback_hold_down < 0:
            raise ValueError("LocalityPolicy.failback_hold_down must be >= 0")

    def remote_order(self, usable: Collection[str]) -> list[str]:
        """Usable remote datacenters, most preferred first (preference list, then by name)."""
        ranked = [dc for dc in self.preference if dc in usable and dc != self.local]
        rest = sorted(dc for dc in usable if dc != self.local and dc not in ranked)
        return ranked + rest


@dataclass(frozen=True, slots=True)
class LocalityState:
    """Where traffic goes now, and since when the local datacenter has been usable again."""

    active: str
    """The datacenter whose endpoints the picker uses."""
    local_usable_since: float | None = None
    """While a remote is active: since when the local datacenter has been usable without
    interruption (None: it is not usable)."""
    since: float | None = None
    """When ``active`` was last changed (None: never changed since the initial state)."""


def datacenter_of(endpoint: Endpoint, policy: LocalityPolicy) -> str:
    """The endpoint's datacenter; endpoints without one (static lists, plain DNS) count as
    local."""
    return endpoint.datacenter or policy.local


def datacenter_counts(endpoints: Iterable[Endpoint]) -> Counter[str]:
    """Endpoints per datacenter as given (``""``: none given); what a caller that keeps its
    endpoint set can count once and pass to :func:`usable_in` and :func:`in_datacenter`."""
    return Counter(map(_DATACENTER, endpoints))


def usable_in(counts: Mapping[str, int], policy: LocalityPolicy) -> frozenset[str]:
    """Datacenters with at least one endpoint in ``counts`` (:func:`datacenter_counts` of the
    usable endpoints): the input of :func:`step`."""
    return frozenset(dc or policy.local for dc, n in counts.items() if n > 0)


def usable_datacenters(
    endpoints: Iterable[Endpoint], usable: Collection[tuple[str, int]], policy: LocalityPolicy
) -> frozenset[str]:
    """Datacenters with at least one endpoint whose key is in ``usable``: the input of
    :func:`step`."""
    return usable_in(datacenter_counts(e for e in endpoints if e.key in usable), policy)


def in_datacenter(
    endpoints: Sequence[Endpoint],
    datacenter: str,
    policy: LocalityPolicy,
    counts: Mapping[str, int] | None = None,
) -> Sequence[Endpoint]:
    """The endpoints of ``datacenter`` (in the given order): what the picker is built from.
    With ``counts`` (:func:`datacenter_counts` of ``endpoints``) the two common cases cost no
    pass: every endpoint in ``datacenter`` gives ``endpoints`` itself, none gives ``()``."""
    names = {datacenter, ""} if datacenter == policy.local else {datacenter}
    if counts is not None:
        if names.issuperset(counts):
            return endpoints
        if names.isdisjoint(counts):
            return ()
    return list(compress(endpoints, map(names.__contains__, map(_DATACENTER, endpoints))))


def initial_state(policy: LocalityPolicy) -> LocalityState:
    """Start in the local datacenter."""
    return LocalityState(active=policy.local)


def is_failed_over(state: LocalityState, policy: LocalityPolicy) -> bool:
    """True while a datacenter other than the local one is active."""
    return state.active != policy.local


def step(
    state: LocalityState, usable: Collection[str], now: float, policy: LocalityPolicy
) -> LocalityState:
    """The next state given the datacenters with a usable endpoint at ``now``."""
    local_usable = policy.local in usable
    if state.active == policy.local:
        if local_usable:
            return state
        remotes = policy.remote_order(usable)
        if not remotes:
            return state
        return LocalityState(active=remotes[0], local_usable_since=None, since=now)

    # A remote datacenter is active.
    if not local_usable:
        if state.active in usable:
            if state.local_usable_since is None:
                return state
            return replace(state, local_usable_since=None)
        remotes = policy.remote_order(usable)
        if not remotes:
            return replace(state, local_usable_since=None)
        return LocalityState(active=remotes[0], local_usable_since=None, since=now)

    usable_since = state.local_usable_since if state.local_usable_since is not None else now
    held_long_enough = now - usable_since >= policy.failback_hold_down
    if held_long_enough or state.active not in usable:
        return LocalityState(active=policy.local, local_usable_since=None, since=now)
    if state.local_usable_since is None:
        return replace(state, local_usable_since=usable_since)
    return state


def failback_due(state: LocalityState, policy: LocalityPolicy) -> float | None:
    """When a fail-back becomes due if the local datacenter stays usable (None: not pending).
    The pool should call :func:`step` again at that time."""
    if state.active == policy.local or state.local_usable_since is None:
        return None
    return state.local_usable_since + policy.failback_hold_down
