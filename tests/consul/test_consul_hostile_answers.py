"""Invariant: whatever an agent answers, the client returns a well-typed value or raises a
:class:`ConsulError` subclass, never anything else.

A raw loopback TCP server (one for every example) writes bytes the example chose: any status
line (1xx to 9xx, garbage), hostile headers (``X-Consul-Index: -1``, ``abc``, ``2**80``...,
wrong ``Content-Length``, bad chunking, bogus gzip), and bodies of wrong JSON types, hostile
field values, huge numbers, ``NaN``, deep nesting, truncated JSON or binary. A raw server, not
aiohttp's, so that even framing aiohttp's server would refuse to produce can be sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mcresolve.consul import (
    ConsulClient,
    ConsulConfig,
    ConsulError,
    Indexed,
    PreparedQueryResult,
    ServiceEntry,
)


@dataclass
class Script:
    """What the server writes on the next connection, and whether it then holds the
    connection open (until the client closes it) instead of closing it."""

    raw: bytes = b""
    hold: bool = False


class RawAgent:
    """A TCP server on 127.0.0.1 that answers every request with :attr:`script`."""

    def __init__(self) -> None:
        self.script = Script()
        self.requests = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")  # the request head (the calls send no body)
            self.requests += 1
            writer.write(self.script.raw)
            await writer.drain()
            if self.script.hold:
                await reader.read()  # until the client gives up and closes the connection
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


# --- strategies ----------------------------------------------------------------------------

HOSTILE_NUMBERS = st.sampled_from(
    [-1, 0, 70000, 65536, 2**31, 2**63, 2**80, 10**30, 1.5, -0.0, 1e308, True, None, "80", ""]
)
JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    HOSTILE_NUMBERS,
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _maybe(value: Any, hostile: st.DataObject) -> Any:
    """``value``, or (sometimes) a hostile replacement."""
    if hostile.draw(st.integers(0, 5)) == 0:
        return hostile.draw(st.one_of(JSON_VALUES, HOSTILE_NUMBERS))
    return value


@st.composite
def health_entries(draw: st.DrawFn) -> Any:
    data = draw(st.data())
    entries = []
    for i in range(draw(st.integers(0, 3))):
        node = {"Node": f"n{i}", "Address": "127.0.0.1", "Datacenter": "dc1", "Meta": {}}
        service = {
            "ID": f"s{i}",
            "Service": "web",
            "Address": _maybe("127.0.0.1", data),
            "Port": draw(st.one_of(st.integers(1, 65535), HOSTILE_NUMBERS)),
            "Tags": _maybe(["a"], data),
            "Meta": _maybe({"k": "v"}, data),
        }
        checks = [{"CheckID": "c", "Status": _maybe("passing", data), "ServiceID": f"s{i}"}]
        entry = {"Node": _maybe(node, data), "Service": _maybe(service, data)}
        entry["Checks"] = _maybe(checks, data)
        entries.append(_maybe(entry, data))
    return entries


@st.composite
def query_answers(draw: st.DrawFn) -> Any:
    data = draw(st.data())
    return {
        "Service": _maybe("web", data),
        "Nodes": _maybe(draw(health_entries()), data),
        "DNS": _maybe({"TTL": _maybe("10s", data)}, data),
        "Datacenter": _maybe("dc1", data),
        "Failovers": _maybe(0, data),
    }


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


SPECIAL_BODIES = st.sampled_from(
    [
        b"[" * 200_000 + b"]" * 200_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b"[NaN]",
        b'{"Port": Infinity}',
        b"[" + b"9" * 5000 + b"]",
        b"",
        b"\x00\xff\xfe",
        b"\xef\xbb\xbf[]",
        b"null",
        b"[]" * 3,
    ]
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["health", "query", "json", "special", "binary", "cut"]))
    if kind == "health":
        return _json_bytes(draw(health_entries()))
    if kind == "query":
        return _json_bytes(draw(query_answers()))
    if kind == "json":
        return _json_bytes(draw(JSON_VALUES))
    if kind == "special":
        return draw(SPECIAL_BODIES)
    if kind == "binary":
        return draw(st.binary(max_size=64))
    whole = _json_bytes(draw(st.one_of(health_entries(), query_answers())))
    return whole[: draw(st.integers(0, max(len(whole) - 1, 0)))]


STATUS_LINES = st.one_of(
    st.just(b"HTTP/1.1 200 OK\r\n"),
    st.integers(100, 999).map(lambda s: f"HTTP/1.1 {s} X\r\n".encode()),
    st.sampled_from([200, 200, 204, 301, 307, 404, 500]).map(
        lambda s: f"HTTP/1.1 {s} X\r\n".encode()
    ),
    st.sampled_from(
        [
            b"HTTP/1.1 2000 OK\r\n",
            b"HTTP/1.1 abc OK\r\n",
            b"HTTP/1.0 200\r\n",
            b"HTTP/2 200 OK\r\n",
            b"garbage\r\n",
            b"\r\n",
            b"HTTP/1.1 200 OK\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n",
        ]
    ),
)
HEADER_VALUES = st.sampled_from(
    ["-1", "abc", str(2**80), "", "1_000", " 7 ", "1e3", "\u0663", "9" * 5000, "0", "12", "true"]
)
OPTIONAL_HEADERS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "X-Consul-Index",
                "X-Consul-KnownLeader",
                "X-Consul-LastContact",
                "X-Consul-Effective-Consistency",
                "X-Cache",
                "Age",
                "Content-Type",
                "Location",
                "Content-Encoding",
            ]
        ),
        st.one_of(
            HEADER_VALUES,
            st.sampled_from(["gzip", "text/html", "http://127.0.0.2:1/x", "br", "deflate"]),
        ),
    ),
    max_size=3,
)


@st.composite
def answers(draw: st.DrawFn) -> Script:
    status = draw(STATUS_LINES)
    headers = []
    if draw(st.integers(0, 3)):
        headers.append(f"X-Consul-Index: {draw(st.integers(0, 2**64))}")
    headers += [f"{k}: {v}" for k, v in draw(OPTIONAL_HEADERS)]
    body = draw(bodies())
    framing = draw(
        st.sampled_from(["length"] * 4 + ["chunked"] * 2 + ["close", "wrong-length", "bad-chunks"])
    )
    if framing == "length":
        headers.append(f"Content-Length: {len(body)}")
    elif framing == "wrong-length":
        value = draw(st.one_of(st.integers(-5, len(body) + 100).map(str), HEADER_VALUES))
        headers.append(f"Content-Length: {value}")
    elif framing in ("chunked", "bad-chunks"):
        headers.append("Transfer-Encoding: chunked")
        size = draw(st.integers(1, 4096))
        pieces = [body[i : i + size] for i in range(0, len(body), size)]
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
        if framing == "chunked":
            body += b"0\r\n\r\n"
        else:
            body = body[: draw(st.integers(0, len(body)))] + draw(
                st.sampled_from([b"", b"zz\r\n", b"-1\r\n", b"ffffffffffffffffff\r\n"])
            )
    raw = status + "".join(h + "\r\n" for h in headers).encode() + b"\r\n" + body
    hold = framing != "close" and draw(st.integers(0, 5)) == 0
    return Script(raw=raw, hold=hold)


CALLS = ["health", "health-blocking", "query", "agent-self"]
GOOD = b"HTTP/1.1 200 OK\r\nX-Consul-Index: 7\r\nContent-Length: 2\r\n\r\n[]"
DEEP = b"HTTP/1.1 200 OK\r\nX-Consul-Index: 7\r\n\r\n" + b"[" * 200_000 + b"]" * 200_000


async def _call(consul: ConsulClient, call: str) -> None:
    """Run one call and check the type of what it returns."""
    if call == "health":
        result: Any = await consul.health_service("web", passing=True)
    elif call == "health-blocking":
        result = await consul.health_service("web", passing=True, index=1, wait=0.01)
    elif call == "query":
        result = await consul.query_execute("web")
    else:
        result = await consul.agent_self()
    if call.startswith("health"):
        assert isinstance(result, Indexed) and isinstance(result.value, tuple)
        assert all(isinstance(e, ServiceEntry) for e in result.value)
        if call == "health-blocking":
            assert isinstance(result.meta.index, int) and result.meta.index >= 0
    elif call == "query":
        assert isinstance(result, PreparedQueryResult)
    else:
        assert isinstance(result, dict)


def test_no_answer_makes_the_client_raise_anything_but_a_consul_error() -> None:
    loop = asyncio.new_event_loop()
    agent = RawAgent()
    loop.run_until_complete(agent.start())
    outcomes: dict[str, int] = {}

    async def exchange(script: Script, call: str) -> None:
        agent.script = script
        config = ConsulConfig.for_addresses(
            f"127.0.0.1:{agent.port}", request_timeout=3.0, body_idle_timeout=0.5
        )
        async with ConsulClient(config) as consul:
            try:
                await _call(consul, call)
            except ConsulError as error:
                name = type(error).__name__
                outcomes[name] = outcomes.get(name, 0) + 1
                str(error)  # rendering the error must not fail either
            else:
                outcomes["value"] = outcomes.get("value", 0) + 1

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(answers(), st.sampled_from(CALLS))
    @example(Script(GOOD), "health-blocking")
    @example(Script(DEEP), "health")
    def check(script: Script, call: str) -> None:
        if call == "health-blocking":
            script.hold = False  # a held blocking call would only wait for its 3 s timeout
        loop.run_until_complete(exchange(script, call))

    try:
        check()
    finally:
        loop.run_until_complete(agent.stop())
        loop.close()
    # The examples reached the client's different verdicts, not one error path only.
    assert outcomes.get("value", 0) > 0 and len(outcomes) >= 4, outcomes
