"""Two limits of a small pool, measured with real time on loopback (nothing leaves the machine).

``lockout``: two endpoints; A resets once (and is ejected for ~10 s), then serves; B resets every
request. Four concurrent callers for 12 s with the default policies; prints how many calls failed
and in which window. A pool that locks out its healthy node fails every call while A is ejected.

``overrun``: ``ResilientMinio`` over two hung storage nodes (loopback listeners that never accept:
the TCP handshake completes, nothing is ever answered), default ``HttpPolicy`` (10 s read timeout)
and ``CallPolicy`` (30 s deadline, or ``--deadline``); prints how long after the deadline each
call ended.

    PYTHONPATH=src python benchmarks/bench_pool_limits.py lockout
    PYTHONPATH=src python benchmarks/bench_pool_limits.py overrun --calls 2
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import socket
import time

from mcresolve.endpoint import Endpoint
from mcresolve.errors import CallFailed
from mcresolve.minio import ResilientMinio
from mcresolve.pool import EndpointPool
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.sources.static import StaticSource


async def lockout(seconds: float, callers: int) -> None:
    a, b = Endpoint("127.0.0.1", 9001), Endpoint("127.0.0.1", 9002)
    flaky = [True]

    async def fn(endpoint: Endpoint) -> int:
        await asyncio.sleep(0.001)
        if endpoint == a:
            if flaky[0]:
                flaky[0] = False
                raise ConnectionResetError("A: one reset")
            return endpoint.port
        raise ConnectionResetError("B: dying")

    async with EndpointPool(StaticSource((a, b))) as pool:
        await pool.wait_ready(5)
        with contextlib.suppress(CallFailed):  # the first call starts on A: its reset ejects A
            await pool.call(fn, exclude=[b.key])
        counts: collections.Counter[str] = collections.Counter()
        window: list[float] = []
        started = time.monotonic()

        async def caller() -> None:
            while time.monotonic() - started < seconds:
                try:
                    await pool.call(fn)
                    counts["ok"] += 1
                except CallFailed as exc:
                    counts[type(exc).__name__] += 1
                    window.append(time.monotonic() - started)
                await asyncio.sleep(0.02)

        await asyncio.gather(*(caller() for _ in range(callers)))
    failed = sum(n for kind, n in counts.items() if kind != "ok")
    span = f"{window[0]:.2f}..{window[-1]:.2f} s" if window else "none"
    print(f"{failed} of {sum(counts.values())} calls failed {dict(counts)}; failing window {span}")


def overrun(deadline: float, calls: int) -> None:
    holes = []
    for _ in range(2):
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)
        holes.append(hole)
    target = "static://" + ",".join(f"127.0.0.1:{h.getsockname()[1]}" for h in holes)
    try:
        with ResilientMinio(
            target,
            access_key="bench",
            secret_key="bench-secret",
            secure=False,
            region="us-east-1",
            call_policy=CallPolicy(deadline=deadline),
        ) as client:
            for number in range(calls):
                started = time.monotonic()
                error = "no error"
                try:
                    client.stat_object("bucket", f"key{number}")
                except Exception as exc:
                    error = type(exc).__name__
                late = time.monotonic() - started - deadline
                print(f"call {number}: ended {late:+.2f} s after the deadline ({error})")
    finally:
        for hole in holes:
            hole.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["lockout", "overrun"])
    parser.add_argument("--seconds", type=float, default=12.0, help="lockout: duration")
    parser.add_argument("--callers", type=int, default=4, help="lockout: concurrent callers")
    parser.add_argument("--deadline", type=float, default=30.0, help="overrun: call deadline")
    parser.add_argument("--calls", type=int, default=2, help="overrun: calls")
    args = parser.parse_args()
    if args.what == "lockout":
        asyncio.run(lockout(args.seconds, args.callers))
    else:
        overrun(args.deadline, args.calls)


if __name__ == "__main__":
    main()
