"""Small asyncio task helpers shared by the long-running parts (watches, sources, registration)."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it to end, without swallowing a cancellation of the caller
    that arrives meanwhile (a bare ``suppress(CancelledError)`` around ``await task`` would, and
    a ``stop()`` cancelled from outside would then hang until the task's own I/O ended)."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
