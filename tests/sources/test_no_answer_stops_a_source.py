"""The invariant, for every source, over hostile answer shapes served by real loopback servers:

no answer stops a source; a bad answer is rejected whole or instance by instance as documented
(wrong shapes whole, unusable instances one by one, an answer of nothing but unusable instances
whole), surfaced as ``error`` (and ``stale`` when rejected whole, the last good set kept), logged
once naming the agent or server; and the following good answer is published by the source
itself (no ``refresh_now()``).

Each test keeps one server (and client) for all its examples; each example starts a source,
serves a good answer A, the hostile answer, then a good answer B, awaiting each resolution (no
fixed sleeps). Hypothesis drives a synchronous test that runs each example on one
``asyncio.Runner``, so the servers outlive the examples.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcresolve.consul import ConsulClient, ConsulConfig, ConsulProtocolError
from mcresolve.consul.blocking import BlockingPolicy
from mcresolve.consul.models import (
    HealthAnswer,
    PreparedQueryResult,
    QueryMeta,
    parse_entries,
)
from mcresolve.consul.watch import WatchPolicy, WatchRegistry
from mcresolve.endpoint import Converted, endpoint_problem
from mcresolve.sources import (
    DnsCache,
    DnsSource,
    HealthSource,
    PreparedQuerySource,
    PublishingSource,
    Resolution,
    from_target,
)
from mcresolve.sources.base import AnswerRejected
from mcresolve.sources.target import DnsTarget, HealthTarget, PreparedQueryTarget, parse_target
from mcresolve.timing import BackoffPolicy

from .helpers import next_matching
from .scripted import DnsHandler, HttpAnswer, ScriptedConsul, ScriptedDns, srv_handler

FAST = BackoffPolicy(base=0.01, multiplier=2.0, cap=0.05)
WATCH = WatchPolicy(blocking=BlockingPolicy(wait=30.0, min_interval=0.005, burst=5), backoff=FAST)
EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Good answers use ports from these ranges, hostile ones never do: every hostile answer
#: differs from the good ones, so each of its outcomes is a new publication.
GOOD_A, GOOD_B = 10000, 30000
_example = itertools.count()


def ports(resolution: Resolution) -> set[int]:
    return {e.port for e in resolution.endpoints}


# --- what every example checks ----------------------------------------------------------------


class Records(logging.Handler):
    """The WARNING (and worse) records of the ``mcresolve`` loggers during one example."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def naming(self, agent: str) -> list[str]:
        return [m for m in (r.getMessage() for r in self.records) if agent in m]


@contextlib.contextmanager
def warnings() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("mcresolve")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@dataclass(frozen=True)
class Expect:
    """What the documented rules say a hostile answer must give."""

    kind: str  # "whole" (last good set kept, stale), "partial" or "fresh"
    endpoints: frozenset[tuple[str, int]] = frozenset()

    def matches(self, r: Resolution, last_good: set[int]) -> bool:
        keys = {e.key for e in r.endpoints}
        if self.kind == "whole":
            return r.stale and r.error is not None and ports(r) == last_good
        if self.kind == "partial":
            return r.partial and isinstance(r.error, AnswerRejected) and keys == self.endpoints
        return r.ok and keys == self.endpoints


def expect_of(converted: Converted) -> Expect:
    keys = frozenset(e.key for e in converted.endpoints)
    if converted.rejected_whole:
        return Expect("whole")
    return Expect("partial" if converted.rejected else "fresh", keys)


def check_surfaced(r: Resolution, expect: Expect, log: Records, agent: str) -> None:
    """The hostile answer's publication: every endpoint valid, the error named once in the log."""
    assert all(endpoint_problem(e.address, e.port) is None for e in r.endpoints)
    named = log.naming(agent)
    if expect.kind == "fresh":
        assert named == []
    else:
        assert len(named) == 1, named


async def alive(source: PublishingSource) -> None:
    assert source.restarts == 0  # handled by the loop, not by the crash safety net
    task = source._task
    assert task is None or not task.done()


# --- hostile JSON ------------------------------------------------------------------------------

BAD_PORTS = st.sampled_from([0, -1, 65536, 70000, 10**30, -(10**30), 2**63, 2**64 + 1])
PORTS = st.one_of(
    st.integers(20000, 29999),
    BAD_PORTS,
    st.integers(),
    st.floats(),
    st.text(max_size=6),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
BAD_ADDRESSES = st.sampled_from(
    [
        "",
        " ",
        "127.0.0.1\r\nX-Evil: 1",
        "10.0.0.1 ",
        "a b",
        "[::1]",
        "999.1.1.1",
        "münchen.example",
        "x" * 300,
        "fe80::1%eth 0",
        "\x00",
    ]
)
ADDRESSES = st.one_of(
    st.sampled_from(["127.0.0.1", "::1", "host_1.example", "fe80::1%eth0", "127.0.0.2"]),
    BAD_ADDRESSES,
    st.text(max_size=12),
    st.integers(),
    st.none(),
    st.lists(st.text(max_size=3), max_size=2),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


@st.composite
def entries(draw: st.DrawFn) -> Any:
    """One health entry, possibly with a hostile port or address, a wrong type or a key gone."""
    service: dict[str, Any] = {
        "ID": draw(st.one_of(st.text(max_size=10), JUNK)) if draw(st.booleans()) else "svc",
        "Service": "web",
        "Port": draw(PORTS),
        "Address": draw(st.one_of(st.just(""), ADDRESSES)),
        "Tags": draw(st.one_of(st.none(), st.lists(st.text(max_size=5), max_size=2), JUNK)),
        "Meta": draw(
            st.one_of(st.none(), st.dictionaries(st.text(max_size=4), st.text(max_size=4)))
        ),
    }
    node: dict[str, Any] = {
        "Node": draw(st.one_of(st.text(max_size=10), st.just("n\r\n1"), JUNK)),
        "Address": draw(ADDRESSES),
        "Datacenter": draw(st.one_of(st.just("dc1"), st.text(max_size=5), JUNK)),
    }
    entry: dict[str, Any] = {"Node": node, "Service": service, "Checks": []}
    for obj in (entry, node, service):
        for key in draw(st.sets(st.sampled_from(sorted(obj)), max_size=1)):
            del obj[key]
    return draw(st.one_of(st.just(entry), st.just(entry), st.just(entry), JUNK))


def healthy(port: int, name: str, address: str = "127.0.0.1") -> dict[str, Any]:
    return {
        "Node": {"Node": name, "Address": address, "Datacenter": "dc1"},
        "Service": {"ID": f"web-{name}", "Service": "web", "Port": port, "Tags": ["x"]},
        "Checks": [],
    }


@st.composite
def entry_lists(draw: st.DrawFn) -> Any:
    """A health answer's list: hostile entries among usable ones, or a great many of them."""
    listed = draw(st.lists(entries(), max_size=6))
    usable = [healthy(20000 + i, f"ok{i}") for i in range(draw(st.integers(0, 3)))]
    if draw(st.integers(0, 9)) == 0:  # a huge count
        usable += [healthy(21000 + i, f"many{i}") for i in range(2000)]
    mixed = listed + usable
    return draw(st.permutations(mixed)) if len(mixed) < 10 else mixed


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


BODIES = st.one_of(
    entry_lists().map(lambda v: json.dumps(v).encode()),
    entry_lists().map(lambda v: json.dumps(v).encode()),
    JUNK.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([100, 5_000, 200_000]).map(deep),
    st.binary(max_size=40),
    st.just(b'[{"Node": "' + b"x" * 2_000_000 + b'"}]'),  # an oversized string
    st.just(b"\xef\xbb\xbf[]"),
)
HEADERS = st.one_of(
    st.just({}),
    st.just({}),
    st.sampled_from(["", "abc", "-5", "9" * 40, "1.5"]).map(lambda v: {"X-Consul-Index": v}),
)
STATUS = st.sampled_from([200, 200, 200, 200, 404, 429, 500])


@st.composite
def http_answers(draw: st.DrawFn, body: st.SearchStrategy[bytes] = BODIES) -> HttpAnswer:
    return HttpAnswer(draw(body), draw(STATUS), draw(HEADERS))


def header_ok(answer: HttpAnswer, blocking: bool) -> bool:
    index = answer.headers.get("X-Consul-Index")
    if index is None:
        return True
    if index == "":
        return not blocking
    return index.isdigit()


def json_of(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return ConsulProtocolError("not JSON")


def expect_health(answer: HttpAnswer) -> Expect:
    if answer.status != 200 or not header_ok(answer, blocking=True):
        return Expect("whole")
    body = json_of(answer.body)
    try:
        listed = parse_entries(body)
    except ConsulProtocolError:
        return Expect("whole")
    return expect_of(HealthAnswer.decode(listed).converted)


def expect_query(answer: HttpAnswer) -> Expect:
    if answer.status != 200 or not header_ok(answer, blocking=False):
        return Expect("whole")
    body = json_of(answer.body)
    try:
        result = PreparedQueryResult.from_json(body, QueryMeta())
    except ConsulProtocolError:
        return Expect("whole")
    return expect_of(result.convert())


def health_body(base: int, count: int = 2) -> HttpAnswer:
    return HttpAnswer(json.dumps([healthy(base + i, f"g{i}") for i in range(count)]).encode())


def query_body(listed: object, datacenter: object = "dc1") -> bytes:
    return json.dumps(
        {"Service": "web", "Nodes": listed, "DNS": {"TTL": ""}, "Datacenter": datacenter}
    ).encode()


@st.composite
def query_answers(draw: st.DrawFn) -> HttpAnswer:
    """A prepared-query execute answer: hostile nodes, or a hostile top-level shape."""
    shape = draw(st.integers(0, 3))
    if shape == 0:
        body = query_body(draw(entry_lists()))
    elif shape == 1:
        top: dict[str, Any] = json.loads(query_body(draw(entry_lists())))
        top[draw(st.sampled_from(sorted(top)))] = draw(JUNK)
        body = json.dumps(top).encode()
    elif shape == 2:
        body = query_body(draw(entry_lists()), draw(JUNK))
    else:
        body = draw(BODIES)
    return HttpAnswer(body, draw(STATUS), draw(HEADERS))


# --- the servers, one per test ----------------------------------------------------------------


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@dataclass
class Http:
    consul: ScriptedConsul
    client: ConsulClient
    registry: WatchRegistry


@pytest.fixture(scope="module")
def http(runner: asyncio.Runner) -> Iterator[Http]:
    async def start() -> Http:
        consul = ScriptedConsul()
        await consul.start()
        config = ConsulConfig.for_addresses(consul.url, connect_timeout=0.5, request_timeout=3.0)
        client = ConsulClient(config)
        return Http(consul, client, WatchRegistry(client, WATCH))

    env = runner.run(start())
    yield env

    async def stop() -> None:
        await env.registry.aclose()
        await env.client.close()
        await env.consul.stop()

    runner.run(stop())


@pytest.fixture(scope="module")
def dns_server(runner: asyncio.Runner) -> Iterator[ScriptedDns]:
    server = ScriptedDns()
    runner.run(server.start())
    yield server
    runner.run(server.stop())


# --- stage 2 -----------------------------------------------------------------------------------


@EXAMPLES
@given(hostile=http_answers())
def test_health_source(runner: asyncio.Runner, http: Http, hostile: HttpAnswer) -> None:
    runner.run(health_example(http, hostile))


async def health_example(http: Http, hostile: HttpAnswer) -> None:
    n = next(_example) % 100 * 10
    a, b = GOOD_A + n, GOOD_B + n
    target = parse_target("consul://web")
    assert isinstance(target, HealthTarget)
    expect = expect_health(hostile)
    http.consul.set_health(health_body(a))
    async with HealthSource(target, http.registry) as source:
        await next_matching(source, lambda r: r.ok and ports(r) == {a, a + 1})
        with warnings() as log:
            http.consul.set_health(hostile)
            r = await next_matching(source, lambda r: expect.matches(r, {a, a + 1}))
            check_surfaced(r, expect, log, http.consul.url)
            http.consul.set_health(health_body(b))
            await next_matching(source, lambda r: r.ok and ports(r) == {b, b + 1})


# --- stage 3 -----------------------------------------------------------------------------------


@EXAMPLES
@given(hostile=query_answers())
def test_prepared_query_source(runner: asyncio.Runner, http: Http, hostile: HttpAnswer) -> None:
    runner.run(query_example(http, hostile))


async def query_example(http: Http, hostile: HttpAnswer) -> None:
    n = next(_example) % 100 * 10
    a, b = GOOD_A + n, GOOD_B + n
    target = parse_target("consul+query://web?refresh=0.05s")
    assert isinstance(target, PreparedQueryTarget)
    expect = expect_query(hostile)
    http.consul.query = HttpAnswer(query_body([healthy(a, "g0"), healthy(a + 1, "g1")]))
    source = PreparedQuerySource(target, http.client, None, backoff=FAST, min_interval=0.0)
    async with source:
        await next_matching(source, lambda r: r.ok and ports(r) == {a, a + 1})
        with warnings() as log:
            http.consul.query = hostile
            r = await next_matching(source, lambda r: expect.matches(r, {a, a + 1}))
            check_surfaced(r, expect, log, http.consul.url)
            http.consul.query = HttpAnswer(query_body([healthy(b, "g0"), healthy(b + 1, "g1")]))
            await next_matching(source, lambda r: r.ok and ports(r) == {b, b + 1})
        await alive(source)


# --- stage 1 -----------------------------------------------------------------------------------

_LABEL = st.binary(min_size=1, max_size=63)


@st.composite
def srv_targets(draw: st.DrawFn) -> dns.name.Name | str:
    """An SRV target: a known node, the root (RFC 2782's "not here"), an unknown name, or
    arbitrary bytes in its labels (spaces, dots, NUL, UTF-8...)."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return f"h{draw(st.integers(0, 3))}.node.dc1.consul."
    if kind == 1:
        return "."
    if kind == 2:
        return f"unknown{draw(st.integers(0, 9))}.example."
    labels = draw(st.lists(_LABEL, min_size=1, max_size=3))
    return dns.name.Name([*labels, b""])


HOSTS = {f"h{i}.node.dc1.consul.": [f"127.0.0.{i + 1}"] for i in range(4)}


def garbage(data: bytes) -> DnsHandler:
    def handle(query: dns.message.Message, _transport: str) -> bytes:
        return query.id.to_bytes(2, "big") + data

    return handle


def rcode(code: dns.rcode.Rcode) -> DnsHandler:
    def handle(query: dns.message.Message, _transport: str) -> bytes:
        response = dns.message.make_response(query)
        response.set_rcode(code)
        return response.to_wire()

    return handle


def silent(_query: dns.message.Message, _transport: str) -> bytes | None:
    return None


@dataclass(frozen=True)
class DnsScript:
    handler: DnsHandler
    port_zero: bool  # an SRV record with port 0 and a real target: must be surfaced
    description: str

    def __repr__(self) -> str:
        return self.description


@st.composite
def dns_scripts(draw: st.DrawFn) -> DnsScript:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        data = draw(st.binary(max_size=60))
        return DnsScript(garbage(data), False, f"garbage {data!r}")
    if kind == 1:
        code = draw(st.sampled_from([dns.rcode.SERVFAIL, dns.rcode.NXDOMAIN, dns.rcode.REFUSED]))
        return DnsScript(rcode(code), False, f"rcode {code!r}")
    if kind == 2:
        return DnsScript(silent, False, "silent")
    count = draw(st.sampled_from([0, 1, 2, 5, 600])) if kind == 3 else draw(st.integers(0, 8))
    records = [
        (draw(st.sampled_from([0, 0, 1, 65535]) | st.integers(20000, 29999)), draw(srv_targets()))
        for _ in range(min(count, 8))
    ]
    if count > 8:  # a huge count: every record valid, addresses in the additional section
        records += [(20000 + i, f"h{i % 4}.node.dc1.consul.") for i in range(count)]
    ttl = draw(st.sampled_from([0, 1, 86400, 2147483647]) | st.integers(0, 2**31 - 1))
    additional = draw(st.booleans())
    port_zero = any(p == 0 and str(t) != "." for p, t in records)
    handler = srv_handler(records, HOSTS, ttl, additional=additional)
    return DnsScript(handler, port_zero, f"srv {records!r} ttl={ttl} additional={additional}")


@EXAMPLES
@given(script=dns_scripts())
def test_dns_source(runner: asyncio.Runner, dns_server: ScriptedDns, script: DnsScript) -> None:
    runner.run(dns_example(dns_server, script))


async def dns_example(server: ScriptedDns, script: DnsScript) -> None:
    n = next(_example) % 100 * 10
    a, b = GOOD_A + n, GOOD_B + n
    target = parse_target(
        f"dns://web.service.consul?server={server.address}&refresh=0.05s&ttl-floor=0"
        "&timeout=0.3s&transport=auto"
    )
    assert isinstance(target, DnsTarget)
    now = [0.0]
    cache = DnsCache(timer=lambda: now[0])
    good = [(a, "h0.node.dc1.consul."), (a + 1, "h1.node.dc1.consul.")]
    server.handler = srv_handler(good, HOSTS)
    async with DnsSource(target, cache=cache, backoff=FAST) as source:
        await next_matching(source, lambda r: r.ok and ports(r) == {a, a + 1})
        with warnings() as log:
            server.handler = script.handler
            r = await next_matching(source, lambda r: not (r.ok and ports(r) == {a, a + 1}))
            assert all(endpoint_problem(e.address, e.port) is None for e in r.endpoints)
            if r.stale:
                assert ports(r) == {a, a + 1} and r.error is not None
            else:
                assert not ports(r) & {a, a + 1}
                assert all(20000 <= p < 30000 or p in (1, 65535) for p in ports(r))
            if script.port_zero:
                assert r.error is not None
            if r.error is not None:
                assert len(log.naming(server.address)) == 1, log.naming(server.address)
            server.handler = srv_handler(
                [(b, "h2.node.dc1.consul."), (b + 1, "h3.node.dc1.consul.")], HOSTS
            )
            now[0] += 31.0  # past the TTL cap: whatever the hostile answer's TTL was
            await next_matching(source, lambda r: r.ok and ports(r) == {b, b + 1})
        await alive(source)


# --- the composite: snapshot file and fallback -------------------------------------------------

SNAPSHOT_ENDPOINT = st.fixed_dictionaries(
    {"address": ADDRESSES, "port": PORTS},
    optional={"node": JUNK, "tags": JUNK, "meta": JUNK, "datacenter": JUNK},
)
SNAPSHOTS = st.one_of(
    st.fixed_dictionaries(
        {
            "version": st.one_of(st.just(1), JUNK),
            "target": st.just("@target@"),
            "endpoints": st.one_of(st.lists(SNAPSHOT_ENDPOINT, max_size=4), JUNK),
            "resolved_at": st.one_of(st.floats(), st.integers(), JUNK),
        },
        optional={"datacenter": JUNK, "source": JUNK},
    ).map(lambda v: json.dumps(v).encode()),
    JUNK.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=40),
    st.sampled_from([100, 200_000]).map(deep),
)


@EXAMPLES
@given(snapshot=SNAPSHOTS, hostile=http_answers(), fallback=st.booleans())
def test_composite_source(
    runner: asyncio.Runner, http: Http, snapshot: bytes, hostile: HttpAnswer, fallback: bool
) -> None:
    runner.run(composite_example(http, snapshot, hostile, fallback))


async def composite_example(http: Http, snapshot: bytes, hostile: HttpAnswer, fb: bool) -> None:
    n = next(_example) % 100 * 10
    a, b = GOOD_A + n, GOOD_B + n
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "web.json"
        option = "&fallback=static://127.0.0.1:1" if fb else ""
        http.consul.set_health(health_body(a))
        source = from_target(f"consul://web?snapshot={path}{option}", registry=http.registry)
        assert isinstance(source, PublishingSource)
        path.write_bytes(snapshot.replace(b'"@target@"', json.dumps(source.description).encode()))
        async with source:
            first = await next_matching(source, lambda r: not r.stale or bool(r.endpoints))
            assert all(endpoint_problem(e.address, e.port) is None for e in first.endpoints)
            await next_matching(source, lambda r: r.ok and ports(r) == {a, a + 1})
            expect = expect_health(hostile)
            http.consul.set_health(hostile)
            # an empty answer right after a non-empty one is held as suspect (the arbiter's rule)
            held = expect.kind == "fresh" and not expect.endpoints
            r = await next_matching(
                source,
                lambda r: (
                    r.suspect_empty and r.stale and ports(r) == {a, a + 1}
                    if held
                    else expect.matches(r, {a, a + 1})
                ),
            )
            assert not r.fallback  # a last good set exists: no fallback
            http.consul.set_health(health_body(b))
            await next_matching(source, lambda r: r.ok and ports(r) == {b, b + 1})
        saved = json.loads(path.read_text())  # the good answer replaced the hostile file
        assert {e["port"] for e in saved["endpoints"]} == {b, b + 1}


@EXAMPLES
@given(hostile=http_answers())
def test_fallback_engages_when_the_first_answer_is_bad(
    runner: asyncio.Runner, http: Http, hostile: HttpAnswer
) -> None:
    runner.run(fallback_example(http, hostile))


async def fallback_example(http: Http, hostile: HttpAnswer) -> None:
    n = next(_example) % 100 * 10
    b = GOOD_B + n
    expect = expect_health(hostile)
    http.consul.set_health(hostile)
    source = from_target("consul://web?fallback=static://127.0.0.1:1", registry=http.registry)
    assert isinstance(source, PublishingSource)
    async with source:
        if expect.kind == "whole":  # nothing usable yet: the fallback's endpoints, with the error
            r = await next_matching(source, lambda r: r.fallback)
            assert ports(r) == {1} and r.error is not None
        else:  # the primary answers (maybe with nothing, maybe without some instances)
            r = await next_matching(source, lambda r: expect.matches(r, set()))
            assert not r.fallback
        http.consul.set_health(health_body(b))
        back = await next_matching(source, lambda r: r.ok and ports(r) == {b, b + 1})
        assert not back.fallback


# --- the pure rule ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(address=ADDRESSES, port=PORTS)
def test_endpoint_problem_is_total_and_agrees_with_endpoint(address: object, port: object) -> None:
    from mcresolve.endpoint import Endpoint, InvalidEndpoint

    problem = endpoint_problem(address, port)
    assert problem is None or (isinstance(problem, str) and len(problem) < 200)
    try:
        endpoint = Endpoint(address, port)  # type: ignore[arg-type]
    except InvalidEndpoint:
        assert problem is not None
    else:
        assert problem is None
        assert "\r" not in endpoint.host_port and " " not in endpoint.host_port
