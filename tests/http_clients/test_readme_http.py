"""The README's HTTP snippet as written: no options, the Consul agent found through
``CONSUL_HTTP_ADDR`` like the consul CLI finds it."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from mcresolve.http.aiohttp import PoolSession
from mcresolve.http.httpx import AsyncPoolTransport, PoolTransport

from .conftest import Billing


async def test_readme_http_snippet_runs_as_written(
    billing: Billing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", billing.consul.dc("dc1").http_url)
    async with httpx.AsyncClient(transport=AsyncPoolTransport()) as client:
        r = await client.get("http://billing.service.consul/invoices")
        assert r.status_code == 200
    async with PoolSession() as session, session.get("http://billing.query.consul/invoices") as r2:
        assert r2.status == 200

    def synchronous() -> int:
        with httpx.Client(transport=PoolTransport()) as client:
            return client.get("http://billing.service.consul/invoices").status_code

    assert await asyncio.to_thread(synchronous) == 200
    assert billing.total("GET") == 3
