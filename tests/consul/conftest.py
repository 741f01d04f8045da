"""Fixtures for the Consul client tests (servers from :mod:`consul_replay`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from consul_replay import ReplayServer


@pytest.fixture
async def replay() -> AsyncIterator[ReplayServer]:
    async with ReplayServer() as server:
        yield server


@pytest.fixture
async def replay2() -> AsyncIterator[ReplayServer]:
    async with ReplayServer() as server:
        yield server
