"""One process-wide event-loop thread for synchronous programs, reference-counted.

Every :class:`~mcresolve.pool.BackgroundPool` (hence every pool that
:meth:`~mcresolve.pool.EndpointPool.start_in_thread` or a synchronous
:class:`~mcresolve.minio.ResilientMinio` built from a target starts) runs on the loop of
:data:`SHARED_LOOP_THREAD`. Their sources therefore share Consul watches: the process-wide
registries (:data:`~mcresolve.consul.watch.SHARED_WATCHES`) are keyed by Consul configuration
*and event loop*, so pools on private loop threads could not share.

The thread is started by the first :meth:`SharedLoopThread.acquire` and stopped by the
:meth:`SharedLoopThread.release` that drops the last user: the loop is stopped, tasks still
pending are cancelled and awaited, async generators and the default executor are shut down,
the loop is closed and the thread joined. It is a daemon thread, so a program that forgets to
close its clients still exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

__all__ = ["SHARED_LOOP_THREAD", "SharedLoopThread"]

_log = logging.getLogger(__name__)


class SharedLoopThread:
    """An event loop on a daemon thread, alive while it has users (thread-safe)."""

    def __init__(self, name: str = "mcresolve-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._users = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def users(self) -> int:
        """Users holding the loop now."""
        with self._lock:
            return self._users

    @property
    def thread(self) -> threading.Thread | None:
        """The running thread, or None while nobody uses the loop."""
        with self._lock:
            return self._thread

    def acquire(self) -> asyncio.AbstractEventLoop:
        """The running loop (the thread starts if it is the first user); every call must be
        matched by one :meth:`release`."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                running = threading.Event()
                thread = threading.Thread(
                    target=self._run, args=(loop, running), name=self._name, daemon=True
                )
                thread.start()
                running.wait()
                self._loop, self._thread = loop, thread
            self._users += 1
            return self._loop

    def release(self, timeout: float | None = 10.0) -> None:
        """Drop one user; the last one stops the loop and joins the thread (up to
        ``timeout`` seconds). Must not be called from the loop's own thread."""
        with self._lock:
            if self._users <= 0:
                raise RuntimeError("SharedLoopThread.release() without acquire()")
            self._users -= 1
            if self._users > 0:
                return
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        assert loop is not None and thread is not None
        if thread is threading.current_thread():
            raise RuntimeError("the shared loop thread cannot stop itself")
        with contextlib.suppress(RuntimeError):  # the loop already closed (its thread died)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if thread.is_alive():
            _log.warning("shared event-loop thread did not stop within %s s", timeout)

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, running: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(running.set)
        try:
            loop.run_forever()
        finally:
            try:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    _log.debug("shared loop stopping: %d task(s) cancelled", len(pending))
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()


SHARED_LOOP_THREAD = SharedLoopThread()
"""The loop every :class:`~mcresolve.pool.BackgroundPool` runs on."""
