"""The golden replay judges blocking by the agent's own record of each held query (held or not,
woken by a change or at the end of its wait), never by the wall clock: a loaded machine may stall
any answer past a scaled wait without the agent having waited for it."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from golden_compare import Actual
from golden_loader import HttpExchange, load_recordings
from golden_replay import GoldenReplay

from mcresolve.testing.consul import ConsulEmulator
from mcresolve.testing.consul.http_api import AgentHttpApi, HeldQuery

SERVICE = {"Name": "web", "ID": "web-1", "Port": 80}


def _exchange(file_prefix: str, position: int) -> HttpExchange:
    recorded = next(f for f in load_recordings() if f.name.startswith(file_prefix))
    entry = recorded.entries[position]
    assert isinstance(entry, HttpExchange)
    return entry


async def _parked(api: AgentHttpApi) -> None:
    while api.parked < 1:  # noqa: ASYNC110 - polling a counter, not an event
        await asyncio.sleep(0.001)


async def test_the_agent_records_how_it_answered_each_held_query() -> None:
    async with ConsulEmulator(["dc1"], time_scale=0.01, seed=1) as emulator:
        dc = emulator.dc("dc1")
        api = AgentHttpApi.of(dc)
        path = "/v1/health/service/web"
        async with aiohttp.ClientSession() as session:
            register = f"{dc.http_url}/v1/agent/service/register"
            async with session.put(register, data=json.dumps(SERVICE)) as resp:
                assert resp.status == 200
            async with session.get(dc.http_url + path) as resp:
                index = int(resp.headers["X-Consul-Index"])
            # below the current index: answered at once, never held
            async with session.get(f"{dc.http_url}{path}?index={index - 1}&wait=2s") as resp:
                assert resp.status == 200
            assert api.held_queries == ()
            # nothing changes: held until its wait (2 s plus up to 1/16) ran out
            async with session.get(f"{dc.http_url}{path}?index={index}&wait=2s") as resp:
                assert int(resp.headers["X-Consul-Index"]) == index
            (held,) = api.held_queries
            assert (held.path, held.index, held.woken) == (path, index, False)
            assert 2.0 <= held.wait <= 2.0 * 17 / 16
            assert held.answered_at > held.held_at
            # a change while it is held wakes it (Consul's own pace: no stall outlasts 30 s)
            emulator.time_scale = 1.0
            watch = asyncio.ensure_future(
                session.get(f"{dc.http_url}{path}?index={index}&wait=30s")
            )
            await _parked(api)
            changed = dict(SERVICE, Tags=["new"])
            async with session.put(register, data=json.dumps(changed)) as resp:
                assert resp.status == 200
            async with await watch as resp:
                assert int(resp.headers["X-Consul-Index"]) > index
            woken = api.held_queries[-1]
            assert (woken.path, woken.index, woken.woken) == (path, index, True)


def _held(woken: bool, wait: float) -> HeldQuery:
    return HeldQuery("/v1/health/service/x", 44, wait, 10.0, 10.0 + (1.0 if woken else wait), woken)


def test_an_early_answer_is_judged_by_the_record_not_by_its_duration() -> None:
    at_once = _exchange("05_", 19)  # ?index=44 (current-1)&wait=5s returns immediately
    assert GoldenReplay._timing_problems(at_once, _answer(at_once), None) == []
    # received long after its (scaled) wait because the machine stalled: still answered at once
    stalled = _answer(at_once, elapsed_s=10.0)
    assert GoldenReplay._timing_problems(at_once, stalled, None) == []
    woken = _exchange("05_", 33)  # woken by the write 1 s in
    assert GoldenReplay._timing_problems(woken, _answer(woken), _held(True, 5.1)) == []
    (problem,) = GoldenReplay._timing_problems(at_once, _answer(at_once), _held(False, 5.1))
    assert "blocked its whole wait" in problem
    assert GoldenReplay._timing_problems(woken, _answer(woken), _held(False, 5.1))


def test_a_full_wait_must_have_been_held_until_its_jittered_wait_ran_out() -> None:
    full = _exchange("05_", 21)  # ?index=999999999&wait=3s
    assert GoldenReplay._timing_problems(full, _answer(full), _held(False, 3.1)) == []
    assert GoldenReplay._timing_problems(full, _answer(full), None)  # answered at once
    assert GoldenReplay._timing_problems(full, _answer(full), _held(True, 3.1))  # woken
    assert GoldenReplay._timing_problems(full, _answer(full), _held(False, 3.3))  # > 3 * 17/16
    assert GoldenReplay._timing_problems(full, _answer(full), _held(False, 2.9))  # < wait


def _answer(exchange: HttpExchange, elapsed_s: float = 0.0) -> Actual:
    """The recorded answer, received ``elapsed_s`` (wall clock) after it was sent."""
    return Actual(exchange.status, dict(exchange.headers), "", elapsed_s)
