"""What the client does with hostile transport: redirects, oversized and stalled bodies,
undecodable answers. Real loopback servers; decisions awaited through events, not timings."""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from consul_replay import Planned, ReplayServer, golden

from mcresolve.consul import (
    ConsulAnswerError,
    ConsulAnswerTooLarge,
    ConsulBodyStalled,
    ConsulClient,
    ConsulConfig,
    ConsulProtocolError,
    ConsulRedirect,
)
from mcresolve.consul.blocking import BlockingPolicy
from mcresolve.consul.watch import (
    HealthServiceSpec,
    WatchFailure,
    WatchPolicy,
    WatchRegistry,
    WatchUpdate,
)
from mcresolve.timing import BackoffPolicy

TOKEN = "s3cr3t-redirect-token-77"
SVC = "/v1/health/service/web"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serving(handler: Handler, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve ``handler`` for every path on ``host``:<free port>; yields ``host:port``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{host}:{port}"
    finally:
        await runner.cleanup()


def client(address: str, **options: object) -> ConsulClient:
    return ConsulClient(ConsulConfig.for_addresses(address, **options))


# --- redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_an_error_and_the_token_never_leaves(status: int) -> None:
    elsewhere: list[dict[str, str]] = []

    async def other_host(request: web.Request) -> web.StreamResponse:
        elsewhere.append(dict(request.headers))
        return web.json_response([], headers={"X-Consul-Index": "1"})

    async with serving(other_host, "127.0.0.2") as other:

        async def agent(request: web.Request) -> web.StreamResponse:
            location = f"http://user:pw@{other}{request.path_qs}"
            return web.Response(status=status, headers={"Location": location})

        async with serving(agent) as address, client(address, token=TOKEN) as consul:
            with pytest.raises(ConsulRedirect) as info:
                await consul.health_service("web", passing=True)
    error = info.value
    assert elsewhere == []  # not one request, so no token, reached the other host
    assert error.status == status and error.location_host == "127.0.0.2"
    assert error.agent == f"http://{address}"
    text = str(error)
    assert f"http://{address}" in text and "127.0.0.2" in text and SVC in text
    assert TOKEN not in text and "pw" not in text and "user" not in text


async def test_a_redirect_loop_costs_one_request() -> None:
    hits: list[str] = []

    async def looping(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        return web.Response(status=307, headers={"Location": str(request.url)})

    async with serving(looping) as address, client(address) as consul:
        with pytest.raises(ConsulRedirect):
            await consul.query_execute("storage")
        with pytest.raises(ConsulRedirect):
            await consul.agent_self()
    assert hits == ["/v1/query/storage/execute", "/v1/agent/self"]


async def test_a_redirect_without_location_is_typed() -> None:
    async def agent(request: web.Request) -> web.StreamResponse:
        return web.Response(status=300)

    async with serving(agent) as address, client(address) as consul:
        with pytest.raises(ConsulRedirect) as info:
            await consul.agent_self()
    assert info.value.location_host is None and info.value.status == 300


# --- answer size -------------------------------------------------------------------------------

LIMIT = 1024 * 1024
PIECE = b" " * 65536


async def test_an_oversized_streamed_answer_is_cut_at_the_limit() -> None:
    """A 300 MiB chunked answer, generated lazily: the client stops one byte past the limit."""
    written = [0]
    finished = asyncio.Event()

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"X-Consul-Index": "3"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            await response.write(b"[")
            for _ in range(300 * 16):  # 300 MiB of JSON white space, written as it is read
                await response.write(PIECE)
                written[0] += len(PIECE)
            await response.write(b"]")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            finished.set()
        return response

    async with serving(huge) as address, client(address, max_answer_bytes=LIMIT) as consul:
        with pytest.raises(ConsulAnswerTooLarge) as info:
            await consul.health_service("web", passing=True)
        await finished.wait()
    error = info.value
    assert error.limit == LIMIT and error.declared is None
    # The client consumed one byte past the limit, no more; the server could only write
    # what the socket buffers between the two held, far from the 300 MiB it had to send.
    assert error.received == LIMIT + 1
    assert written[0] < 300 * 2**20 // 4
    assert f"http://{address}" in str(error) and SVC in str(error)


async def test_a_declared_oversized_answer_is_refused_before_reading() -> None:
    body_started = asyncio.Event()
    release = asyncio.Event()

    async def declares(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(2**40)})
        await response.prepare(request)
        await response.write(b"[" + b" " * 1000)
        body_started.set()
        await release.wait()
        return response

    async with serving(declares) as address, client(address, max_answer_bytes=LIMIT) as consul:
        with pytest.raises(ConsulAnswerTooLarge) as info:
            await consul.agent_self()
        release.set()
    assert info.value.declared == 2**40 and info.value.received == 0


async def test_the_limit_applies_to_the_decompressed_answer(replay: ReplayServer) -> None:
    """A 64 KiB gzip answer that inflates to 64 MiB (a compression bomb) stops at the limit."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = packer.compress(b"[") + packer.compress(b" " * (64 * 2**20)) + packer.compress(b"]")
    body += packer.flush()
    assert len(body) < LIMIT
    replay.answer(Planned(body=body, headers={"Content-Encoding": "gzip", "X-Consul-Index": "2"}))
    async with client(replay.address, max_answer_bytes=LIMIT) as consul:
        with pytest.raises(ConsulAnswerTooLarge) as info:
            await consul.health_service("web")
    assert info.value.received == LIMIT + 1 and info.value.declared == len(body)


async def test_the_default_limit_reads_a_large_realistic_answer(replay: ReplayServer) -> None:
    """10,000 instances shaped like Consul 1.0.8's recorded health entries, indented as the
    agent sent them (about 16 MB), are read in full under the default limit."""
    recorded = golden("02_reads.json", "GET", "/v1/health/service/storage-object-minio")
    entry = recorded["response"]["body"][0]
    entries = []
    for i in range(10_000):
        service = dict(entry["Service"], ID=f"web-{i}")
        entries.append(dict(entry, Service=service))
    body = json.dumps(entries, indent=4).encode()
    assert len(body) > 10_000_000
    replay.answer(Planned(body=body, headers={"X-Consul-Index": "4"}))
    async with client(replay.address) as consul:
        result = await consul.health_service("web")
    assert len(result.value) == 10_000 and result.value[-1].service.id == "web-9999"


# --- stalled bodies ----------------------------------------------------------------------------


async def test_a_body_that_stops_flowing_is_detected_before_the_wait_ends() -> None:
    stalled = asyncio.Event()
    release = asyncio.Event()
    stall_over = asyncio.Event()

    async def stalling(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"X-Consul-Index": "9", "Content-Length": "100"})
        await response.prepare(request)
        await response.write(b"[" + b" " * 49)  # half the body
        stalled.set()
        # The stall ends when the test says so, or after 20 s: then the body completes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), 20)
        stall_over.set()
        await response.write(b" " * 49 + b"]")
        return response

    async with (
        serving(stalling) as address,
        client(address, body_idle_timeout=0.3, token=TOKEN) as consul,
    ):
        # A blocking call: its own timeout is wait + wait/16 + 3 s, about 67 s.
        with pytest.raises(ConsulBodyStalled) as info:
            await consul.health_service("web", index=5, wait=60)
        detected_during_stall = stalled.is_set() and not stall_over.is_set()
        release.set()
    assert detected_during_stall
    text = str(info.value)
    assert f"http://{address}" in text and SVC in text and TOKEN not in text


async def test_the_blocking_wait_before_the_headers_is_not_a_stall(replay: ReplayServer) -> None:
    """Consul holds a blocking request *before* answering: the body idle timeout does not
    apply to that wait, only the call's own timeout."""
    replay.answer(Planned(body=b"[]", headers={"X-Consul-Index": "8"}, delay=0.6))
    async with client(replay.address, body_idle_timeout=0.05) as consul:
        result = await consul.health_service("web", index=7, wait=1)
    assert result.value == () and result.meta.index == 8


# --- undecodable answers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (b"[NaN]", "invalid JSON"),
        (b"[Infinity]", "invalid JSON"),
        (b"[" + b"9" * 5000 + b"]", "invalid JSON"),
        (b"\xff\xfe[]", "invalid JSON"),
        (b'{"Node": {}}', "expected a JSON array"),
        (b'"text"', "expected a JSON array"),
        (b"[[]]", "expected a JSON object"),
    ],
)
async def test_undecodable_answers_are_typed_and_name_agent_and_path(
    replay: ReplayServer, body: bytes, problem: str
) -> None:
    replay.answer(Planned(body=body, headers={"X-Consul-Index": "5"}))
    async with client(replay.address) as consul:
        with pytest.raises(ConsulAnswerError) as info:
            await consul.health_service("web")
    text = str(info.value)
    assert problem in text and replay.url in text and SVC in text
    assert info.value.agent == replay.url and info.value.path == SVC
    assert isinstance(info.value, ConsulProtocolError)


async def test_a_watch_reports_a_stalled_blocking_answer_and_recovers() -> None:
    """Through a watch (wait 60 s): the blocking answer stalls mid-body; the watch reports a
    ConsulBodyStalled failure while the agent is still stalling, then recovers by itself."""
    entry = {"Node": {"Node": "n", "Address": "10.0.0.1"}, "Service": {"ID": "a", "Port": 1}}
    entry["Service"]["Service"] = "web"
    good = json.dumps([entry]).encode()
    stalled = asyncio.Event()
    release = asyncio.Event()
    requests: list[str] = []

    async def agent(request: web.Request) -> web.StreamResponse:
        requests.append(request.query.get("index", ""))
        if len(requests) != 2:  # the first read, and every request after the stalled one
            return web.Response(body=good, headers={"X-Consul-Index": str(10 + len(requests))})
        response = web.StreamResponse(headers={"X-Consul-Index": "12", "Content-Length": "99"})
        await response.prepare(request)
        await response.write(good[:20])
        stalled.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), 20)
        return response

    policy = WatchPolicy(
        blocking=BlockingPolicy(wait=60.0, min_interval=0.0),
        backoff=BackoffPolicy(base=0.01, cap=0.01),
    )
    async with serving(agent) as address:
        consul = client(address, body_idle_timeout=0.3)
        async with consul, WatchRegistry(consul, policy) as registry:
            events: list[object] = []
            async with asyncio.timeout(15):
                async for event in registry.subscribe(HealthServiceSpec("web")):
                    events.append(event)
                    if isinstance(event, WatchFailure):
                        assert isinstance(event.error, ConsulBodyStalled)
                        assert stalled.is_set() and not release.is_set()
                    if isinstance(event, WatchUpdate) and event.recovered:
                        break
            release.set()
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "WatchUpdate" and "WatchFailure" in kinds and kinds[-1] == "WatchUpdate"
    assert requests[:2] == ["0", "11"]  # an immediate read, then a blocking request on its index
