"""pytest fixtures for the Consul emulator and the real SeaweedFS test bed (opt-in).

Nothing registers this plugin for you: a project enables it in its top-level ``conftest.py``::

    pytest_plugins = ["mcresolve.testing.pytest_plugin"]

(or with ``pytest -p mcresolve.testing.pytest_plugin``). Importing it starts nothing: processes,
threads and their exit handlers come with the first cluster a fixture starts. The async fixtures
need pytest-asyncio (``asyncio_mode = "auto"``, or ``@pytest.mark.asyncio`` on the tests that use
them); the storage fixtures are synchronous and work without it. The storage fixtures need the
``weed`` binary (``pip install mcresolve[storage]``).

* ``mcresolve_consul`` (function scope): a fresh :class:`ConsulEmulator` with ``dc1`` and
  ``dc2`` (40 ms apart). Function scope because the emulator lives on the test's event loop
  (pytest-asyncio gives each test its own) and starts in milliseconds.
* ``mcresolve_storage_cluster`` (session scope) and ``mcresolve_storage`` (function scope,
  healed after the test): the real SeaweedFS cluster, ``{"dc1": 2, "dc2": 2}``, from
  :mod:`mcresolve.testing.storage_fixtures`.
* ``mcresolve_topology`` (function scope): a :class:`MultiCloudTopology` ("aws" = dc1,
  "gcp" = dc2) on a fresh emulator and the **shared** session storage cluster. A test may kill
  nodes, stop agents and cut links freely: the fixture heals the storage cluster afterwards (dead
  nodes restarted, proxies back to pass-through), so the next test starts from a clean cluster.
  Tests that need a different layout build their own ``MultiCloudTopology(...)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mcresolve.testing.consul import ConsulEmulator
from mcresolve.testing.storage import StorageCluster
from mcresolve.testing.storage_fixtures import mcresolve_storage, mcresolve_storage_cluster
from mcresolve.testing.topology import MultiCloudTopology

__all__ = [
    "mcresolve_consul",
    "mcresolve_storage",
    "mcresolve_storage_cluster",
    "mcresolve_topology",
]


@pytest.fixture
async def mcresolve_consul() -> AsyncIterator[ConsulEmulator]:
    """Two emulated, WAN-joined Consul datacenters ``dc1`` and ``dc2`` (RTT 40 ms)."""
    async with ConsulEmulator(["dc1", "dc2"], rtt_ms={("dc1", "dc2"): 40.0}) as emulator:
        yield emulator


@pytest.fixture
async def mcresolve_topology(
    mcresolve_storage_cluster: StorageCluster,
) -> AsyncIterator[MultiCloudTopology]:
    """The multi-cloud topology on the shared storage cluster, healed after the test."""
    topo = MultiCloudTopology(storage=mcresolve_storage_cluster)
    await topo.start()
    try:
        yield topo
    finally:
        try:
            await topo.stop()
        finally:
            await mcresolve_storage_cluster.heal()
