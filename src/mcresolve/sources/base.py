"""What every source publishes (:class:`Resolution`) and how it is consumed (:class:`Source`).

A source resolves a target in the background and publishes a new :class:`Resolution` whenever it
learns something: a new endpoint set, or a failure to refresh. Transient failures never raise into
the consumer: they are reported in the update (``error``), with the previous endpoints kept and
marked ``stale``. Consumers read :attr:`Source.current`, iterate :meth:`Source.updates`, or
register a synchronous listener.

No answer stops a source. Every answer is converted into endpoints by a pure, total function
(:class:`~mcresolve.endpoint.Converted`); what it rejects is published as
:class:`AnswerRejected`:

* some instances rejected: the others are published as the current set (``stale=False``) with
  the error naming the rejected ones (:attr:`Resolution.partial`);
* every instance rejected, or the answer itself malformed: the attempt failed; the last good set
  is kept (``stale=True``) with the error.

A following good answer clears the error by itself. And should a source's loop ever end on an
unexpected exception (a bug), :class:`PublishingSource` publishes it (``stale``) and restarts the
loop after a backoff (:data:`RESTART_BACKOFF`), logging the traceback once per episode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from mcresolve.endpoint import Converted, Endpoint, Rejected
from mcresolve.errors import McResolveError
from mcresolve.lifecycle import AsyncStartClose
from mcresolve.tasks import cancel_and_wait
from mcresolve.timing import Backoff, BackoffPolicy

__all__ = ["RESTART_BACKOFF", "AnswerRejected", "PublishingSource", "Resolution", "Source"]

_log = logging.getLogger(__name__)

#: How soon a source whose loop ended on an unexpected exception runs it again: 1 s doubling to
#: 30 s, full jitter. gRPC's connection backoff starts at the same 1 s (and Erlang/OTP
#: supervisors restart a crashed worker at once); the 30 s cap is gRPC's DNS re-resolution
#: interval, so a source that keeps crashing still looks at its target twice a minute.
RESTART_BACKOFF = BackoffPolicy(base=1.0, multiplier=2.0, cap=30.0)


class AnswerRejected(McResolveError):
    """An answer held instances (or nothing but instances) that cannot be endpoints.

    Attributes:
        source: the target of the source that got the answer.
        agent: who answered (a Consul agent's URL, a DNS server's ``address:port``), ``""``
            when unknown.
        rejected: the instances left out and why.
        whole: every instance was rejected, so the answer was not used at all.
    """

    def __init__(
        self, source: str, agent: str, rejected: Sequence[Rejected], *, whole: bool
    ) -> None:
        self.source = source
        self.agent = agent
        self.rejected: tuple[Rejected, ...] = tuple(rejected)
        self.whole = whole
        converted = Converted((), self.rejected)
        scope = "every instance" if whole else f"{len(self.rejected)} instance(s)"
        by = f" from {agent}" if agent else ""
        super().__init__(
            f"{source}: answer{by} rejected ({scope} unusable): {converted.describe()}"
        )


@dataclass(frozen=True, slots=True)
class Resolution:
    """One published state of a source.

    * ``endpoints``: the set to use now (possibly a last known good one, see ``stale``).
    * ``source``: which source produced ``endpoints`` (its target string, or ``snapshot:<path>``).
    * ``datacenter``: the datacenter that answered (prepared-query failover shows it here), or
      ``None`` when unknown / mixed.
    * ``resolved_at``: wall-clock time (``time.time()``) when ``endpoints`` were obtained.
    * ``stale``: ``endpoints`` are a last known good set, not the answer to the latest attempt
      (it failed, was rejected whole, or its empty answer is held as suspect).
    * ``error``: why the latest attempt did not give a (fully) usable answer, ``None`` if it
      did. With ``stale`` false it is an :class:`AnswerRejected` for the instances left out of
      an answer that is otherwise in use (:attr:`partial`).
    * ``fallback``: ``endpoints`` come from the fallback target, not the primary.
    * ``suspect_empty``: the latest answer was empty right after a non-empty one and is held.
    * ``preference``: other datacenters in the order the source would fail over to them, most
      preferred first, when it knows it (a standby source learns it from the prepared query);
      the pool uses it unless its policy names its own order.
    """

    endpoints: tuple[Endpoint, ...]
    source: str
    datacenter: str | None = None
    resolved_at: float = 0.0
    stale: bool = False
    error: Exception | None = None
    fallback: bool = False
    suspect_empty: bool = False
    preference: tuple[str, ...] = ()

    def age(self, now: float | None = None) -> float:
        """Seconds since ``endpoints`` were obtained (``now`` defaults to ``time.time()``)."""
        return max(0.0, (time.time() if now is None else now) - self.resolved_at)

    @property
    def ok(self) -> bool:
        """The latest attempt succeeded and its whole answer is in use."""
        return self.error is None and not self.stale

    @property
    def partial(self) -> bool:
        """The latest answer is in use without some of its instances (``error`` says which)."""
        return self.error is not None and not self.stale

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
        self._rejected: tuple[Rejected, ...] = ()
        #: Times the loop was restarted after an unexpected exception (observability, tests).
        self.restarts = 0

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

    def _restart_backoff(self) -> Backoff:
        """The restart state of the loop (a hook: tests shorten the policy)."""
        return Backoff(RESTART_BACKOFF, random.random)

    async def _guarded_run(self) -> None:
        """Run :meth:`_run`; if it raises (a bug: transient errors are published, not raised),
        publish the error (the last good set kept, ``stale``) and run it again after a backoff.
        The traceback is logged at the first crash after a good publication, later crashes of
        the same episode at DEBUG. A :meth:`_run` that returns has nothing more to do."""
        backoff = self._restart_backoff()
        while not self._stopped:
            version = self._version
            try:
                await self._run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug, not a transient error: make it visible, keep LKG
                error = exc
            current = self._current
            if self._version != version and current is not None and current.error is None:
                backoff.success()  # it worked for a while: a new episode
            retry_in = backoff.failure()
            if backoff.failures == 1:
                _log.error(
                    "source %s: its loop ended on an unexpected error; restarting in %.2f s",
                    self,
                    retry_in,
                    exc_info=error,
                )
            else:
                _log.debug(
                    "source %s: loop ended again (%r), restart in %.2f s", self, error, retry_in
                )
            self._publish_error(error)
            await asyncio.sleep(retry_in)
            self.restarts += 1

    def _publish_converted(
        self, converted: Converted, datacenter: str | None, agent: str, *, log: bool = True
    ) -> Resolution | None:
        """Publish an answer's conversion (see the module doc): the endpoints, the endpoints with
        an :class:`AnswerRejected` for a partly rejected answer, or the error with the last good
        set kept for an answer rejected whole. Rejections are logged (``log``) at WARNING when
        they differ from the previous answer's, else at DEBUG. Returns what was published."""
        rejected = converted.rejected
        if log and rejected:
            _log.log(
                logging.DEBUG if set(rejected) == set(self._rejected) else logging.WARNING,
                "source %s: %s answered %d instance(s) that cannot be used%s: %s",
                self,
                agent or "the server",
                len(rejected),
                " (all of them: the last good set is kept)" if converted.rejected_whole else "",
                converted.describe(),
            )
        self._rejected = rejected
        if not rejected:
            resolution = Resolution.answered(converted.endpoints, self._description, datacenter)
            self._publish(resolution)
            return resolution
        error = AnswerRejected(self._description, agent, rejected, whole=converted.rejected_whole)
        if converted.rejected_whole:
            self._publish_error(error)
            return self._current
        resolution = replace(
            Resolution.answered(converted.endpoints, self._description, datacenter), error=error
        )
        self._publish(resolution)
        return resolution

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
