"""Immutable pickers: choose the endpoint for one attempt.

A picker is a value built once from a snapshot of endpoints whenever the set or an endpoint's
usability changes (grpc-go ``balancer/base`` regenerates its picker the same way); :meth:`pick`
takes no lock and costs O(1) on the normal path. Live load (in-flight counts, latency EWMA) is read
through the :class:`~mcresolve.balancer.ewma.EndpointLoad` objects the pool owns, so load changes
do not require a rebuild.

Rules:

* **Candidates.** ``usable`` endpoints (Consul-healthy and not ejected, as decided by the pool).
  **Panic mode**: when fewer than ``panic_threshold`` of all endpoints are usable (Envoy's healthy
  panic threshold, default 50 %), the picker picks among *all* given endpoints instead, because
  spreading load over possibly-bad endpoints beats concentrating it on the few that are left (or on
  none). ``panic_threshold=0`` disables panic mode.
* **Avoided endpoints** (``avoid``: usable, but they answered for the whole cluster a moment
  ago, :mod:`mcresolve.balancer.outlier` rule 7) are left out of the candidates while another usable
  endpoint exists, like Envoy's *degraded* hosts; they count as usable for the panic threshold.
* **Reserve.** The endpoints of the pool that are not candidates (ejected, avoided, or in a
  datacenter that is not active), least recently failed first: a call that has tried every
  candidate probes them in that order before it backs off (:mod:`mcresolve.pool.planner`), so a
  small pool never fails a call while an endpoint it left out could serve it.
* **Exclusion.** ``pick(exclude=keys)`` never returns an excluded endpoint while a candidate
  outside ``exclude`` exists (a retry goes to a *different* endpoint). It draws as usual and
  rejects excluded draws (O(1) expected) while ``exclude`` is at most half the candidates, and
  filters the candidates (O(n)) otherwise. When every candidate is
  excluded it picks among all candidates (``fallback=True``, the default) or raises
  :class:`NoEndpointAvailable` (``fallback=False``: the caller then knows every endpoint has been
  tried and backs off).
* **Strategies.** ``ROUND_ROBIN`` (rotation starting at a random offset so that many clients do
  not march in step), ``RANDOM`` (uniform), ``P2C`` (default: two distinct random candidates, the
  one with the lower :meth:`EndpointLoad.cost` wins; Mitzenmacher's power of two choices as used
  by Finagle's and linkerd's P2C peak-EWMA balancers).
"""

from __future__ import annotations

import enum
import itertools
import operator
import random
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from itertools import compress

from mcresolve.balancer.ewma import EndpointLoad
from mcresolve.endpoint import Endpoint, Key
from mcresolve.errors import NoEndpointAvailable as NoEndpointAvailable  # re-exported

DEFAULT_PANIC_THRESHOLD = 0.5
"""Envoy's default healthy panic threshold (50 %)."""

REJECTION_TRIES = 3
"""Draws :meth:`Picker.pick` makes before filtering when the exclusion set is at most half the
candidates: each draw is excluded with probability <= 1/2, so three fail together <= 1/8."""


class PickStrategy(enum.Enum):
    """How a picker chooses among its candidates."""

    ROUND_ROBIN = "round_robin"
    RANDOM = "random"
    P2C = "p2c"


class Picker:
    """Base of all pickers: the candidate snapshot and the exclusion rule. Immutable."""

    __slots__ = (
        "_keys",
        "_reserve_keys",
        "endpoints",
        "panic",
        "reserve",
        "rng",
        "total",
    )

    def __init__(
        self,
        candidates: Sequence[Endpoint],
        *,
        panic: bool,
        total: int,
        rng: random.Random,
        reserve: Sequence[Endpoint] = (),
        keys: frozenset[Key] | None = None,
    ) -> None:
        self.endpoints: tuple[Endpoint, ...] = tuple(candidates)
        """The endpoints this picker chooses among, in the given order."""
        self.panic = panic
        """True when built in panic mode (candidates include unusable endpoints)."""
        self.total = total
        """How many endpoints the snapshot had in all (usable or not)."""
        self.rng = rng
        # ``keys``: the candidates' keys when the builder has them already (the same set).
        self._keys = keys if keys is not None else frozenset(map(_KEY, self.endpoints))
        outside = map(operator.not_, map(self._keys.__contains__, map(_KEY, reserve)))
        self.reserve: tuple[Endpoint, ...] = tuple(compress(reserve, outside))
        """Endpoints that are not candidates, least recently failed first (probed in this
        order by a call that has tried every candidate)."""
        self._reserve_keys = tuple(map(_KEY, self.reserve))

    @property
    def reserve_keys(self) -> tuple[Key, ...]:
        """The reserve's keys, in probe order."""
        return self._reserve_keys

    def reserved(self, key: Key) -> Endpoint | None:
        """The reserve endpoint with ``key`` (None when it is not in the reserve)."""
        return next((e for e in self.reserve if e.key == key), None)

    @property
    def keys(self) -> frozenset[Key]:
        """The candidates' keys: ``tried >= picker.keys`` means every candidate has been tried."""
        return self._keys

    def __len__(self) -> int:
        return len(self.endpoints)

    def pick(self, exclude: Collection[Key] = frozenset(), *, fallback: bool = True) -> Endpoint:
        """Choose an endpoint not in ``exclude`` (see the module rules for when all are).

        With an exclusion set covering at most half the candidates, the normal draw is made
        and an excluded result rejected (up to :data:`REJECTION_TRIES` draws): O(1) expected,
        where filtering the candidates costs O(n) (about 10 µs with 100 endpoints). Only a
        larger exclusion set, or unlucky draws, filter."""
        endpoints = self.endpoints
        if not endpoints:
            raise NoEndpointAvailable("no endpoint to pick from")
        if not exclude:
            return self._choose()
        if len(exclude) * 2 <= len(endpoints):
            for _ in range(REJECTION_TRIES):
                endpoint = self._choose()
                if endpoint.key not in exclude:
                    return endpoint
        if not self._keys.isdisjoint(exclude):
            allowed = [e for e in endpoints if e.key not in exclude]
            if allowed:
                return self._choose_among(allowed)
            if not fallback:
                raise NoEndpointAvailable(
                    f"all {len(self.endpoints)} endpoint(s) already tried or excluded"
                )
        return self._choose()

    def _choose(self) -> Endpoint:
        return self._choose_among(self.endpoints)

    def _choose_among(self, allowed: Sequence[Endpoint]) -> Endpoint:
        return allowed[self.rng.randrange(len(allowed))]

    def __repr__(self) -> str:
        mode = ", panic" if self.panic else ""
        return f"<{type(self).__name__} {len(self.endpoints)}/{self.total}{mode}>"


class RandomPicker(Picker):
    """Uniformly random choice."""

    __slots__ = ()


class RoundRobinPicker(Picker):
    """Rotation over the candidates, starting at a random offset."""

    __slots__ = ("_counter",)

    def __init__(
        self,
        candidates: Sequence[Endpoint],
        *,
        panic: bool,
        total: int,
        rng: random.Random,
        reserve: Sequence[Endpoint] = (),
        keys: frozenset[Key] | None = None,
    ) -> None:
        super().__init__(candidates, panic=panic, total=total, rng=rng, reserve=reserve, keys=keys)
        start = rng.randrange(len(self.endpoints)) if self.endpoints else 0
        # next() on itertools.count is atomic under the GIL: no lock needed.
        self._counter = itertools.count(start)

    def _choose(self) -> Endpoint:
        return self.endpoints[next(self._counter) % len(self.endpoints)]

    def _choose_among(self, allowed: Sequence[Endpoint]) -> Endpoint:
        return allowed[next(self._counter) % len(allowed)]


class P2CPicker(Picker):
    """Power of two choices on :meth:`EndpointLoad.cost` (in-flight × peak-EWMA latency).

    Endpoints without a load entry count as idle with no latency history (cost 0), so they are
    preferred until the pool starts tracking them.
    """

    __slots__ = ("_clock", "_load_of", "_loads")

    def __init__(
        self,
        candidates: Sequence[Endpoint],
        *,
        panic: bool,
        total: int,
        rng: random.Random,
        loads: Mapping[Key, EndpointLoad],
        clock: Callable[[], float],
        reserve: Sequence[Endpoint] = (),
        keys: frozenset[Key] | None = None,
    ) -> None:
        super().__init__(candidates, panic=panic, total=total, rng=rng, reserve=reserve, keys=keys)
        self._loads = tuple(map(loads.get, map(_KEY, self.endpoints)))
        self._load_of: dict[Key, EndpointLoad | None] | None = None  # made when first needed
        self._clock = clock

    def _choose(self) -> Endpoint:
        n = len(self.endpoints)
        if n == 1:
            return self.endpoints[0]
        i = self.rng.randrange(n)
        j = self.rng.randrange(n - 1)
        if j >= i:
            j += 1
        now = self._clock()
        return self.endpoints[j if self._cost(j, now) < self._cost(i, now) else i]

    def _cost(self, index: int, now: float) -> float:
        load = self._loads[index]
        return 0.0 if load is None else load.cost(now)

    def _choose_among(self, allowed: Sequence[Endpoint]) -> Endpoint:
        if len(allowed) == 1:
            return allowed[0]
        first, second = self.rng.sample(range(len(allowed)), 2)
        now = self._clock()
        a, b = allowed[first], allowed[second]
        load_of = self._load_of
        if load_of is None:  # two threads may both make it: the same value
            load_of = self._load_of = dict(zip(map(_KEY, self.endpoints), self._loads, strict=True))
        load_a, load_b = load_of.get(a.key), load_of.get(b.key)
        cost_a = 0.0 if load_a is None else load_a.cost(now)
        cost_b = 0.0 if load_b is None else load_b.cost(now)
        return b if cost_b < cost_a else a


_KEY = operator.attrgetter("key")


def first_by_key(endpoints: Iterable[Endpoint]) -> dict[Key, Endpoint]:
    """``endpoints`` by :attr:`~mcresolve.endpoint.Endpoint.key`, in order, the first occurrence
    of a key winning (one pass in C when no key repeats, as in every answer of a healthy
    registry)."""
    items = endpoints if isinstance(endpoints, tuple | list) else tuple(endpoints)
    unique = dict(zip(map(_KEY, items), items, strict=True))
    if len(unique) != len(items):  # a repeated key: the later value replaced the first
        unique = {}
        for endpoint in items:
            unique.setdefault(endpoint.key, endpoint)
    return unique


def build_picker(
    endpoints: Sequence[Endpoint],
    usable: Collection[Key] | None = None,
    *,
    strategy: PickStrategy = PickStrategy.P2C,
    loads: Mapping[Key, EndpointLoad] | None = None,
    panic_threshold: float = DEFAULT_PANIC_THRESHOLD,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
    avoid: Collection[Key] = (),
    probe_order: Sequence[Endpoint] = (),
) -> Picker:
    """Build the picker for one snapshot.

    ``endpoints`` are all endpoints of the snapshot; ``usable`` the keys among them that may take
    traffic (None: all). ``avoid``: usable keys to leave out while another usable endpoint
    exists. ``probe_order``: every endpoint of the pool, least recently failed first; those that
    end up outside the candidates form :attr:`Picker.reserve` (default: the snapshot's
    endpoints that are not candidates, in their order). ``loads`` feeds P2C (ignored by the other
    strategies). ``clock`` is read once per P2C pick to decay latency estimates. Duplicate keys
    keep their first occurrence.
    """
    if not 0.0 <= panic_threshold <= 1.0:
        raise ValueError("panic_threshold must be in [0, 1]")
    unique = first_by_key(endpoints)
    everything = list(unique.values())
    keys = None  # the candidates' keys, when known without a pass: ``usable`` itself
    if usable is None:
        healthy = everything
    else:
        usable_keys = usable if isinstance(usable, frozenset | set) else frozenset(usable)
        if unique.keys() <= usable_keys:
            healthy = everything
            if len(usable_keys) == len(everything) and isinstance(usable_keys, frozenset):
                keys = usable_keys
        else:
            healthy = list(compress(everything, map(usable_keys.__contains__, unique)))
    total = len(everything)
    panic = total > 0 and len(healthy) < panic_threshold * total
    if panic:
        candidates = everything
    else:
        avoided = frozenset(avoid)
        preferred = healthy
        if avoided:
            keep = map(operator.not_, map(avoided.__contains__, map(_KEY, healthy)))
            preferred = list(compress(healthy, keep))
        candidates = preferred or healthy
    reserve = probe_order if probe_order else everything
    rng = rng if rng is not None else random.Random()
    if candidates is not everything:
        keys = None
    if strategy is PickStrategy.ROUND_ROBIN:
        return RoundRobinPicker(
            candidates, panic=panic, total=total, rng=rng, reserve=reserve, keys=keys
        )
    if strategy is PickStrategy.RANDOM:
        return RandomPicker(
            candidates, panic=panic, total=total, rng=rng, reserve=reserve, keys=keys
        )
    return P2CPicker(
        candidates,
        panic=panic,
        total=total,
        rng=rng,
        loads=loads or {},
        clock=clock,
        reserve=reserve,
        keys=keys,
    )
