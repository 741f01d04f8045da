"""What a hostile Consul agent costs the client: redirects, huge and compressed answers, a stalled
body. Loopback aiohttp agents only; uses nothing but ``ConsulClient`` and ``ConsulConfig``, so the
same script measures an older checkout (``PYTHONPATH=<its src>``) for before/after figures.

    python benchmarks/bench_consul_hostile.py [redirect|size|gzip|stall] [--wait 60]

Each case runs in its own process (``ru_maxrss`` is a high-water mark). Memory is the growth of
the process's maximum RSS during the call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import subprocess
import sys
import time
import zlib
from collections.abc import Awaitable, Callable

from aiohttp import web

from mcresolve.consul import ConsulClient, ConsulConfig

TOKEN = "bench-token-not-a-secret"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(handler: Handler, host: str = "127.0.0.1") -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    return runner, f"{host}:{server.sockets[0].getsockname()[1]}"


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def outcome(call: Awaitable[object]) -> str:
    try:
        await call
    except Exception as error:  # the point is to report whatever comes out
        return f"{type(error).__name__}: {str(error)[:160]}"
    return "returned a value"


async def redirect() -> None:
    tokens: list[str | None] = []

    async def other(request: web.Request) -> web.StreamResponse:
        tokens.append(request.headers.get("X-Consul-Token"))
        return web.json_response([], headers={"X-Consul-Index": "1"})

    other_runner, other_address = await serve(other, "127.0.0.2")

    async def agent(request: web.Request) -> web.StreamResponse:
        location = f"http://{other_address}{request.path_qs}"
        return web.Response(status=307, headers={"Location": location})

    hits: list[str] = []

    async def looping(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        return web.Response(status=307, headers={"Location": str(request.url)})

    agent_runner, agent_address = await serve(agent)
    loop_runner, loop_address = await serve(looping)
    async with ConsulClient(ConsulConfig.for_addresses(agent_address, token=TOKEN)) as consul:
        result = await outcome(consul.health_service("web"))
    print(f"redirect to 127.0.0.2: {len(tokens)} request(s) there, tokens {tokens}; {result}")
    async with ConsulClient(ConsulConfig.for_addresses(loop_address)) as consul:
        result = await outcome(consul.health_service("web"))
    print(f"redirect loop: {len(hits)} request(s) for one call; {result}")
    for runner in (other_runner, agent_runner, loop_runner):
        await runner.cleanup()


async def size() -> None:
    written = [0]
    piece = b" " * 65536

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"X-Consul-Index": "1"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            await response.write(b"[")
            for _ in range(300 * 16):
                await response.write(piece)
                written[0] += len(piece)
            await response.write(b"]")
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    runner, address = await serve(huge)
    before = max_rss_mib()
    config = ConsulConfig.for_addresses(address, request_timeout=300)
    async with ConsulClient(config) as consul:
        result = await outcome(consul.health_service("web"))
    print(
        f"300 MiB chunked answer: max RSS +{max_rss_mib() - before:.0f} MiB, "
        f"server wrote {written[0] / 2**20:.1f} MiB; {result}"
    )
    await runner.cleanup()


async def gzip() -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = packer.compress(b"[")
    for _ in range(1024):
        body += packer.compress(b" " * 2**20)
    body += packer.compress(b"]") + packer.flush()

    async def bomb(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, headers={"Content-Encoding": "gzip", "X-Consul-Index": "1"})

    runner, address = await serve(bomb)
    before = max_rss_mib()
    config = ConsulConfig.for_addresses(address, request_timeout=300)
    async with ConsulClient(config) as consul:
        result = await outcome(consul.health_service("web"))
    print(
        f"{len(body) / 1e6:.1f} MB gzip answer inflating to 1 GiB: "
        f"max RSS +{max_rss_mib() - before:.0f} MiB; {result}"
    )
    await runner.cleanup()


async def stall(wait: float) -> None:
    release = asyncio.Event()

    async def stalling(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"X-Consul-Index": "9", "Content-Length": "100"})
        await response.prepare(request)
        await response.write(b"[" + b" " * 49)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), 4 * wait)
        return response

    runner, address = await serve(stalling)
    async with ConsulClient(ConsulConfig.for_addresses(address)) as consul:
        started = time.monotonic()
        result = await outcome(consul.health_service("web", index=5, wait=wait))
        took = time.monotonic() - started
    print(f"body stalled mid-way (blocking query, wait {wait:g} s): {took:.1f} s; {result}")
    release.set()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", nargs="?", choices=["redirect", "size", "gzip", "stall"])
    parser.add_argument("--wait", type=float, default=60.0, help="blocking wait for 'stall'")
    args = parser.parse_args()
    if args.case is None:  # every case, each in a fresh process
        for case in ("redirect", "size", "gzip", "stall"):
            command = [sys.executable, __file__, case, "--wait", str(args.wait)]
            subprocess.run(command, check=True)
        return
    cases: dict[str, Callable[[], Awaitable[None]]] = {
        "redirect": redirect,
        "size": size,
        "gzip": gzip,
        "stall": lambda: stall(args.wait),
    }
    asyncio.run(cases[args.case]())  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
