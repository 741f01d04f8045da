"""The Source contract (publication fan-out, lifecycle) and the static source."""

from __future__ import annotations

import asyncio

import pytest

from manual_source import ManualSource, eps
from mcresolve.endpoint import Endpoint
from mcresolve.sources import Resolution, Source, StaticSource
from mcresolve.sources.target import StaticTarget, parse_target


async def test_static_source_publishes_its_list_at_start() -> None:
    target = parse_target("static://10.0.0.1:9000,[::1]:9001,10.0.0.2?port=9002")
    assert isinstance(target, StaticTarget)
    async with StaticSource(target) as source:
        resolution = await source.wait_ready()
    assert [e.host_port for e in resolution.endpoints] == [
        "10.0.0.1:9000",
        "[::1]:9001",
        "10.0.0.2:9002",
    ]
    assert resolution.ok
    assert resolution.source == "static://10.0.0.1:9000,[::1]:9001,10.0.0.2?port=9002"
    assert isinstance(source, Source)


async def test_static_source_removes_duplicates() -> None:
    target = parse_target("static://10.0.0.1:9000,10.0.0.1:9000")
    assert isinstance(target, StaticTarget)
    source = StaticSource(target)
    await source.start()
    assert source.current is not None
    assert source.current.endpoints == (Endpoint("10.0.0.1", 9000),)
    await source.aclose()


async def test_updates_yield_current_then_latest_and_end_on_stop() -> None:
    source = ManualSource()
    await source.start()
    source.answer(eps(1))
    seen: list[tuple[int, ...]] = []

    async def consume() -> None:
        async for resolution in source.updates():
            seen.append(tuple(e.port for e in resolution.endpoints))

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)
    source.answer(eps(2))
    await asyncio.sleep(0)
    source.answer(eps(3))
    source.answer(eps(4))  # a slow consumer skips 3 and sees the latest
    await asyncio.sleep(0)
    await source.aclose()
    async with asyncio.timeout(5):
        await consumer
    assert seen == [(1,), (2,), (4,)]


async def test_listeners_are_called_and_removable() -> None:
    source = ManualSource()
    calls: list[Resolution] = []
    remove = source.add_listener(calls.append)
    source.answer(eps(1))
    remove()
    source.answer(eps(2))
    assert [r.endpoints for r in calls] == [eps(1)]


async def test_a_failing_listener_does_not_break_publication() -> None:
    source = ManualSource()

    def broken(_: Resolution) -> None:
        raise RuntimeError("listener bug")

    source.add_listener(broken)
    source.answer(eps(1))
    assert source.current is not None
    assert source.current.endpoints == eps(1)


async def test_error_keeps_previous_endpoints_as_stale() -> None:
    source = ManualSource()
    source.answer(eps(1, 2))
    error = ConnectionError("agent down")
    source.fail(error)
    current = source.current
    assert current is not None
    assert current.endpoints == eps(1, 2)
    assert (current.stale, current.error, current.ok) == (True, error, False)


async def test_error_before_any_answer_is_an_empty_stale_resolution() -> None:
    source = ManualSource()
    source.fail(TimeoutError("dns"))
    assert source.current is not None
    assert source.current.endpoints == ()
    assert source.current.stale


async def test_wait_ready_blocks_until_the_first_publication() -> None:
    source = ManualSource()
    waiter = asyncio.create_task(source.wait_ready())
    await asyncio.sleep(0)
    assert not waiter.done()
    source.answer(eps(7))
    async with asyncio.timeout(5):
        resolution = await waiter
    assert resolution.endpoints == eps(7)


async def test_wait_ready_fails_when_stopped_first() -> None:
    source = ManualSource()
    await source.aclose()
    with pytest.raises(RuntimeError, match="stopped before resolving"):
        await source.wait_ready()


def test_resolution_age_and_text() -> None:
    resolution = Resolution(eps(1), "consul://svc", "dc2", resolved_at=100.0, stale=True)
    assert resolution.age(now=130.5) == 30.5
    assert resolution.age(now=50.0) == 0.0
    assert str(resolution) == "1 endpoint(s) from dc2 via consul://svc [stale]"


class _Crashing(ManualSource):
    async def start(self) -> None:
        await super(ManualSource, self).start()

    async def _run(self) -> None:
        raise KeyError("bug")


async def test_an_unexpected_error_in_run_is_published_not_raised() -> None:
    source = _Crashing()
    await source.start()
    async with asyncio.timeout(5):
        resolution = await source.wait_ready()
    assert isinstance(resolution.error, KeyError)
    await source.aclose()
