"""What the sidecar costs on loopback: added latency, throughput and CPU per request, side by side
with a direct connection and HAProxy, in one run.

Every server runs in its own process on 127.0.0.1: an origin (a minimal asyncio HTTP/1.1 server,
uvloop when installed, so that it is not the bottleneck), HAProxy (``nbthread 1``: one thread,
like the one sidecar process), the sidecar in http mode (asyncio and, when uvloop is installed,
uvloop event loops) and in tcp mode (when ``mcresolve.sidecar.tcp_mode`` exists). The load
generator is this process (kept-alive connections, uvloop when installed). Measured per target:

* latency: one connection, sequential ``GET`` of 1 KiB: p50 and p99, and the added latency
  (minus the direct connection's);
* throughput: ``--connections`` connections for ``--seconds`` each: small ``GET`` requests/s,
  1 MiB ``GET`` and 1 MiB ``PUT`` in MB/s;
* CPU per request: the server process's user+system CPU time (``/proc/PID/stat``) over the
  small-GET throughput phase, divided by its requests.

    .venv/bin/python benchmarks/bench_sidecar.py [--seconds 4] [--connections 16]
        [--latency-requests 3000] [--rounds 1] [--json out.json]

The load generator shares the machine's cores with the servers, so the throughput of the
fastest target (HAProxy, the direct connection) is partly the generator's limit: read the
ratios for the sidecar against HAProxy as upper bounds of HAProxy's lead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SMALL = b"s" * 1024
BIG_SIZE = 1024 * 1024
HERE = Path(__file__).resolve()


def _use_uvloop(wanted: bool = True) -> str:
    if wanted:
        try:
            import uvloop
        except ImportError:
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    return "asyncio"


# --- the origin ------------------------------------------------------------------------------


async def _origin_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    big = b"b" * BIG_SIZE
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            left = length
            while left:
                data = await reader.read(min(left, 262144))
                if not data:
                    return
                left -= len(data)
            if head.startswith(b"GET /big"):
                body = big
            elif head.startswith(b"GET"):
                body = SMALL
            else:
                body = b""
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def _serve_origin() -> None:
    server = await asyncio.start_server(_origin_connection, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def _serve_sidecar(mode: str, origin_port: int) -> None:
    from mcresolve.pool import EndpointPool

    pool = EndpointPool(f"static://127.0.0.1:{origin_port}")
    await pool.start()
    listener: Any
    if mode == "http":
        from mcresolve.sidecar.http_mode import HttpListener

        listener = HttpListener(("127.0.0.1", 0), pool)
    else:
        # by name: the tcp mode may not exist in this tree (the benchmark then skips it)
        tcp_mode = importlib.import_module("mcresolve.sidecar.tcp_mode")
        listener = tcp_mode.TcpListener(("127.0.0.1", 0), pool)
    await listener.start()
    print(listener.address[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await listener.aclose()
    await pool.aclose()


# --- processes -------------------------------------------------------------------------------


class Child:
    """This script in a child process, serving one role; prints its port; ends on stdin EOF."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE), "--serve", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"child {args} did not start")
        self.port = int(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# --- the load generator ----------------------------------------------------------------------


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, body: bytes = b""
) -> int:
    writer.write(request)
    if body:
        writer.write(body)
        await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer {head[:60]!r}")
    index = head.lower().find(b"content-length:")
    length = int(head[index + 15 : head.index(b"\r\n", index)]) if index >= 0 else 0
    if length:
        await reader.readexactly(length)
    return length


GET_SMALL = b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n"
GET_BIG = b"GET /big HTTP/1.1\r\nHost: bench\r\n\r\n"
PUT_BIG = b"PUT /up HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n" % BIG_SIZE


async def latency(port: int, requests: int) -> list[float]:
    reader, writer = await _open(port)
    samples: list[float] = []
    try:
        for i in range(requests + 200):
            started = time.perf_counter()
            await _exchange(reader, writer, GET_SMALL)
            if i >= 200:
                samples.append(time.perf_counter() - started)
    finally:
        writer.close()
    return samples


async def throughput(
    port: int, connections: int, seconds: float, request: bytes, body: bytes = b""
) -> tuple[int, int, float]:
    """(requests, bytes moved, elapsed seconds) over ``connections`` kept-alive connections."""
    stop = time.perf_counter() + seconds
    counts = [0, 0]

    async def worker() -> None:
        reader, writer = await _open(port)
        try:
            while time.perf_counter() < stop:
                got = await _exchange(reader, writer, request, body)
                counts[0] += 1
                counts[1] += got + len(body)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return counts[0], counts[1], time.perf_counter() - started


async def measure(
    target: str, port: int, pid: int | None, args: argparse.Namespace
) -> dict[str, float]:
    samples = await latency(port, args.latency_requests)
    samples.sort()
    before = cpu_seconds(pid) if pid else 0.0
    count, _, elapsed = await throughput(port, args.connections, args.seconds, GET_SMALL)
    cpu = cpu_seconds(pid) - before if pid else None
    _, got, got_elapsed = await throughput(port, 4, args.seconds, GET_BIG)
    big_body = b"p" * BIG_SIZE
    _, put, put_elapsed = await throughput(port, 4, args.seconds, PUT_BIG, big_body)
    row = {
        "p50_us": samples[len(samples) // 2] * 1e6,
        "p99_us": samples[int(len(samples) * 0.99)] * 1e6,
        "rps": count / elapsed,
        "get_mb_s": got / got_elapsed / 1e6,
        "put_mb_s": put / put_elapsed / 1e6,
    }
    if cpu is not None:
        row["cpu_us_per_request"] = cpu / count * 1e6
    print(f"  {target:<22} " + "  ".join(f"{k}={v:,.1f}" for k, v in row.items()), flush=True)
    return row


def _haproxy(origin_port: int) -> Any:
    sys.path.insert(0, str(HERE.parent.parent))
    from benchmarks.failover.haproxy import (
        HAProxyProcess,
        HAProxyServer,
        HAProxySettings,
        find_haproxy,
    )

    if find_haproxy() is None:
        return None
    settings = HAProxySettings(connect_timeout=2.0, server_timeout=30.0, check_interval=5.0)
    process = HAProxyProcess([HAProxyServer("origin", "127.0.0.1", origin_port)], settings)
    process.config = process.config.replace("global\n", "global\n    nbthread 1\n", 1)
    return process


def _tcp_available() -> bool:
    try:
        importlib.import_module("mcresolve.sidecar.tcp_mode")
    except ImportError:
        return False
    return True


async def run(args: argparse.Namespace) -> dict[str, Any]:
    loop_name = _use_uvloop_name()
    origin = Child("origin")
    children: list[Child] = [origin]
    targets: list[tuple[str, int, int | None]] = [("direct", origin.port, None)]
    haproxy = _haproxy(origin.port)
    try:
        if haproxy is not None:
            await haproxy.start()
            targets.append(("haproxy", haproxy.port, haproxy.pid))
        else:
            print("note: haproxy is not installed; no HAProxy column", flush=True)
        loops = ["asyncio"] + (["uvloop"] if _has_uvloop() else [])
        if not _has_uvloop():
            print("note: uvloop is not installed; the sidecar runs on asyncio only", flush=True)
        modes = ["http"] + (["tcp"] if _tcp_available() else [])
        if not _tcp_available():
            print(
                "note: mcresolve.sidecar.tcp_mode is not importable; tcp mode skipped", flush=True
            )
        for mode in modes:
            for loop in loops:
                child = Child("sidecar", mode, str(origin.port), loop)
                children.append(child)
                targets.append((f"sidecar-{mode}-{loop}", child.port, child.pid))
        print(f"load generator on {loop_name}; {len(targets)} targets", flush=True)
        rows: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in targets}
        for round_number in range(args.rounds):
            print(f"round {round_number + 1}/{args.rounds}", flush=True)
            order = targets if round_number % 2 == 0 else list(reversed(targets))
            for name, port, pid in order:
                rows[name].append(await measure(name, port, pid, args))
    finally:
        if haproxy is not None:
            await haproxy.stop()
        for child in children:
            child.stop()
    return _summary(rows, args)


def _summary(rows: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> dict[str, Any]:
    median: dict[str, dict[str, float]] = {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for name, runs in rows.items()
    }
    direct = median["direct"]
    for row in median.values():
        row["added_p50_us"] = row["p50_us"] - direct["p50_us"]
        row["added_p99_us"] = row["p99_us"] - direct["p99_us"]
    reference = median.get("haproxy")
    print()
    header = (
        f"{'target':<22}{'p50 µs':>9}{'p99 µs':>9}{'+p50':>8}{'+p99':>8}{'req/s':>9}"
        f"{'GET MB/s':>10}{'PUT MB/s':>10}{'CPU µs/req':>11}"
    )
    print(header)
    for name, row in median.items():
        cpu = row.get("cpu_us_per_request")
        print(
            f"{name:<22}{row['p50_us']:>9.0f}{row['p99_us']:>9.0f}{row['added_p50_us']:>8.0f}"
            f"{row['added_p99_us']:>8.0f}{row['rps']:>9.0f}{row['get_mb_s']:>10.0f}"
            f"{row['put_mb_s']:>10.0f}{'' if cpu is None else f'{cpu:.0f}':>11}"
        )
    if reference is not None:
        print("\nratios to haproxy (sidecar / haproxy):")
        for name, row in median.items():
            if not name.startswith("sidecar"):
                continue
            ratios = {
                "added_p50": _ratio(row["added_p50_us"], reference["added_p50_us"]),
                "added_p99": _ratio(row["added_p99_us"], reference["added_p99_us"]),
                "req/s": _ratio(row["rps"], reference["rps"]),
                "GET MB/s": _ratio(row["get_mb_s"], reference["get_mb_s"]),
                "PUT MB/s": _ratio(row["put_mb_s"], reference["put_mb_s"]),
                "CPU/req": _ratio(
                    row.get("cpu_us_per_request", 0.0), reference.get("cpu_us_per_request", 0.0)
                ),
            }
            print(f"  {name:<22}" + "  ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    return {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load": os.getloadavg(),
        },
        "settings": vars(args),
        "median": median,
        "rounds": rows,
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _use_uvloop_name() -> str:
    name = asyncio.get_event_loop_policy().__class__.__module__
    return "uvloop" if name.startswith("uvloop") else "asyncio"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--latency-requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.serve:
        role = args.serve[0]
        if role == "origin":
            _use_uvloop()
            asyncio.run(_serve_origin())
        else:
            _, mode, origin_port, loop = args.serve
            _use_uvloop(loop == "uvloop")
            asyncio.run(_serve_sidecar(mode, int(origin_port)))
        return
    _use_uvloop()
    print(f"uptime: {os.getloadavg()}", flush=True)
    summary = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
