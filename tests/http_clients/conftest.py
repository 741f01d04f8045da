"""Three loopback "billing" servers, each behind a fault proxy, registered in an emulated Consul.

Each server counts the requests it served (method, path, Host header, body); the proxies are the
addresses Consul knows, so a test breaks a node by switching its proxy (refuse, reset,
blackhole, delay, 5xx answers).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from mcresolve.consul import ConsulClient, ConsulConfig
from mcresolve.consul.watch import WatchRegistry
from mcresolve.testing.consul import ConsulEmulator
from mcresolve.testing.faultproxy import FaultProxy
from support import FAST_WATCH

SERVICE = "billing"


@dataclass
class Seen:
    method: str
    path: str
    host: str | None
    body: bytes
    server_name: str | None = None


@dataclass
class BillingServer:
    """One loopback aiohttp server that records what it served."""

    name: str
    ssl_context: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    port: int = 0
    runner: web.AppRunner | None = None

    def count(self, method: str) -> int:
        return sum(1 for s in self.seen if s.method == method)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.path, request.headers.get("Host"), body))
        if request.method == "POST":
            return web.json_response({"server": self.name, "created": True}, status=201)
        return web.json_response({"server": self.name, "path": request.path})

    async def start(self) -> BillingServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        if self.ssl_context is not None:
            self.ssl_context.sni_callback = self._on_sni
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    def _on_sni(self, _sock: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        self.sni.append(server_name)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@dataclass
class Billing:
    consul: ConsulEmulator
    client: ConsulClient
    config: ConsulConfig
    registry: WatchRegistry
    servers: list[BillingServer]
    proxies: list[FaultProxy]

    @property
    def pool_options(self) -> dict[str, Any]:
        """For asyncio adapters on the test's loop."""
        return {"consul": self.client, "registry": self.registry}

    def server_on(self, port: int) -> BillingServer:
        return self.servers[[p.port for p in self.proxies].index(port)]

    def total(self, method: str) -> int:
        return sum(server.count(method) for server in self.servers)


async def register(client: ConsulClient, proxies: list[FaultProxy]) -> None:
    for index, proxy in enumerate(proxies):
        service_id = f"{SERVICE}-{index}"
        await client.agent_service_register(
            {
                "Name": SERVICE,
                "ID": service_id,
                "Port": proxy.port,
                "Address": "127.0.0.1",
                "Check": {"CheckID": f"{service_id}-ttl", "TTL": "15m", "Status": "passing"},
            }
        )
    await client.query_create({"Name": SERVICE, "Service": {"Service": SERVICE}})


@pytest.fixture
async def billing() -> AsyncIterator[Billing]:
    servers = [await BillingServer(f"billing-{i}").start() for i in range(3)]
    proxies = [
        await FaultProxy("127.0.0.1", s.port, name=f"proxy-{s.name}").start() for s in servers
    ]
    try:
        async with ConsulEmulator(["dc1"]) as consul:
            config = ConsulConfig.for_addresses(
                consul.dc("dc1").http_url, connect_timeout=0.5, request_timeout=2.0
            )
            client = ConsulClient(config)
            registry = WatchRegistry(client, FAST_WATCH)
            try:
                await register(client, proxies)
                yield Billing(consul, client, config, registry, servers, proxies)
            finally:
                await registry.aclose()
                await client.aclose()
    finally:
        for proxy in proxies:
            await proxy.aclose()
        for server in servers:
            await server.stop()
