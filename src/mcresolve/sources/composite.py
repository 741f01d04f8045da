"""Composition of sources: last known good, warm start, suspect empty answers, fallback.

:class:`ResilientSource` wraps a primary source and carries out the decisions of the pure
:class:`~mcresolve.sources.arbiter.Arbiter`: it publishes what the arbiter says, persists good
sets to the snapshot file, starts the fallback source when it is wanted (and stops it when the
primary is good again), and wakes the arbiter at its deadlines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from mcresolve.arguments import check_instance, check_optional_instances, check_optional_str
from mcresolve.sources.arbiter import Arbiter, ArbiterPolicy, Decision
from mcresolve.sources.base import PublishingSource, Resolution, Source
from mcresolve.sources.snapshot import load_snapshot, save_snapshot
from mcresolve.tasks import cancel_and_wait

__all__ = ["ResilientSource"]

_log = logging.getLogger(__name__)


class ResilientSource(PublishingSource):
    """A primary source made resilient (see :mod:`mcresolve.sources.arbiter` for the rules).

    ``fallback`` is a factory for the fallback source, called when the fallback is first
    wanted (so a DNS fallback sends no query while Consul is fine). ``snapshot`` is the path of
    the last-known-good file. ``clock`` is a monotonic clock (default: the event loop's).
    ``cleanup`` coroutines run at :meth:`stop`, after the sources stopped (to close a Consul
    client or watch registry created for this source).
    """

    def __init__(
        self,
        primary: Source,
        *,
        policy: ArbiterPolicy | None = None,
        fallback: Callable[[], Source] | None = None,
        snapshot: str | None = None,
        clock: Callable[[], float] | None = None,
        cleanup: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        check_instance("primary", primary, (Source,), "a Source")
        check_optional_instances(("policy", policy, ArbiterPolicy))
        check_optional_str("snapshot", snapshot)
        super().__init__(primary.description)
        self._cleanup = tuple(cleanup)
        self._primary = primary
        self._policy = policy or ArbiterPolicy()
        self._fallback_factory = fallback
        self._snapshot_path = snapshot
        self._clock = clock
        self._arbiter: Arbiter | None = None
        self._fallback: Source | None = None
        self._remove_listeners: list[Callable[[], None]] = []
        self._remove_fallback_listener: Callable[[], None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._last_primary: Resolution | None = None

    @property
    def primary(self) -> Source:
        """The wrapped source."""
        return self._primary

    @property
    def fallback_source(self) -> Source | None:
        """The fallback source while it runs."""
        return self._fallback

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def start(self) -> None:
        if self._started or self._stopped:
            return
        self._started = True
        warm = None
        if self._snapshot_path is not None:
            warm = load_snapshot(self._snapshot_path, self.description)
        self._arbiter = Arbiter(self._policy, self.description, warm=warm)
        self._apply(self._arbiter.start(self._now()))
        self._remove_listeners.append(self._primary.add_listener(self._on_primary))
        await self._primary.start()
        current = self._primary.current
        if current is not None and current is not self._last_primary:
            self._on_primary(current)  # the primary was already running (shared)

    async def _run(self) -> None:  # pragma: no cover - driven by listeners, not a task
        return None

    async def _on_stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for remove in self._remove_listeners:
            remove()
        await self._primary.aclose()
        await self._stop_fallback()
        for task in list(self._tasks):
            await cancel_and_wait(task)
        for close in self._cleanup:
            try:
                await close()
            except Exception:
                _log.exception("source %s: cleanup failed", self)

    def refresh_now(self) -> None:
        self._primary.refresh_now()
        if self._fallback is not None:
            self._fallback.refresh_now()

    # --- events ------------------------------------------------------------------------------

    def _on_primary(self, resolution: Resolution) -> None:
        self._last_primary = resolution
        if self._arbiter is not None and not self._stopped:
            self._guarded(lambda arbiter: arbiter.on_primary(resolution, self._now()))

    def _on_fallback(self, resolution: Resolution) -> None:
        if self._arbiter is not None and not self._stopped and self._fallback is not None:
            self._guarded(lambda arbiter: arbiter.on_fallback(resolution, self._now()))

    def _on_timer(self) -> None:
        self._timer = None
        if self._arbiter is not None and not self._stopped:
            self._guarded(lambda arbiter: arbiter.tick(self._now()))

    def _guarded(self, event: Callable[[Arbiter], Decision]) -> None:
        """Decide on an event and carry the decision out; a failure (a bug) is published as the
        error with the last good set kept, never lost in a listener or a timer callback."""
        assert self._arbiter is not None
        try:
            self._apply(event(self._arbiter))
        except Exception as exc:
            _log.exception("source %s: cannot apply an event", self)
            self._publish_error(exc)

    def _apply(self, decision: Decision) -> None:
        if decision.snapshot is not None and self._snapshot_path is not None:
            try:
                save_snapshot(self._snapshot_path, decision.snapshot, self.description)
            except Exception as exc:  # a full disk, a bad path: the resolution goes on
                _log.warning("cannot write snapshot %s: %s", self._snapshot_path, exc)
        if decision.publish is not None:
            self._publish(decision.publish)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if decision.wake_at is not None:
            delay = max(0.0, decision.wake_at - self._now())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
        if decision.fallback_wanted and self._fallback is None:
            self._start_fallback()
        elif not decision.fallback_wanted and self._fallback is not None:
            _log.info("source %s: primary is back, fallback released", self)
            self._spawn(self._detach_fallback().aclose())
            if self._arbiter is not None:
                self._apply(self._arbiter.fallback_stopped(self._now()))

    # --- fallback ----------------------------------------------------------------------------

    def _start_fallback(self) -> None:
        if self._fallback_factory is None:
            return
        try:
            fallback = self._fallback_factory()
        except Exception:
            _log.exception("source %s: cannot build the fallback", self)
            return
        self._fallback = fallback
        _log.warning("source %s: fallback %s engaged", self, fallback.description)
        self._remove_fallback_listener = fallback.add_listener(self._on_fallback)
        self._spawn(self._run_fallback(fallback))

    async def _run_fallback(self, fallback: Source) -> None:
        try:
            await fallback.start()
        except Exception:
            _log.exception("source %s: fallback %s failed to start", self, fallback.description)
            return
        if fallback is self._fallback and fallback.current is not None:
            self._on_fallback(fallback.current)

    def _detach_fallback(self) -> Source:
        fallback, self._fallback = self._fallback, None
        assert fallback is not None
        if self._remove_fallback_listener is not None:
            self._remove_fallback_listener()
            self._remove_fallback_listener = None
        return fallback

    async def _stop_fallback(self) -> None:
        if self._fallback is not None:
            await self._detach_fallback().aclose()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` in a task that :meth:`stop` cancels and awaits."""
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
