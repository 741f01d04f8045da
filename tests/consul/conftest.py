"""Fixtures for the Consul client tests (servers from :mod:`consul_replay`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from consul_replay import ReplayServer


@pytest.fixture
async def replay() -> AsyncIterator[ReplayServer]:
    server = ReplayServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def replay2() -> AsyncIterator[ReplayServer]:
    server = ReplayServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
