"""Pure decisions for composing sources: last known good, suspect empty answers, fallback.

No I/O and no clock of its own: every method takes ``now`` (a monotonic time in seconds) and
returns a :class:`Decision` that the I/O adapter (:mod:`mcresolve.sources.composite`) carries out.

The rules (the defaults come from :class:`mcresolve.sources.target.CommonOptions`):

1. A good answer from the primary becomes the last known good set (LKG) and is published. So
   does a *partial* one (some instances rejected, :attr:`Resolution.partial`), published with
   its error until a later answer has none.
2. A failed attempt (an error with ``stale=True``: the request failed, or its answer was
   rejected whole) keeps the LKG, published with ``stale=True``, the error and its age
   (``resolved_at`` is when it was obtained).
3. An **empty** good answer right after a non-empty set is *suspect*: the previous set stays
   (``stale=True, suspect_empty=True``) until the empty answer has been seen ``empty_confirm``
   times in a row or has lasted ``empty_hold`` seconds, whichever comes first. A Consul server
   restarted with a fresh state, an agent that lost its services for a moment, a DNS server
   answering NXDOMAIN while it starts: none of them should empty a pool. ``empty_hold=0``
   accepts empty answers at once.
4. The fallback is wanted while the primary fails and there is no usable LKG (none, or an
   empty one), or once the primary has failed for ``fallback_after`` seconds (when set).
   While wanted and non-empty, the fallback's endpoints are published (``fallback=True``,
   ``error`` = the primary's error). The first good answer from the primary ends it.
5. Every accepted non-empty primary answer is to be persisted (``Decision.snapshot``) so that
   a restart can warm-start from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mcresolve.arguments import check_int_range, check_seconds
from mcresolve.sources.base import Resolution
from mcresolve.sources.target import CommonOptions

__all__ = ["Arbiter", "ArbiterPolicy", "Decision"]


@dataclass(frozen=True, slots=True)
class ArbiterPolicy:
    """How suspicious to be of empty answers and when to use the fallback."""

    empty_hold: float = 10.0
    empty_confirm: int = 3
    fallback_after: float | None = None

    def __post_init__(self) -> None:
        check_seconds("ArbiterPolicy.empty_hold", self.empty_hold, zero=True)
        check_int_range("ArbiterPolicy.empty_confirm", self.empty_confirm, 1)
        check_seconds("ArbiterPolicy.fallback_after", self.fallback_after, zero=True, optional=True)

    @classmethod
    def from_options(cls, options: CommonOptions) -> ArbiterPolicy:
        """The policy a target's common options describe."""
        return cls(options.empty_hold, options.empty_confirm, options.fallback_after)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the adapter must do after an event.

    * ``publish``: the resolution to publish, ``None`` when nothing visible changed.
    * ``fallback_wanted``: whether the fallback source should be running.
    * ``wake_at``: call :meth:`Arbiter.tick` at this monotonic time (``None``: no timer needed).
    * ``snapshot``: a good set to persist, ``None`` when there is nothing new to persist.
    """

    publish: Resolution | None
    fallback_wanted: bool
    wake_at: float | None
    snapshot: Resolution | None = None


class Arbiter:
    """The state machine behind :class:`mcresolve.sources.composite.ResilientSource`."""

    def __init__(
        self, policy: ArbiterPolicy, description: str, *, warm: Resolution | None = None
    ) -> None:
        self._policy = policy
        self._description = description
        self._lkg: Resolution | None = (
            None if warm is None else replace(warm, stale=True, error=None)
        )
        self._failing_since: float | None = None
        self._error: Exception | None = None
        self._empty_since: float | None = None
        self._empty_count = 0
        self._fallback: Resolution | None = None
        self._published: Resolution | None = None
        self._fresh = False  # the LKG is the answer to the latest attempt

    @property
    def last_known_good(self) -> Resolution | None:
        """The last accepted answer (or the warm-start snapshot)."""
        return self._lkg

    def start(self, now: float) -> Decision:
        """The decision before any answer: publish the warm-start set if there is one."""
        return self._decide(now)

    def on_primary(self, resolution: Resolution, now: float) -> Decision:
        """The primary source published ``resolution``."""
        if resolution.error is not None and not resolution.partial:
            if self._failing_since is None:
                self._failing_since = now
            self._error = resolution.error
            return self._decide(now)
        self._failing_since = None
        self._error = resolution.error  # None, or the instances a partial answer left out
        previous = self._lkg
        if (
            not resolution.endpoints
            and previous is not None
            and previous.endpoints
            and self._policy.empty_hold > 0
        ):
            if self._empty_since is None:
                self._empty_since = now
                self._empty_count = 0
            self._empty_count += 1
            if not self._empty_confirmed(now):
                return self._decide(now)
        accepted = replace(resolution, stale=False, error=None, fallback=False, suspect_empty=False)
        self._accept(accepted)
        snapshot = (
            accepted
            if accepted.endpoints
            and (previous is None or previous.endpoints != accepted.endpoints or previous.stale)
            else None
        )
        return replace(self._decide(now), snapshot=snapshot)

    def on_fallback(self, resolution: Resolution, now: float) -> Decision:
        """The fallback source published ``resolution``."""
        self._fallback = resolution
        return self._decide(now)

    def fallback_stopped(self, now: float) -> Decision:
        """The adapter stopped the fallback source (its answers no longer count)."""
        self._fallback = None
        return self._decide(now)

    def tick(self, now: float) -> Decision:
        """Time passed (a ``wake_at`` deadline): confirm held empty answers, engage fallback."""
        if self._empty_since is not None and self._empty_confirmed(now):
            assert self._lkg is not None
            empty = replace(self._lkg, endpoints=(), stale=False, error=None, suspect_empty=False)
            self._accept(empty)
        return self._decide(now)

    # ---------------------------------------------------------------------------------------

    def _accept(self, resolution: Resolution) -> None:
        self._lkg = resolution
        self._fresh = True
        self._empty_since = None
        self._empty_count = 0

    def _empty_confirmed(self, now: float) -> bool:
        assert self._empty_since is not None
        return (
            self._empty_count >= self._policy.empty_confirm
            or now - self._empty_since >= self._policy.empty_hold
        )

    def _fallback_wanted(self, now: float) -> bool:
        if self._failing_since is None:
            return False
        if self._lkg is None or not self._lkg.endpoints:
            return True
        after = self._policy.fallback_after
        return after is not None and now - self._failing_since >= after

    def _wake_at(self, now: float, fallback_wanted: bool) -> float | None:
        deadlines = []
        if self._empty_since is not None:
            deadlines.append(self._empty_since + self._policy.empty_hold)
        after = self._policy.fallback_after
        if self._failing_since is not None and not fallback_wanted and after is not None:
            deadlines.append(self._failing_since + after)
        return min(deadlines) if deadlines else None

    def _decide(self, now: float) -> Decision:
        fallback_wanted = self._fallback_wanted(now)
        output = self._output(fallback_wanted)
        publish = None
        if output is not None and output != self._published:
            publish = self._published = output
        return Decision(publish, fallback_wanted, self._wake_at(now, fallback_wanted))

    def _output(self, fallback_wanted: bool) -> Resolution | None:
        fallback = self._fallback
        if fallback_wanted and fallback is not None and fallback.endpoints:
            return replace(fallback, fallback=True, error=self._error, suspect_empty=False)
        failing = self._failing_since is not None
        suspect = self._empty_since is not None
        if self._lkg is not None:
            return replace(
                self._lkg,
                stale=failing or suspect or not self._fresh,
                error=self._error,
                suspect_empty=suspect,
                fallback=False,
            )
        if failing:
            return Resolution((), self._description, stale=True, error=self._error)
        return None
