"""Golden replay of Consul's DNS interface: every DNS exchange (and dig text) of 07_dns.json and
10_dc2_failure.json against the emulator, brought into the recorded state by replaying every
recorded write (PUT/POST/DELETE) of all golden files in order, over its real HTTP API.

Things the recorder did outside the recorded HTTP exchanges are reproduced:

* the HTTP check of ``minio-dc1-http`` pointed at a stub whose status code the recorder switched;
  the registration is redirected to a local stub here, whose status follows the health
  situation named in each step (``[ALL dc1 critical]`` -> 500, ``[ALL dc1 warning]`` -> 429 ...);
* the dc2 agent was SIGKILLed in 10 (``consul.stop_agent("dc2")`` here);
* minutes passed between files (Consul's anti-entropy restored ``minio-dc1-b`` and removed
  ``minio-dc1-ghost`` after 09): the emulator runs with a small anti-entropy interval and the
  replay waits for that sync before going on.

Answers are compared by rule (see :mod:`mcresolve.testing.consul.dns_golden`).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mcresolve.testing.consul import ConsulEmulator
from mcresolve.testing.consul.agent import AgentConfig
from mcresolve.testing.consul.dns_golden import (
    RecordedQuestion,
    compare_dig,
    compare_response,
    dig_query,
    known_srv_instances,
)
from mcresolve.testing.consul.golden_files import golden_dir
from support import until

GOLDEN = golden_dir()
FILES = sorted(p.name for p in GOLDEN.glob("[0-9][0-9]*.json"))
DNS_FILES = ("07_dns.json", "10_dc2_failure.json")
HTTP_HOSTS = {"127.0.0.1:8520": "dc1", "127.0.0.1:8530": "dc2"}
DNS_SERVERS = {"127.0.0.1:8620": "dc1", "127.0.0.1:8630": "dc2"}
STUB_HOST = "127.0.0.1:18080"
HTTP_CHECK = "minio-dc1-http-check"
SERVICE = "storage-object-minio"
# Emulator time runs 20x faster: the HTTP check (2 s) runs every 100 ms, anti-entropy
# (configured to 2 s) every 100 ms; the 15 min TTL checks last 45 s, far longer than the replay.
TIME_SCALE = 0.05
DEADLINE = 20.0

# HTTP stub status (and the check status it gives) for each health situation of the recordings
PHASES: list[tuple[str, int, str]] = [
    ("[all passing]", 200, "passing"),
    ("[a critical, b warning]", 200, "passing"),
    ("[ALL dc1 critical]", 500, "critical"),
    ("[ALL dc1 warning]", 429, "warning"),
    ("[ALL critical everywhere]", 500, "critical"),
    ("[restored]", 200, "passing"),
    ("[before kill]", 500, "critical"),
    ("after kill", 500, "critical"),
    ("[dc1 restored]", 200, "passing"),
]


def load(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((GOLDEN / name).read_text())
    return data


class Stub:
    """The HTTP health endpoint the ``minio-dc1-http`` check polls; status set by the test."""

    def __init__(self) -> None:
        self.status = 200
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            return web.Response(status=self.status, text=f"stub {self.status}")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def udp_exchange(wire: bytes, port: int) -> bytes:
    loop = asyncio.get_running_loop()
    received: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if not received.done():
                received.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    try:
        for _attempt in range(5):
            transport.sendto(wire)
            try:
                return await asyncio.wait_for(asyncio.shield(received), 2.0)
            except TimeoutError:
                continue
        raise AssertionError(f"no UDP answer from 127.0.0.1:{port}")
    finally:
        transport.close()


async def tcp_exchange(wire: bytes, port: int) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        writer.write(len(wire).to_bytes(2, "big") + wire)
        await writer.drain()
        length = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 5), "big")
        return await asyncio.wait_for(reader.readexactly(length), 5)
    finally:
        writer.close()


class Replay:
    def __init__(self, consul: ConsulEmulator, http: aiohttp.ClientSession, stub: Stub) -> None:
        self.consul = consul
        self.http = http
        self.stub = stub
        self.query_ids: dict[str, str] = {}
        self.phase: str | None = None
        self.write_mismatches: list[str] = []
        self.compared = {"dns": 0, "dig": 0}
        self.problems: list[str] = []
        self.known = known_srv_instances(load(name) for name in DNS_FILES)

    def _ids(self, text: str) -> str:
        for recorded, emulated in self.query_ids.items():
            text = text.replace(recorded, emulated)
        return text

    async def write(self, file: str, index: int, item: dict[str, Any]) -> None:
        request = item["request"]
        dc = self.consul.dc(HTTP_HOSTS[request["host"]])
        url = dc.http_url + self._ids(request["path"])
        if "body" in request:
            text = json.dumps(request["body"]).replace(STUB_HOST, self.stub.url)
            data: bytes | None = self._ids(text).encode()
        elif "body_raw" in request:
            data = str(request["body_raw"]).encode()
        else:
            data = None
        async with self.http.request(request["method"], url, data=data) as response:
            body = await response.read()
        recorded = item["response"]
        if response.status != recorded["status"]:
            self.write_mismatches.append(f"{file}#{index} {response.status}")
        if (
            request["method"] == "POST"
            and request["path"].split("?")[0] == "/v1/query"
            and response.status == 200
        ):
            self.query_ids[recorded["body"]["ID"]] = json.loads(body)["ID"]

    async def enter_phase(self, step: str) -> None:
        found = [phase for phase in PHASES if phase[0] in step]
        if not found:
            return
        marker, stub_status, check_status = found[0]
        if marker == self.phase:
            return
        self.phase = marker
        self.stub.status = stub_status
        dc1 = self.consul.dc("dc1")

        def http_check_settled() -> bool:
            for entry in dc1.health_service(SERVICE):
                for check in entry["Checks"]:
                    if check["CheckID"] == HTTP_CHECK:
                        return bool(check["Status"] == check_status)
            return True

        await until(
            http_check_settled, within=DEADLINE, what=f"{HTTP_CHECK} to turn {check_status}"
        )

    async def anti_entropy_after_09(self) -> None:
        dc1 = self.consul.dc("dc1")

        def synced() -> bool:
            ids = {entry["Service"]["ID"] for entry in dc1.health_service(SERVICE)}
            return "minio-dc1-b" in ids and "minio-dc1-ghost" not in ids

        await until(
            synced,
            within=DEADLINE,
            what="anti-entropy to restore minio-dc1-b and drop minio-dc1-ghost",
        )

    async def ask(self, question: RecordedQuestion, wire: bytes) -> bytes:
        dc = self.consul.dc(DNS_SERVERS[question.server])
        if question.transport == "tcp":
            return await tcp_exchange(wire, dc.dns_port)
        return await udp_exchange(wire, dc.dns_port)

    async def dns(self, file: str, index: int, item: dict[str, Any]) -> None:
        await self.enter_phase(item["step"])
        recorded = RecordedQuestion.from_exchange(item)
        question = RecordedQuestion(
            recorded.server,
            self._ids(recorded.qname),
            recorded.qtype,
            recorded.transport,
            recorded.rd,
            recorded.edns_payload,
        )
        wire = await self.ask(question, question.to_message().to_wire())
        expected = json.loads(self._ids(json.dumps(item["dns_response"])))
        problems = compare_response(expected, wire, known_instances=self.known, now=time.time())
        self.problems += [f"{file}#{index} {item['step']}: {p}" for p in problems]
        self.compared["dns"] += 1

    async def dig(self, file: str, index: int, item: dict[str, Any]) -> None:
        await self.enter_phase(item["step"])
        question = RecordedQuestion.from_dig(item)
        wire = await self.ask(question, dig_query(question).to_wire())
        problems = compare_dig(item["dig_output"], wire)
        self.problems += [f"{file}#{index} {item['step']}: {p}" for p in problems]
        self.compared["dig"] += 1


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    server = Stub()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def totals() -> tuple[int, int]:
    recordings = [load(name) for name in DNS_FILES]
    dns_total = sum(1 for items in recordings for item in items if "dns_request" in item)
    dig_total = sum(1 for items in recordings for item in items if "dig_command" in item)
    return dns_total, dig_total


async def test_golden_dns_replay(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    assert FILES, f"no golden files in {GOLDEN}"
    config = AgentConfig(anti_entropy_interval=2.0)
    consul = ConsulEmulator(
        ["dc1", "dc2"], rtt_ms={("dc1", "dc2"): 1.0}, time_scale=TIME_SCALE, agent_config=config
    )
    async with consul, aiohttp.ClientSession() as http:
        replay = Replay(consul, http, stub)
        for file in FILES:
            if file > "10_dc2_failure.json":
                break
            for index, item in enumerate(load(file)):
                request = item.get("request")
                if request is not None and request["method"] != "GET":
                    await replay.write(file, index, item)
                elif "dns_request" in item:
                    await replay.dns(file, index, item)
                elif "dig_command" in item:
                    await replay.dig(file, index, item)
                elif "note" in item and re.search(r"SIGKILL", str(item["note"])):
                    await consul.stop_agent("dc2")
            if file.startswith("09_"):
                await replay.anti_entropy_after_09()

    dns_total, dig_total = totals()
    with capsys.disabled():
        print(
            f"\nDNS golden coverage: {replay.compared['dns']}/{dns_total} DNS exchanges and "
            f"{replay.compared['dig']}/{dig_total} dig outputs compared "
            f"({len(replay.write_mismatches)} replayed writes answered another status: "
            f"{replay.write_mismatches[:10]})"
        )
    assert replay.problems == []
    assert (replay.compared["dns"], replay.compared["dig"]) == (dns_total, dig_total)
