"""Replaying the Consul 1.0.8 golden recordings against a fresh two-datacenter emulator.

The replay runs every file in order against one emulator (dc1 node n1, dc2 node n2), so state
carries over between files like it did on the real agents. Within a file, exchanges are sent on
the recorded timeline (``at_ms - elapsed_ms``), multiplied by a per-file time scale that is also
the emulator's ``time_scale``; an exchange is only sent once every exchange that had completed
before it in the recording has completed in the replay (so concurrent blocking queries overlap as
they did). Scenario steps that the recordings only describe (switching the HTTP-check stub,
killing the dc2 agent, the anti-entropy run) are replayed as actions at their recorded moments.

Recorded indexes in requests (``?index=N``) are translated to the emulator's through the indexes
observed so far, keeping N's relation (equal / below / above) to the endpoint's current index.
Recorded UUIDs (prepared-query IDs) in requests are translated through the IDs learnt from
earlier answers.

DNS exchanges and dig transcripts are not compared here; ``dns_handler`` lets the DNS test drive
the same replay and compare them at their point of the timeline.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp
from aiohttp import web
from golden_compare import Actual, CompareContext, RuleBook, compare_exchange, core_rules
from golden_loader import (
    RECORDED_STUB,
    Entry,
    HttpExchange,
    RecordedFile,
    load_recordings,
)
from golden_timed import Interval, Moment, possible_answers, timed_exchange

from mcresolve.testing.consul import ConsulEmulator
from mcresolve.testing.consul.durations import GoDurationError, parse_go_duration
from mcresolve.testing.consul.http_api import AgentHttpApi, HeldQuery

REPLAY_SEED = 5
DnsHandler = Callable[[Entry, "GoldenReplay"], Awaitable[list[str] | None]]


# ------------------------------------------------------------------------- the stub server


class CheckStub:
    """The HTTP server the recorded HTTP check pointed at; answers ``status <code>``."""

    def __init__(self) -> None:
        self.code = 200
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    async def _handle(self, request: web.Request) -> web.Response:
        if self.code in (204, 304):
            return web.Response(status=self.code)
        return web.Response(status=self.code, text=f"status {self.code}\n")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# --------------------------------------------------------------------------- file plans


@dataclass
class Action:
    """A scenario step the recording describes but does not contain as an exchange."""

    label: str
    at_ms: float
    run: Callable[[GoldenReplay], Awaitable[None]]
    before: int | None = None  # the entry that must wait for this action


@dataclass
class FilePlan:
    """How to replay one file."""

    time_scale: float = 1.0
    segment_starts: tuple[int, ...] = ()
    #: entries polled until they match (the recording's own step was a poll), with the
    #: extra Consul-time allowed after the recorded moment
    polls: dict[int, float] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    #: a file recorded at the same time as this one: (file-name prefix, ms after the start of
    #: the companion at which this file started)
    companion: tuple[str, float] | None = None


def _set_stub(code: int) -> Callable[[GoldenReplay], Awaitable[None]]:
    async def run(replay: GoldenReplay) -> None:
        replay.stub.code = code
        await replay.emulator.dc("dc1").agent.run_check_now("minio-dc1-http-check")

    return run


async def _kill_dc2(replay: GoldenReplay) -> None:
    """The SIGKILL, once the blocking ``?dc=dc2`` query the recording had in flight (10#24,
    sent 1 s before) is held by the dc1 agent: on a loaded machine the replay may send it late."""
    api = AgentHttpApi.of(replay.emulator.dc("dc1"))
    deadline = time.monotonic() + 10.0
    while api.parked < 1 and time.monotonic() < deadline:  # noqa: ASYNC110 - poll a counter
        await asyncio.sleep(0.001)
    now = replay.emulator.clock.consul_now()
    # noted before the agent stops: stopping answers the in-flight query (EOF) at once
    replay.events["kill dc2"] = Interval(now, now)
    await replay.emulator.stop_agent("dc2")


async def _keepalive_then_expire(replay: GoldenReplay) -> None:
    """04's unrecorded tail: the 3 s TTL check is passed every second for 6 s, then left to
    expire (05 starts with it critical, Output ``TTL expired``)."""
    agent = replay.emulator.dc("dc1").agent
    for _ in range(6):
        await replay.emulator.clock.sleep(1.0)
        agent.ttl_update("minio-dc1-ttlexp-ttl", "passing", "")
    check = agent.checks["minio-dc1-ttlexp-ttl"]
    deadline = time.monotonic() + 5.0
    while check.status != "critical" and time.monotonic() < deadline:  # noqa: ASYNC110 - poll
        await asyncio.sleep(0.005)


async def _anti_entropy_dc1(replay: GoldenReplay) -> None:
    replay.emulator.dc("dc1").agent.anti_entropy()


def _stub_action(file: RecordedFile, position: int, code: int) -> Action:
    entry = file.entries[position]
    assert entry.send_ms is not None
    return Action(f"stub -> {code}", entry.send_ms - 0.01, _set_stub(code), before=position)


def build_plans(files: list[RecordedFile]) -> dict[str, FilePlan]:
    """Per-file time scales, segments, polls and actions, derived from the recordings."""
    by_name = {f.name: f for f in files}
    plans: dict[str, FilePlan] = {name: FilePlan() for name in by_name}

    def plan(prefix: str) -> tuple[RecordedFile | None, FilePlan]:
        for name in by_name:
            if name.startswith(prefix):
                return by_name[name], plans[name]
        return None, FilePlan()

    f, p = plan("03b_")
    if f is not None:
        p.time_scale = 0.1
        for entry in f.entries:
            found = re.search(r"stub now returns (\d+)", entry.step)
            since = entry.raw.get("ms_since_stub_changed")
            if found and since is not None and entry.send_ms is not None:
                p.actions.append(
                    Action(
                        f"stub -> {found.group(1)}",
                        entry.send_ms - float(since),
                        _set_stub(int(found.group(1))),
                        before=entry.position,
                    )
                )
    f, p = plan("04_")
    if f is not None:
        p.time_scale = 0.1
        p.polls = {
            e.position: 1.0
            for e in f.entries
            if e.step.endswith("first health response showing critical")
        }
        last = f.entries[13]
        assert last.at_ms is not None
        p.actions = [
            Action(
                "keepalive passes, then expiry", last.at_ms + 1, _keepalive_then_expire, before=14
            )
        ]
    f, p = plan("05_")
    if f is not None:
        # 1/20, not faster: every real second a loaded machine stalls is 1/scale Consul seconds,
        # and 05's back-to-back blocking queries add their stalls up. The recorded state must
        # not age: 03's output-only passes of minio-dc1-a (deferred 5 min) still unsynced at
        # 05#22, ~70 s of recorded time later; the 15 min TTL of minio-dc2-a (passed in 01)
        # still passing at 06, ~650 s later.
        p.time_scale = 0.05
        p.segment_starts = (44, 86)
        # 05b ran concurrently on a quiet service (see the note of 05#43), both batches at once
        p.companion = ("05b_", 0.0)
    f, p = plan("05b_")
    if f is not None:
        p.time_scale = 0.05
    f, p = plan("06_")
    if f is not None:
        p.time_scale = 0.2
        p.segment_starts = (89,)
        p.actions = [
            _stub_action(f, 41, 500),
            _stub_action(f, 55, 429),
            _stub_action(f, 64, 500),
            _stub_action(f, 79, 200),
        ]
    f, p = plan("07_")
    if f is not None:
        p.time_scale = 0.2
        p.actions = [
            _stub_action(f, 55, 500),
            _stub_action(f, 69, 429),
            _stub_action(f, 78, 500),
            _stub_action(f, 94, 200),
        ]
    f, p = plan("09_")
    if f is not None:
        p.time_scale = 0.02
        # 09b ran at the same time: its reap-* checks show in 09's agent/checks, 09's
        # deregistration of minio-dc1-c shows in 09b's agent/services, its reaping (index 217)
        # falls between 09#13 (214) and 09#14 (227). 09 started ~10 s after 09b.
        p.companion = ("09b_", 10000.0)
        p.polls = {14: 1.0, 15: 1.0}
        first = f.entries[14]
        assert first.send_ms is not None
        p.actions = [Action("anti-entropy run", first.send_ms - 1.0, _anti_entropy_dc1, 14)]
    f, p = plan("09b_")
    if f is not None:
        p.time_scale = 0.02
        p.polls = {4: 35.0, 5: 35.0}
    f, p = plan("10_")
    if f is not None:
        p.time_scale = 0.02
        p.segment_starts = (26,)
        p.polls = {22: 2.0, 23: 2.0}
        p.actions = [
            _stub_action(f, 0, 500),
            Action("SIGKILL of the dc2 agent", 2656.0, _kill_dc2, before=14),
            _stub_action(f, 34, 200),
        ]
    return plans


# ------------------------------------------------------------------------------- results


@dataclass
class ExchangeResult:
    label: str
    compared: bool
    problems: list[str] = field(default_factory=list)
    reason: str = ""


@dataclass
class FileReport:
    name: str
    http_total: int = 0
    http_compared: int = 0
    dns_total: int = 0
    dns_compared: int = 0
    results: list[ExchangeResult] = field(default_factory=list)

    @property
    def failures(self) -> list[ExchangeResult]:
        return [r for r in self.results if r.problems]

    @property
    def not_compared(self) -> list[ExchangeResult]:
        return [r for r in self.results if not r.compared]


# --------------------------------------------------------------------------- index mapping


class IndexHistory:
    """Recorded vs emulator indexes per (datacenter, endpoint), in answer order."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, str], tuple[int, int]] = {}
        self.by_dc: dict[str, list[tuple[int, int]]] = {}
        self._seen_in_file: set[tuple[str, str]] = set()

    def new_file(self) -> None:
        """Index moves are only compared within a file: 03b was recorded after 05 (its indexes
        are higher than 04's), so across files the recorded order of writes is not the
        replay's."""
        self._seen_in_file.clear()

    def translate(self, key: tuple[str, str], recorded: int) -> int:
        """An emulator index with the same relation to the endpoint's current index as the
        recorded one had."""
        if recorded == 0:
            return recorded
        seen = self.by_dc.get(key[0], [])
        exact = [a for r, a in seen if r == recorded]
        if exact:  # an index answered before (on any endpoint of that datacenter)
            return exact[-1]
        if key in self.last:
            rec, act = self.last[key]
        else:
            lower = [(r, a) for r, a in seen if r < recorded]
            if not lower:
                return recorded
            rec, act = max(lower)
        if recorded == rec:
            return act
        if recorded > rec:
            return act + (recorded - rec)
        return max(1, act - (rec - recorded))

    def observe(self, key: tuple[str, str], recorded: int, actual: int) -> list[str]:
        """Record a pair; complain if the index moved unlike the recorded one."""
        problems = self.check(key, recorded, actual)
        self.last[key] = (recorded, actual)
        self.by_dc.setdefault(key[0], []).append((recorded, actual))
        self._seen_in_file.add(key)
        return problems

    def check(self, key: tuple[str, str], recorded: int, actual: int) -> list[str]:
        """Whether the index moved like the recorded one (nothing recorded)."""
        problems = []
        if key in self.last and key in self._seen_in_file:
            rec0, act0 = self.last[key]
            rec_move = (recorded > rec0) - (recorded < rec0)
            act_move = (actual > act0) - (actual < act0)
            if rec_move != act_move:
                words = {1: "rose", 0: "stayed", -1: "fell"}
                problems.append(
                    f"X-Consul-Index {words[act_move]} ({act0} -> {actual}) but the recorded one "
                    f"{words[rec_move]} ({rec0} -> {recorded}) on {key[1]}"
                )
        return problems


def _wait_of(query: dict[str, list[str]]) -> float:
    raw = (query.get("wait") or [""])[0]
    if not raw:
        return 300.0
    try:
        value = parse_go_duration(raw)
    except GoDurationError:
        return 0.0
    return 300.0 if value <= 0 else min(value, 600.0)


# ------------------------------------------------------------------------------ the replay


class GoldenReplay:
    """Drives the recordings through an emulator; see the module docstring."""

    def __init__(
        self,
        files: list[RecordedFile] | None = None,
        *,
        rules: RuleBook | None = None,
        dns_handler: DnsHandler | None = None,
        speed: float = 1.0,
    ) -> None:
        self.files = files if files is not None else load_recordings()
        self.plans = build_plans(self.files)
        self.rules = rules or core_rules()
        load_plugin_rules(self.rules)
        self.dns_handler = dns_handler
        self.speed = speed
        # seeded: the HTTP check of 01 first runs ~0.7 s after its registration (Consul's
        # random stagger within the 2 s interval), after 01#7 and before 01#18 like recorded
        self.emulator = ConsulEmulator(["dc1", "dc2"], seed=REPLAY_SEED)
        self.stub = CheckStub()
        self.index_history = IndexHistory()
        self.id_map: dict[str, str] = {}
        self.reports: list[FileReport] = []
        self._session: aiohttp.ClientSession | None = None
        self.pq_available = _module_available("mcresolve.testing.consul.prepared_query")
        #: when things happened in Consul time (the dc2 kill; every exchange sent, by label
        #: prefix ``file#position``), for the answers that depend on it (golden_timed.py)
        self.events: dict[str, Interval] = {}
        #: the URL each exchange was last sent to (recorded indexes translated), by label
        self._sent_urls: dict[str, str] = {}

    async def __aenter__(self) -> GoldenReplay:
        await self.stub.start()
        await self.emulator.start()
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
        await self.emulator.aclose()
        await self.stub.stop()

    # ------------------------------------------------------------------ rewriting

    def rewrite_recorded(self, text: str) -> str:
        """A recorded string as the emulator setup would produce it."""
        return text.replace(RECORDED_STUB, f"127.0.0.1:{self.stub.port}")

    def _rewrite_request(self, text: str) -> str:
        text = self.rewrite_recorded(text)
        for rec, act in self.id_map.items():
            text = text.replace(rec, act)
        return text

    def _target_dc(self, exchange: HttpExchange) -> str:
        return (exchange.query.get("dc") or [exchange.datacenter])[0] or exchange.datacenter

    def _index_key(self, exchange: HttpExchange) -> tuple[str, str]:
        return self._target_dc(exchange), exchange.route

    def request_url(self, exchange: HttpExchange) -> str:
        """The recorded request line, for this emulator (ports, indexes, IDs translated)."""
        dc = self.emulator.dc(exchange.datacenter)
        route, sep, raw_query = exchange.path.partition("?")
        tokens = []
        for token in raw_query.split("&") if sep else []:
            name, eq, value = token.partition("=")
            if name == "index" and eq and value.isdigit():
                key = self._index_key(exchange)
                value = str(self.index_history.translate(key, int(value)))
                token = f"index={value}"
            tokens.append(token)
        path = self._rewrite_request(route)
        return f"{dc.http_url}{path}" + (f"?{'&'.join(tokens)}" if sep else "")

    # ------------------------------------------------------------------ one exchange

    async def send(self, exchange: HttpExchange) -> Actual:
        assert self._session is not None
        body = exchange.body_bytes()
        if body is not None:
            body = self._rewrite_request(body.decode("utf-8")).encode("utf-8")
        started = time.monotonic()
        url = self.request_url(exchange)
        self._sent_urls[exchange.label] = url
        try:
            async with self._session.request(
                exchange.method,
                url,
                data=body,
                timeout=aiohttp.ClientTimeout(total=60),
            ) as resp:
                text = await resp.text()
                return Actual(resp.status, dict(resp.headers), text, time.monotonic() - started)
        except aiohttp.ClientError as exc:
            return Actual(-1, {}, f"connection error: {exc}", time.monotonic() - started)

    def _held(self, exchange: HttpExchange, ran: Interval) -> HeldQuery | None:
        """The agent's record of holding this exchange's blocking query (``None``: it answered
        at once): same path, held while the exchange ran."""
        api = AgentHttpApi.of(self.emulator.dc(exchange.datacenter))
        path = unquote(self._rewrite_request(exchange.route))
        sent = parse_qs(urlsplit(self._sent_urls.get(exchange.label, "")).query)
        index = (sent.get("index") or ["-1"])[0]
        found = [
            held
            for held in api.held_queries
            if held.path == path
            and str(held.index) == index
            and ran.start <= held.held_at <= ran.end
        ]
        return found[-1] if found else None

    @staticmethod
    def _timing_problems(
        exchange: HttpExchange, actual: Actual, held: HeldQuery | None
    ) -> list[str]:
        """Whether the agent blocked like Consul did, judged by its own record of the query
        (held or not, woken by a change or at the end of its wait, in Consul time), never by the
        wall clock: on a loaded machine a stall makes any answer late."""
        query = exchange.query
        index = (query.get("index") or [""])[0]
        if not index or not index.isdigit() or int(index) == 0 or exchange.status != 200:
            return []
        wait = _wait_of(query)
        recorded_full = exchange.elapsed_ms >= 0.9 * wait * 1000
        if recorded_full:
            if held is None:
                return ["answered at once; Consul blocked its whole wait"]
            if held.woken:
                return [
                    f"woken by a change {held.answered_at - held.held_at:.3f}s (Consul) into "
                    "its wait; Consul blocked its whole wait"
                ]
            if not wait <= held.wait <= wait * 17 / 16:
                return [f"held for a wait of {held.wait:.3f}s, not {wait}s plus up to 1/16"]
            return []
        if held is not None and not held.woken:
            return [f"blocked its whole wait ({held.wait:.3f}s Consul); Consul returned early"]
        return []

    def _index_move_problems(self, expected: HttpExchange, actual: Actual) -> list[str]:
        rec_index = expected.headers.get("X-Consul-Index")
        act_index = actual.headers.get("X-Consul-Index")
        if not (rec_index and act_index and rec_index != "0" and expected.status == 200):
            return []
        return self.index_history.check(self._index_key(expected), int(rec_index), int(act_index))

    def _compare(
        self, exchange: HttpExchange, actual: Actual, ran: Interval
    ) -> tuple[HttpExchange, list[str]]:
        """The recorded answer compared with, and the mismatches (content and blocking time).
        An exchange whose answer depends
        on when Consul answered (``golden_timed.py``) is compared with each answer Consul gives
        at that moment: none left if one matches (that one is returned), else every one's."""
        timed = timed_exchange(exchange)
        held = self._held(exchange, ran)
        if timed is None:
            ctx = CompareContext(exchange, self.rewrite_recorded, self.id_map)
            found = list(compare_exchange(exchange, actual, ctx, self.rules))
            return exchange, found + self._timing_problems(exchange, actual, held)
        wait_end = None if held is None else held.held_at + held.wait
        moment = Moment(ran, self.events.get(timed.event), wait_end)
        problems = []
        for answer, expected in possible_answers(timed, exchange, moment):
            ctx = CompareContext(expected, self.rewrite_recorded, self.id_map)
            found = list(compare_exchange(expected, actual, ctx, self.rules))
            found += self._timing_problems(expected, actual, held)
            found += self._index_move_problems(expected, actual)
            if not found:
                return expected, []
            problems += [f"[{answer.name}] {problem}" for problem in found]
        return exchange, [f"{timed.name}: no answer Consul gives at {moment} matched", *problems]

    async def run_exchange(self, exchange: HttpExchange, plan: FilePlan) -> ExchangeResult:
        if exchange.route.startswith("/v1/query") and not self.pq_available:
            return ExchangeResult(exchange.label, False, reason="prepared_query.py not available")
        poll_slack = plan.polls.get(exchange.position)
        deadline = time.monotonic() + (
            self.emulator.clock.scaled(poll_slack) + 1.0 if poll_slack is not None else 0.0
        )
        key = f"{exchange.file}#{exchange.position}"
        while True:
            sent = self.emulator.clock.consul_now()
            self.events[key] = Interval(sent, math.inf)
            actual = await self.send(exchange)
            self.events[key] = Interval(sent, self.emulator.clock.consul_now())
            expected, problems = self._compare(exchange, actual, self.events[key])
            if not problems or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.005)
        rec_index = expected.headers.get("X-Consul-Index")
        act_index = actual.headers.get("X-Consul-Index")
        if rec_index and act_index and rec_index != "0" and expected.status == 200:
            problems += self.index_history.observe(
                self._index_key(exchange), int(rec_index), int(act_index)
            )
        return ExchangeResult(exchange.label, True, problems)

    # ------------------------------------------------------------------ one file

    async def replay_file(self, recorded: RecordedFile, start_ms: float = 0.0) -> FileReport:
        plan = self.plans.get(recorded.name, FilePlan())
        self.emulator.time_scale = plan.time_scale
        self.index_history.new_file()
        report = FileReport(recorded.name)
        self.reports.append(report)
        if start_ms:
            await asyncio.sleep(start_ms / 1000 * plan.time_scale * self.speed)
        self._apply_notes(recorded)
        segments: list[list[Entry]] = []
        for entry in recorded.entries:
            if not segments or entry.position in plan.segment_starts:
                segments.append([])
            segments[-1].append(entry)
        for segment in segments:
            await self._replay_segment(segment, plan, report)
        report.http_total = len(recorded.http)
        report.http_compared = sum(
            1 for r in report.results if r.compared and not r.label.startswith("DNS ")
        )
        return report

    def _apply_notes(self, recorded: RecordedFile) -> None:
        """Notes stating an index the recorder had seen (``current X-Consul-Index ... = N``)."""
        self._pending_index_notes = []
        for entry in recorded.entries:
            found = re.search(
                r"current X-Consul-Index for (\S+) = (\d+)", str(entry.raw.get("note"))
            )
            if found:
                self._pending_index_notes.append((found.group(1), int(found.group(2))))

    async def _learn_index_notes(self) -> None:
        assert self._session is not None
        for path, recorded in self._pending_index_notes:
            url = self.emulator.dc("dc1").http_url + path
            async with self._session.get(url) as resp:
                actual = int(resp.headers["X-Consul-Index"])
            self.index_history.last[("dc1", path)] = (recorded, actual)
        self._pending_index_notes = []

    async def _replay_segment(
        self, entries: list[Entry], plan: FilePlan, report: FileReport
    ) -> None:
        if self._pending_index_notes:
            await self._learn_index_notes()
        items: list[tuple[float, float, Entry | Action]] = []
        for entry in entries:
            if entry.kind in ("http", "dns") and entry.send_ms is not None:
                assert entry.at_ms is not None
                items.append((entry.send_ms, entry.at_ms, entry))
            elif entry.kind == "dig":
                report.dns_total += 1
                report.results.append(
                    ExchangeResult(
                        f"DNS {entry.label}",
                        False,
                        reason="dig transcript (DNS): compared by test_golden_dns.py",
                    )
                )
            elif entry.kind != "note":
                report.results.append(
                    ExchangeResult(entry.label, False, reason=f"{entry.kind}: no timing")
                )
        positions = {e.position for e in entries}
        for action in plan.actions:
            if action.before in positions:
                items.append((action.at_ms, action.at_ms, action))
        items.sort(key=lambda item: item[0])
        done: dict[int, asyncio.Event] = {i: asyncio.Event() for i in range(len(items))}
        start = time.monotonic()
        scale = plan.time_scale * self.speed

        async def run_item(i: int) -> None:
            send, _at, item = items[i]
            deps = [
                done[j]
                for j, (_s, at_j, other) in enumerate(items)
                if j != i
                and (
                    at_j < send
                    or (at_j == send and j < i)
                    or (isinstance(other, Action) and other.before == getattr(item, "position", -1))
                )
            ]
            for event in deps:
                await event.wait()
            delay = start + send / 1000 * scale - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                if isinstance(item, Action):
                    await item.run(self)
                elif isinstance(item, HttpExchange):
                    report.results.append(await self.run_exchange(item, plan))
                else:
                    await self._run_dns(item, report)
            finally:
                done[i].set()

        await asyncio.gather(*(run_item(i) for i in range(len(items))))

    async def _run_dns(self, entry: Entry, report: FileReport) -> None:
        report.dns_total += 1
        if self.dns_handler is None:
            report.results.append(
                ExchangeResult(
                    f"DNS {entry.label}",
                    False,
                    reason="DNS exchange: compared by test_golden_dns.py",
                )
            )
            return
        problems = await self.dns_handler(entry, self)
        if problems is None:
            report.results.append(
                ExchangeResult(f"DNS {entry.label}", False, reason="DNS handler declined")
            )
            return
        report.dns_compared += 1
        report.results.append(ExchangeResult(f"DNS {entry.label}", True, problems))

    async def replay_all(self, until: str | None = None) -> list[FileReport]:
        """Replay every file in order (or up to and including the file named ``until``)."""
        done: set[str] = set()
        for recorded in self.files:
            if recorded.name in done:
                continue
            plan = self.plans.get(recorded.name, FilePlan())
            companion = None
            if plan.companion is not None:
                companion = next(
                    (f for f in self.files if f.name.startswith(plan.companion[0])), None
                )
            if companion is not None and plan.companion is not None:
                done.add(companion.name)
                await asyncio.gather(
                    self.replay_file(recorded, start_ms=plan.companion[1]),
                    self.replay_file(companion),
                )
            else:
                await self.replay_file(recorded)
            if until is not None and recorded.name.startswith(until):
                break
        self.reports.sort(key=lambda r: r.name)
        return self.reports


def _module_available(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def load_plugin_rules(book: RuleBook) -> None:
    """Rules contributed by other parts: every ``tests/golden/*prepared*.py`` module with a
    ``register_rules(book)`` function."""
    here = Path(__file__).parent
    for path in sorted(here.glob("*prepared*.py")):
        if path.name.startswith("test_"):
            continue
        module = importlib.import_module(path.stem)
        register = getattr(module, "register_rules", None)
        if register is not None:
            register(book)


def coverage_lines(reports: list[FileReport]) -> list[str]:
    """The coverage summary: exchanges compared / total per file, and why others were not."""
    lines = []
    total = compared = 0
    for report in reports:
        total += report.http_total
        compared += report.http_compared
        dns = f", DNS {report.dns_compared}/{report.dns_total}" if report.dns_total else ""
        lines.append(f"{report.name}: HTTP {report.http_compared}/{report.http_total}{dns}")
    lines.append(f"TOTAL HTTP exchanges compared: {compared}/{total}")
    for report in reports:
        for result in report.not_compared:
            lines.append(f"  not compared: {result.label}: {result.reason}")
    return lines


def dump(value: Any) -> str:
    return json.dumps(value, indent=1)[:2000]
