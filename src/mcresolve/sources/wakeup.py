"""What wakes a re-resolving source: its period, a change signal, or a damped ``refresh_now()``.

The I/O side of :mod:`mcresolve.sources.refresh`: a :class:`RefreshTrigger` is awaited by a
source's loop between two resolutions and says why it woke (:class:`Wake`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum

from mcresolve.sources.refresh import RefreshDamper

__all__ = ["RefreshTrigger", "Wake"]


class Wake(enum.Enum):
    """Why a source's loop re-resolves."""

    #: The periodic delay ran out (a pending ``refresh_now()`` is served by this resolution).
    PERIODIC = "periodic"
    #: A change signal (e.g. a health-watch event): re-resolve at once, never damped.
    SIGNAL = "signal"
    #: ``refresh_now()``, released by the damper.
    FORCED = "forced"


class RefreshTrigger:
    """Collects wake-up requests for one source and releases them by the damping rule.

    :meth:`signal` wakes the loop at once; :meth:`request` (what ``refresh_now()`` calls) wakes
    it when the damper's :attr:`~RefreshDamper.ready_at` is reached; requests arriving in
    between are coalesced. The damper's clock is the running loop's ``time()``.
    """

    def __init__(self, damper: RefreshDamper) -> None:
        self.damper = damper
        self._signalled = False
        self._requested = False
        self._event = asyncio.Event()

    def signal(self) -> None:
        """Re-resolve at once."""
        self._signalled = True
        self._event.set()

    def request(self) -> None:
        """Re-resolve as soon as the damping rule allows."""
        self._requested = True
        self._event.set()

    def observe(self, outcome: object, *, forced: bool) -> bool:
        """Record the outcome of a resolution just made (see :meth:`RefreshDamper.observe`)."""
        return self.damper.observe(outcome, asyncio.get_running_loop().time(), forced=forced)

    async def wait(self, delay: float) -> Wake:
        """Wait until the next resolution is due: ``delay`` seconds from now at the latest."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while True:
            self._event.clear()
            now = loop.time()
            if self._signalled:
                self._signalled = self._requested = False
                return Wake.SIGNAL
            until = deadline
            if self._requested:
                ready = self.damper.ready_at
                if ready <= now:
                    self._requested = False
                    return Wake.FORCED
                until = min(until, ready)
            if now >= deadline:
                self._requested = False
                return Wake.PERIODIC
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(until - now):
                    await self._event.wait()
