"""The counting relays on real loopback sockets: HTTP keep-alive counting, DNS over UDP,
stop (refused) and restart on the same port."""

from __future__ import annotations

import asyncio

import aiohttp
import dns.asyncquery
import dns.message
import pytest
from aiohttp import web
from benchmarks.failover.relay import ConsulRelays


async def _udp_echo_dns() -> tuple[asyncio.DatagramTransport, int]:
    class Answer(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            query = dns.message.from_wire(data)
            self.transport.sendto(dns.message.make_response(query).to_wire(), addr)  # type: ignore[attr-defined]

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Answer, local_addr=("127.0.0.1", 0))
    return transport, transport.get_extra_info("sockname")[1]


async def test_relays_count_http_requests_and_dns_queries_and_follow_the_agent() -> None:
    app = web.Application()

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(text=f"{request.path}:{len(body)}")

    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    udp, dns_port = await _udp_echo_dns()
    relays = ConsulRelays(http_port, dns_port)
    await relays.start()
    try:
        async with aiohttp.ClientSession() as session:  # one keep-alive connection
            base = f"http://{relays.http_address}"
            async with session.get(f"{base}/v1/health/service/x?index=3") as r:
                assert await r.text() == "/v1/health/service/x:0"
            async with session.put(f"{base}/v1/query", data=b"12345") as r:
                assert await r.text() == "/v1/query:5"
            async with session.get(f"{base}/v1/health/service/x") as r:
                assert r.status == 200
        host, port = relays.dns_address.split(":")
        answer = await dns.asyncquery.udp(
            dns.message.make_query("a.service.consul", "SRV"), host, port=int(port), timeout=2
        )
        assert answer.rcode() == 0
        assert relays.counts.by_label == {
            "/v1/health/service/x": 2,
            "/v1/query": 1,
            "dns-udp": 1,
        }
        assert relays.counts.total == 4
        await relays.stop()
        with pytest.raises(aiohttp.ClientConnectorError):
            async with aiohttp.ClientSession() as session:
                await session.get(f"http://{relays.http_address}/v1/agent/self")
        await relays.restart()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{relays.http_address}/v1/agent/self") as r,
        ):
            assert await r.text() == "/v1/agent/self:0"
        assert relays.counts.total == 5
    finally:
        await relays.stop()
        udp.close()
        await runner.cleanup()
