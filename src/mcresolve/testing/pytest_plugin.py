"""pytest fixtures for mcresolve users and for mcresolve's own tests.

Registered as a ``pytest11`` entry point: installing ``mcresolve[storage]`` makes the fixtures
available without a ``conftest.py``. Async fixtures need pytest-asyncio (``asyncio_mode=auto``
or ``@pytest.mark.asyncio``).

* ``consul_emulator`` (function scope): a fresh :class:`ConsulEmulator` with ``dc1`` and
  ``dc2`` (40 ms apart). Function scope because the emulator lives on the test's event loop
  (pytest-asyncio gives each test its own) and starts in milliseconds.
* ``storage_cluster`` (session scope) and ``storage`` (function scope, healed after the test):
  the real SeaweedFS cluster, ``{"dc1": 2, "dc2": 2}``, from
  :mod:`mcresolve.testing.storage_fixtures`.
* ``topology`` (function scope): a :class:`MultiCloudTopology` ("aws" = dc1, "gcp" = dc2) on a
  fresh emulator and the **shared** session storage cluster. A test may kill nodes, stop agents
  and cut links freely: the fixture heals the storage cluster afterwards (dead nodes restarted,
  proxies back to pass-through), so the next test starts from a clean cluster. Tests that need
  a different layout build their own ``MultiCloudTopology(...)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mcresolve.testing.consul import ConsulEmulator
from mcresolve.testing.storage import StorageCluster
from mcresolve.testing.storage_fixtures import storage, storage_cluster
from mcresolve.testing.topology import MultiCloudTopology

__all__ = ["consul_emulator", "storage", "storage_cluster", "topology"]


@pytest.fixture
async def consul_emulator() -> AsyncIterator[ConsulEmulator]:
    """Two emulated, WAN-joined Consul datacenters ``dc1`` and ``dc2`` (RTT 40 ms)."""
    async with ConsulEmulator(["dc1", "dc2"], rtt_ms={("dc1", "dc2"): 40.0}) as emulator:
        yield emulator


@pytest.fixture
async def topology(storage_cluster: StorageCluster) -> AsyncIterator[MultiCloudTopology]:
    """The multi-cloud topology on the shared storage cluster, healed after the test."""
    topo = MultiCloudTopology(storage=storage_cluster)
    await topo.start()
    try:
        yield topo
    finally:
        try:
            await topo.stop()
        finally:
            await storage_cluster.heal()
