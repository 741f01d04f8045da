"""One shutdown verb for every long-running object: ``await obj.aclose()``, and ``async with``.

``aclose()`` is the standard name of an asynchronous release (async generators,
:func:`contextlib.aclosing`, ``httpx.AsyncClient``), so mcresolve's objects use it alone:

* :class:`AsyncStartClose` for objects that are started and closed (sources, registration, the
  test harnesses): ``async with obj`` awaits ``obj.start()`` on entry and ``obj.aclose()`` on
  exit.
* :class:`AsyncClosing` for objects that exist open and only need closing (the Consul client,
  watch subscriptions, registries, event streams, HTTP sessions): ``async with obj`` awaits
  ``obj.aclose()`` on exit.

In both cases the ``async with`` target is the object itself, and the exit step runs also when the
body raises (the exception propagates: ``__aexit__`` never suppresses it). ``aclose()`` is
idempotent on every object that has it.

The verbs used before (``stop()`` on started objects, ``close()`` on asynchronous ones) remain as
deprecated aliases: :func:`deprecated_verb` warns once per class and calls ``aclose()``.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["AsyncClosing", "AsyncStartClose", "AsyncStartStop", "deprecated_verb"]

_warned: set[tuple[type, str]] = set()


def deprecated_verb(obj: object, verb: str) -> None:
    """Warn (once per class and verb) that ``obj.<verb>()`` is the old name of ``aclose()``."""
    key = (type(obj), verb)
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(
        f"{type(obj).__name__}.{verb}() is deprecated: use 'await {type(obj).__name__}.aclose()'",
        DeprecationWarning,
        stacklevel=3,
    )


class AsyncClosing(ABC):
    """Mixin: ``async with obj`` binds ``obj`` as it is and awaits ``obj.aclose()`` on exit."""

    __slots__ = ()

    @abstractmethod
    async def aclose(self) -> None:
        """Close (idempotent); called on leaving ``async with``, also when its body raised."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class AsyncStartClose(ABC):
    """Mixin: ``async with obj`` = ``await obj.start()`` … ``await obj.aclose()``.

    Subclasses implement :meth:`start` and :meth:`aclose`. ``stop()`` is the deprecated name of
    ``aclose()``; a subclass written before the rename that still implements ``stop()`` instead
    is closed through it.
    """

    __slots__ = ()

    @abstractmethod
    async def start(self) -> object:
        """Start (what it returns is ignored by ``async with``, which binds the object itself)."""

    async def aclose(self) -> None:
        """Stop and release (idempotent); called on leaving ``async with``, also when its body
        raised."""
        if type(self).stop is AsyncStartClose.stop:
            raise NotImplementedError(f"{type(self).__name__} must implement aclose()")
        await self.stop()

    async def stop(self) -> None:
        """Deprecated: the old name of :meth:`aclose`."""
        deprecated_verb(self, "stop")
        await self.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


#: The former name of :class:`AsyncStartClose` (its subclasses implemented ``stop()``).
AsyncStartStop = AsyncStartClose
