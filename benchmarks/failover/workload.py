"""The open-loop workload driver: a fixed request rate per peer, each request bounded by the
workload's own deadline.

Requests are scheduled at ``start + i / rate`` whatever happened to earlier ones (open loop, so
a stuck client shows up as queueing and failures, not as a silently lower rate). Each request
runs on one of the peer's worker threads (daemon threads: a request stuck in a blackholed socket
for minutes is abandoned, not joined). A request still running ``deadline`` seconds after its
scheduled time is recorded as failed with ``error="deadline"``; one still queued then is never
sent. In the mixed workload every ``write_every``-th request is a PUT of a new object.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.failover.peers import Peer
from benchmarks.failover.records import Operation, RequestRecord

__all__ = ["DaemonWorkers", "WorkloadSettings", "drive", "error_name", "operation_at"]


@dataclass(frozen=True)
class WorkloadSettings:
    """Rate (requests per second per peer), deadline (s), and the write share of the mix."""

    rate: float = 20.0
    deadline: float = 3.0
    mixed: bool = False
    write_every: int = 5


def operation_at(index: int, settings: WorkloadSettings) -> Operation:
    """The operation of request ``index`` (pure: deterministic mix)."""
    if settings.mixed and index % settings.write_every == settings.write_every - 1:
        return Operation.WRITE
    return Operation.READ


def error_name(exc: BaseException) -> str:
    """A short, stable label of a failure for the tables (S3 code when there is one)."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code:
        return code
    name = type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    while cause is not None and name in {"MaxRetryError", "ProtocolError", "CallFailed"}:
        name = type(cause).__name__
        cause = cause.__cause__ or cause.__context__
    return name


_Job = tuple[Callable[[], Any], concurrent.futures.Future[Any]]


class DaemonWorkers:
    """A fixed set of daemon threads running submitted callables (never joined at exit)."""

    def __init__(self, count: int, name: str) -> None:
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((fn, future))
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    def shutdown(self) -> None:
        """Let idle threads end (busy ones end when their call returns)."""
        for _ in self._threads:
            self._queue.put(None)


async def drive(
    peer: Peer,
    *,
    bucket: str,
    keys: tuple[str, ...],
    payload: bytes,
    settings: WorkloadSettings,
    origin: float,
    start: float,
    stop: float,
    workers: int,
    on_record: Callable[[RequestRecord], None],
) -> None:
    """Run the workload on ``peer`` from ``origin + start`` to ``origin + stop`` (monotonic
    ``origin``; records carry times relative to it) and wait for every request to end."""
    pool = DaemonWorkers(workers, f"bench-{peer.kind}")
    pending: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    index = 0
    try:
        while True:
            scheduled = start + index / settings.rate
            if scheduled >= stop:
                break
            delay = origin + scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            operation = operation_at(index, settings)
            if operation is Operation.WRITE:
                key = f"writes/{peer.kind}/{index:06d}"
                call: Callable[[], Any] = _bind_write(peer, bucket, key, payload)
            else:
                call = _bind_read(peer, bucket, keys[index % len(keys)])
            task = loop.create_task(
                _one(pool, call, operation, scheduled, origin, settings.deadline, on_record)
            )
            pending.add(task)
            task.add_done_callback(pending.discard)
            index += 1
        if pending:
            await asyncio.gather(*pending)
    finally:
        for task in pending:
            task.cancel()
        pool.shutdown()


def _bind_read(peer: Peer, bucket: str, key: str) -> Callable[[], Any]:
    return lambda: peer.read(bucket, key)


def _bind_write(peer: Peer, bucket: str, key: str, data: bytes) -> Callable[[], Any]:
    return lambda: peer.write(bucket, key, data)


async def _one(
    pool: DaemonWorkers,
    call: Callable[[], Any],
    operation: Operation,
    scheduled: float,
    origin: float,
    deadline: float,
    on_record: Callable[[RequestRecord], None],
) -> None:
    started_box: list[float] = []

    def timed() -> Any:
        started_box.append(time.monotonic() - origin)
        return call()

    future = pool.submit(timed)
    remaining = origin + scheduled + deadline - time.monotonic()
    ok = False
    error: str | None = None
    try:
        await asyncio.wait_for(asyncio.wrap_future(future), max(remaining, 0.0))
        ok = True
    except TimeoutError:
        future.cancel()
        error = "deadline"
    except Exception as exc:
        error = error_name(exc)
    finished = time.monotonic() - origin
    on_record(
        RequestRecord(
            operation=operation,
            scheduled=scheduled,
            started=started_box[0] if started_box else finished,
            finished=finished,
            ok=ok,
            error=error,
        )
    )
