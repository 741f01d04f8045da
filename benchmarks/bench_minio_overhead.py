"""Wrapper overhead per call: ResilientMinio vs a bare ``minio.Minio`` on a healthy cluster.

Both clients talk to the same storage node of a real SeaweedFS cluster with the same urllib3
settings, in the same run, interleaved block by block (ABBA) so that machine noise hits both
alike. By default they use the node's S3 port directly; ``--through-proxy`` goes through the
test harness's fault proxy instead (an asyncio proxy running *in this process*, on the
harness's thread: its CPU competes for the GIL with the measured client, which a deployment's
network path does not). Reported: median per-call latency of each, the difference (the
wrapper's cost) and the ratio, per operation (HEAD ``stat_object``, small ``get_object`` +
read, small ``put_object``, one-page ``list_objects``), plus the main thread's CPU time per
call (less noisy than wall time on a shared machine) and the wrapper's CPU per call in a tight
loop without I/O.

    .venv/bin/python benchmarks/bench_minio_overhead.py [--blocks 15] [--calls 100]
        [--through-proxy] [--json out]

Target (issue 4): under 5 % overhead.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import minio

from mcresolve.minio import HttpPolicy, ResilientMinio, make_http_client
from mcresolve.testing.storage import StorageCluster

BUCKET = "bench-overhead"
PAYLOAD = b"x" * 1024


def operations(client: Any, tag: str) -> dict[str, Callable[[], None]]:
    """The measured calls, on a bare or wrapped client."""

    def stat() -> None:
        client.stat_object(BUCKET, "small")

    def get() -> None:
        response = client.get_object(BUCKET, "small")
        try:
            response.read()
        finally:
            response.close()
            response.release_conn()

    def put() -> None:
        client.put_object(BUCKET, f"put-{tag}", io.BytesIO(PAYLOAD), len(PAYLOAD))

    def list_page() -> None:
        for _ in client.list_objects(BUCKET, prefix="list/"):
            pass

    return {"stat_object": stat, "get_object": get, "put_object": put, "list_objects": list_page}


def wrapper_cpu(client: ResilientMinio, calls: int = 20000) -> float:
    """Seconds per call the wrapper itself costs: a call whose attempt does no I/O."""
    run = client._run

    def noop(_client: Any, _endpoint: Any) -> None:
        return None

    for _ in range(1000):
        run("noop", noop, http_method="GET")
    start = time.perf_counter()
    for _ in range(calls):
        run("noop", noop, http_method="GET")
    return (time.perf_counter() - start) / calls


def block(fn: Callable[[], None], calls: int) -> tuple[float, float]:
    """Mean wall seconds and mean main-thread CPU seconds per call over ``calls`` calls."""
    cpu = time.thread_time()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls, (time.thread_time() - cpu) / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=15, help="interleaved blocks per client")
    parser.add_argument("--calls", type=int, default=100, help="calls per block")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument(
        "--through-proxy", action="store_true", help="via the harness's fault proxy"
    )
    args = parser.parse_args()

    with StorageCluster(datacenters={"dc1": 1}) as cluster:
        node = cluster.node("dc1", 0)
        port = node.port if args.through_proxy else node.s3_port
        endpoint = f"{node.address}:{port}"
        policy = HttpPolicy()
        bare = minio.Minio(
            endpoint,
            access_key=cluster.access_key,
            secret_key=cluster.secret_key,
            secure=False,
            region="us-east-1",
            http_client=make_http_client(policy),
        )
        bare.make_bucket(BUCKET)
        bare.put_object(BUCKET, "small", io.BytesIO(PAYLOAD), len(PAYLOAD))
        for i in range(20):
            bare.put_object(BUCKET, f"list/{i:02d}", io.BytesIO(b"l"), 1)
        wrapped = ResilientMinio(
            f"static://{endpoint}",
            access_key=cluster.access_key,
            secret_key=cluster.secret_key,
            secure=False,
            region="us-east-1",
            http=policy,
        )
        results: dict[str, Any] = {}
        try:
            bare_ops = operations(bare, "bare")
            wrapped_ops = operations(wrapped, "wrapped")
            results["wrapper_cpu_us"] = round(wrapper_cpu(wrapped) * 1e6, 1)
            for name in bare_ops:
                for _ in range(3):  # warm up connections and caches
                    block(bare_ops[name], 10)
                    block(wrapped_ops[name], 10)
                bare_times: list[tuple[float, float]] = []
                wrapped_times: list[tuple[float, float]] = []
                for i in range(args.blocks):  # ABBA order: neither client always goes first
                    if i % 2 == 0:
                        bare_times.append(block(bare_ops[name], args.calls))
                        wrapped_times.append(block(wrapped_ops[name], args.calls))
                    else:
                        wrapped_times.append(block(wrapped_ops[name], args.calls))
                        bare_times.append(block(bare_ops[name], args.calls))
                b = statistics.median(t for t, _ in bare_times)
                w = statistics.median(t for t, _ in wrapped_times)
                b_cpu = statistics.median(c for _, c in bare_times)
                w_cpu = statistics.median(c for _, c in wrapped_times)
                results[name] = {
                    "bare_us": round(b * 1e6, 1),
                    "wrapped_us": round(w * 1e6, 1),
                    "overhead_us": round((w - b) * 1e6, 1),
                    "ratio": round(w / b, 4),
                    "bare_cpu_us": round(b_cpu * 1e6, 1),
                    "wrapped_cpu_us": round(w_cpu * 1e6, 1),
                    "cpu_overhead_us": round((w_cpu - b_cpu) * 1e6, 1),
                }
        finally:
            wrapped.close()

    print(f"python {platform.python_version()} minio {minio.__version__} on {platform.machine()}")
    path = "through the fault proxy" if args.through_proxy else "S3 port directly"
    print(
        f"{args.blocks} interleaved blocks x {args.calls} calls, medians of block means, {path}\n"
    )
    print("| operation | bare minio.Minio | ResilientMinio | overhead | ratio | CPU overhead |")
    print("|---|---|---|---|---|---|")
    for name, row in results.items():
        if not isinstance(row, dict):
            continue
        print(
            f"| {name} | {row['bare_us']:.0f} µs | {row['wrapped_us']:.0f} µs | "
            f"{row['overhead_us']:+.0f} µs | {(row['ratio'] - 1) * 100:+.1f} % | "
            f"{row['cpu_overhead_us']:+.0f} µs |"
        )
    print(f"\nwrapper CPU per call (attempt without I/O): {results['wrapper_cpu_us']} µs")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {
                    "blocks": args.blocks,
                    "calls": args.calls,
                    "through_proxy": args.through_proxy,
                    "results": results,
                },
                out,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
