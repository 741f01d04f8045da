"""``async with`` for the long-running parts: one definition of the enter/exit boilerplate.

* :class:`AsyncStartStop` for objects that are started and stopped (sources, registration, the
  test harnesses): ``async with obj`` awaits ``obj.start()`` on entry and ``obj.stop()`` on exit.
* :class:`AsyncClosing` for objects that exist open and only need closing (watch subscriptions,
  registries, event streams): ``async with obj`` awaits ``obj.aclose()`` on exit.

In both cases the ``async with`` target is the object itself, and the exit step runs also when the
body raises (the exception propagates: ``__aexit__`` never suppresses it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["AsyncClosing", "AsyncStartStop"]


class AsyncStartStop(ABC):
    """Mixin: ``async with obj`` = ``await obj.start()`` … ``await obj.stop()``."""

    __slots__ = ()

    @abstractmethod
    async def start(self) -> object:
        """Start (what it returns is ignored by ``async with``, which binds the object itself)."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop; called on leaving ``async with``, also when its body raised."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class AsyncClosing(ABC):
    """Mixin: ``async with obj`` binds ``obj`` as it is and awaits ``obj.aclose()`` on exit."""

    __slots__ = ()

    @abstractmethod
    async def aclose(self) -> None:
        """Close; called on leaving ``async with``, also when its body raised."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
