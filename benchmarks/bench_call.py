"""CPU cost of one ``await pool.call(fn)`` (asyncio), this tree against another revision.

Run: ``.venv/bin/python benchmarks/bench_call.py [--against REV] [--number 20000] [--rounds 5]
[--uvloop]``

Each measurement runs in its own interpreter (``PYTHONPATH`` set to the ``src`` of the tree
measured); with ``--against REV`` the revision is checked out in a temporary ``git worktree``
and the two trees are measured alternately, ``--rounds`` times each, so that both see the same
load. A cell is the lowest CPU time (``time.process_time``) per call over the rounds, in µs: the
cost of the pool's own work, with the function it runs doing nothing (three static endpoints,
default policies, no listener). Cells:

* ``ok``: the first endpoint answers at once (``fn`` returns without suspending);
* ``ok, fn awaits``: the same, ``fn`` suspending once (``asyncio.sleep(0)``, as any I/O does);
* ``one retry``: the first attempt raises ``ConnectionResetError``, the second answers
  (the outlier detector's reset threshold and the retry budget raised so nothing is ejected
  and no retry refused);
* ``deadline``: ``ok`` with ``deadline=`` and ``attempt_timeout=`` passed per call.

Only the public API is used, so any revision with ``EndpointPool`` and ``StaticSource`` runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CELLS = ("ok", "ok, fn awaits", "one retry", "deadline")


async def _measure(number: int) -> dict[str, float]:
    from mcresolve.balancer.outlier import OutlierPolicy
    from mcresolve.balancer.retry_budget import RetryBudgetPolicy
    from mcresolve.endpoint import Endpoint
    from mcresolve.pool import EndpointPool, PoolPolicy
    from mcresolve.sources.static import StaticSource

    endpoints = [Endpoint("127.0.0.1", 9000 + i) for i in range(3)]
    policy = PoolPolicy(
        outlier=OutlierPolicy(resets=10**9),
        retry_budget=RetryBudgetPolicy(percent_can_retry=10.0, min_retries_per_second=1e6),
    )
    attempts = 0

    async def ok(endpoint: Endpoint) -> Endpoint:
        return endpoint

    async def ok_awaits(endpoint: Endpoint) -> Endpoint:
        await asyncio.sleep(0)
        return endpoint

    async def retry(endpoint: Endpoint) -> Endpoint:
        nonlocal attempts
        attempts += 1
        if attempts % 2:
            raise ConnectionResetError("first attempt")
        return endpoint

    results: dict[str, float] = {}
    async with EndpointPool(StaticSource(endpoints), policy=policy) as pool:
        await pool.wait_ready(5)

        async def run(
            cell: str, fn: Callable[[Endpoint], Awaitable[Endpoint]], **kwargs: Any
        ) -> None:
            for _ in range(number // 10):  # warm up
                await pool.call(fn, **kwargs)
            started = time.process_time()
            for _ in range(number):
                await pool.call(fn, **kwargs)
            results[cell] = (time.process_time() - started) / number * 1e6

        await run("ok", ok)
        await run("ok, fn awaits", ok_awaits)
        await run("one retry", retry)
        await run("deadline", ok, deadline=5.0, attempt_timeout=2.0)
    return results


def measure(number: int, use_uvloop: bool) -> dict[str, float]:
    """One interpreter's cells (µs of CPU per call)."""
    if use_uvloop:
        import uvloop

        return uvloop.run(_measure(number))
    return asyncio.run(_measure(number))


def _child(src: Path, number: int, use_uvloop: bool) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(src))
    command = [sys.executable, __file__, "--child", "--number", str(number)]
    if use_uvloop:
        command.append("--uvloop")
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return {k: float(v) for k, v in json.loads(out).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="git revision to compare with (e.g. main, HEAD~3)")
    parser.add_argument("--number", type=int, default=20000, help="calls per cell")
    parser.add_argument("--rounds", type=int, default=5, help="interpreters per tree")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.number, args.uvloop)))
        return
    trees: dict[str, Path] = {"this tree": ROOT / "src"}
    with contextlib.ExitStack() as stack:
        if args.against:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-call-")))
            checkout = tmp / "tree"
            add = ["worktree", "add", "--detach", str(checkout), args.against]
            subprocess.run(["git", "-C", str(ROOT), *add], check=True, capture_output=True)
            stack.callback(
                subprocess.run,
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(checkout)],
                check=False,
                capture_output=True,
            )
            trees = {args.against: checkout / "src", **trees}
        best: dict[str, dict[str, float]] = {name: {} for name in trees}
        for _ in range(args.rounds):
            for name, src in trees.items():
                for cell, value in _child(src, args.number, args.uvloop).items():
                    best[name][cell] = min(value, best[name].get(cell, value))
    loop = "uvloop" if args.uvloop else "asyncio"
    print(
        f"µs of CPU per pool.call ({loop}), lowest of {args.rounds} interpreters per tree, "
        f"{args.number} calls per cell; load average {os.getloadavg()[0]:.2f}"
    )
    names = list(trees)
    header = f"{'cell':<16}" + "".join(f"{name:>14}" for name in names)
    if len(names) == 2:
        header += f"{'ratio':>8}"
    print(header)
    for cell in CELLS:
        row = f"{cell:<16}" + "".join(f"{best[name][cell]:>14.1f}" for name in names)
        if len(names) == 2:
            row += f"{best[names[1]][cell] / best[names[0]][cell]:>8.2f}"
        print(row)


if __name__ == "__main__":
    main()
