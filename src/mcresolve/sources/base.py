"""What every source publishes (:class:`Resolution`) and how it is consumed (:class:`Source`).

A source resolves a target in the background and publishes a new :class:`Resolution` whenever it
learns something: a new endpoint set, or a failure to refresh. Transient failures never raise into
the consumer: they are reported in the update (``error``), with the previous endpoints kept and
marked ``stale``. Consumers read :attr:`Source.current`, iterate :meth:`Source.updates`, or
register a synchronous listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from mcresolve.endpoint import Endpoint
from mcresolve.lifecycle import AsyncStartClose
from mcresolve.tasks import cancel_and_wait

__all__ = ["PublishingSource", "Resolution", "Source"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Resolution:
    """One published state of a source.

    * ``endpoints``: the set to use now (possibly a last known good one, see ``stale``).
    * ``source``: which source produced ``endpoints`` (its target string, or ``snapshot:<path>``).
    * ``datacenter``: the datacenter that answered (prepared-query failover shows it here), or
      ``None`` when unknown / mixed.
    * ``resolved_at``: wall-clock time (``time.time()``) when ``endpoints`` were obtained.
    * ``stale``: ``endpoints`` are a last known good set, not the answer to the latest attempt
      (it failed, or its empty answer is held as suspect).
    * ``error``: why the latest attempt did not give a usable answer, ``None`` if it did.
    * ``fallback``: ``endpoints`` come from the fallback target, not the primary.
    * ``suspect_empty``: the latest answer was empty right after a non-empty one and is held.
    """

    endpoints: tuple[Endpoint, ...]
    source: str
    datacenter: str | None = None
    resolved_at: float = 0.0
    stale: bool = False
    error: Exception | None = None
    fallback: bool = False
    suspect_empty: bool = False

    def age(self, now: float | None = None) -> float:
        """Seconds since ``endpoints`` were obtained (``now`` defaults to ``time.time()``)."""
        return max(0.0, (time.time() if now is None else now) - self.resolved_at)

    @property
    def ok(self) -> bool:
        """The latest attempt succeeded and its answer is in use."""
        return self.error is None and not self.stale

    def failed(self, error: Exception) -> Resolution:
        """This resolution kept as last known good after ``error``."""
        return replace(self, stale=True, error=error)

    @staticmethod
    def answered(
        endpoints: Sequence[Endpoint], source: str, datacenter: str | None = None
    ) -> Resolution:
        """A fresh successful answer, resolved now."""
        return Resolution(tuple(endpoints), source, datacenter, time.time())

    def __str__(self) -> str:
        flags = [f for f, on in (("stale", self.stale), ("fallback", self.fallback)) if on]
        where = f" from {self.datacenter}" if self.datacenter else ""
        error = f" error={self.error!r}" if self.error is not None else ""
        return (
            f"{len(self.endpoints)} endpoint(s){where} via {self.source}"
            f"{' [' + ','.join(flags) + ']' if flags else ''}{error}"
        )


Listener = Callable[[Resolution], None]


@runtime_checkable
class Source(Protocol):
    """Resolves one target in the background and publishes :class:`Resolution` updates.

    Use as ``async with source:`` (or ``await start()`` / ``await stop()``). ``current`` is
    ``None`` until the first publication; :meth:`wait_ready` awaits it.
    """

    @property
    def description(self) -> str:
        """The target this source resolves (canonical target string)."""
        ...

    @property
    def current(self) -> Resolution | None:
        """The latest published resolution, ``None`` before the first one."""
        ...

    async def start(self) -> None:
        """Begin resolving (idempotent)."""
        ...

    async def aclose(self) -> None:
        """Stop resolving and end every :meth:`updates` iterator (idempotent)."""
        ...

    async def stop(self) -> None:
        """Deprecated: the old name of :meth:`aclose`."""
        ...

    async def wait_ready(self) -> Resolution:
        """The first published resolution (at once if there is one). Bound it with
        ``asyncio.timeout()``."""
        ...

    def updates(self) -> AsyncIterator[Resolution]:
        """The current resolution (if any) then every later one, until the source stops.
        A slow consumer skips intermediate values and always sees the latest."""
        ...

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(resolution)`` on every publication; returns a function that removes
        it. Listeners run synchronously in the publishing task and must not block."""
        ...

    def refresh_now(self) -> None:
        """Ask for an immediate re-resolution (a hint: sources that are always current, such as
        blocking watches and static lists, ignore it)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class PublishingSource(AsyncStartClose):
    """Base class: lifecycle, one background task running :meth:`_run`, and fan-out of
    publications to iterators and listeners. Subclasses implement :meth:`_run` and call
    :meth:`_publish`."""

    def __init__(self, description: str) -> None:
        self._description = description
        self._current: Resolution | None = None
        self._version = 0
        self._changed = asyncio.Event()
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def description(self) -> str:
        return self._description

    @property
    def current(self) -> Resolution | None:
        return self._current

    @abstractmethod
    async def _run(self) -> None:
        """Resolve until cancelled, calling :meth:`_publish`; must not raise for transient
        errors (publish them instead)."""

    async def start(self) -> None:
        if self._task is None and not self._stopped:
            self._task = asyncio.create_task(self._guarded_run(), name=f"source {self}")

    async def aclose(self) -> None:
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        await self._on_stop()
        self._wake()

    async def _on_stop(self) -> None:
        """Hook for subclasses: release resources after the task ended."""
        return None

    async def _guarded_run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, not a transient error: make it visible, keep LKG
            _log.exception("source %s stopped on an unexpected error", self)
            self._publish_error(exc)

    def _publish(self, resolution: Resolution) -> None:
        """Make ``resolution`` current and notify every consumer."""
        if self._stopped:
            return
        self._current = resolution
        self._version += 1
        self._wake()
        for listener in list(self._listeners):
            try:
                listener(resolution)
            except Exception:
                _log.exception("listener of source %s failed", self)

    def _publish_error(self, error: Exception) -> None:
        """Publish ``error`` with the current endpoints kept as last known good."""
        current = self._current
        if current is None:
            self._publish(Resolution((), self._description, stale=True, error=error))
        else:
            self._publish(current.failed(error))

    def _wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait_ready(self) -> Resolution:
        while self._current is None:
            if self._stopped:
                raise RuntimeError(f"source {self} stopped before resolving")
            await self._changed.wait()
        return self._current

    async def updates(self) -> AsyncIterator[Resolution]:
        seen = 0
        while True:
            if self._version > seen and self._current is not None:
                seen = self._version
                yield self._current
                continue
            if self._stopped:
                return
            await self._changed.wait()

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def refresh_now(self) -> None:
        return None

    def __str__(self) -> str:
        return self._description

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._description}>"
