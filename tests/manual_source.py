"""A source the test drives, and endpoint builders: shared by the pool and source tests.

Imported as a top-level module (``from manual_source import ...``): pytest puts ``tests/`` on
``sys.path`` for ``tests/conftest.py`` and for the ``tests/<package>`` test packages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from mcresolve.endpoint import Endpoint
from mcresolve.sources.base import PublishingSource, Resolution


def eps(*ports: int, dc: str = "dc1") -> tuple[Endpoint, ...]:
    """Endpoints 127.0.0.1:<port> in ``dc``."""
    return tuple(Endpoint("127.0.0.1", p, datacenter=dc) for p in ports)


class ManualSource(PublishingSource):
    """Publishes answers and errors when the test calls :meth:`answer` / :meth:`fail` (nothing
    runs in the background); counts :meth:`refresh_now` calls, sets :attr:`refreshed` on each and
    calls :attr:`on_refresh` (if set) so that a test can answer them."""

    def __init__(self, description: str = "manual://test") -> None:
        super().__init__(description)
        self.refreshes = 0
        self.refreshed = asyncio.Event()
        self.on_refresh: Callable[[], None] | None = None

    async def start(self) -> None:
        return None

    async def _run(self) -> None:
        return None

    def answer(self, endpoints: Sequence[Endpoint], datacenter: str | None = "dc1") -> None:
        self._publish(Resolution.answered(endpoints, self.description, datacenter))

    def fail(self, error: Exception) -> None:
        self._publish_error(error)

    def refresh_now(self) -> None:
        self.refreshes += 1
        self.refreshed.set()
        if self.on_refresh is not None:
            self.on_refresh()
