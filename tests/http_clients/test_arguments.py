"""Constructor arguments of the HTTP adapters: a wrong type is a TypeError naming the parameter."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mcresolve.http.aiohttp import PoolSession
from mcresolve.http.httpx import AsyncPoolTransport, PoolTransport

CASES: list[tuple[dict[str, Any], str]] = [
    ({"targets": 123}, "targets"),
    ({"targets": ["billing"]}, "targets"),
    ({"targets": {"billing": 5}}, "targets"),
    ({"targets": {"": "consul://billing"}}, "targets"),
    ({"policy": "strict"}, "policy"),
    ({"pool_options": 3}, "pool_options"),
]


@pytest.mark.parametrize(("kwargs", "name"), CASES)
async def test_wrong_types_name_the_parameter(kwargs: dict[str, Any], name: str) -> None:
    for factory in (AsyncPoolTransport, PoolTransport, PoolSession):
        with pytest.raises(TypeError, match=name):
            factory(**kwargs)


async def test_inner_transport_and_session_types() -> None:
    with pytest.raises(TypeError, match="inner"):
        AsyncPoolTransport(inner=httpx.HTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="inner"):
        PoolTransport(inner=httpx.AsyncHTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="session"):
        PoolSession(session="not a session")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="base_url"):
        PoolSession(base_url=5)  # type: ignore[arg-type]


async def test_request_options_type_is_checked() -> None:
    transport = AsyncPoolTransport({"billing": "static://127.0.0.1:1"})
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(TypeError, match="RequestOptions"):
            await client.get("http://billing/", extensions={"mcresolve": {"deadline": 1}})
