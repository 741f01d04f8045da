"""pytest fixtures for the real SeaweedFS storage cluster.

- ``mcresolve_storage_cluster`` (session scope): one
  :class:`~mcresolve.testing.storage.StorageCluster` with datacenters ``dc1`` and ``dc2`` of
  two nodes each, shared by the whole session.
- ``mcresolve_storage`` (function scope): the same cluster, healed after each test (dead processes
  restarted, proxies back to pass-through, counters zeroed), so a test may kill nodes freely.

The fixtures are synchronous on purpose: the cluster runs on its own harness thread, so it
works with tests on any event loop (pytest-asyncio's per-test loops included) and with
synchronous tests, and need no pytest-asyncio. They are part of the opt-in plugin
:mod:`mcresolve.testing.pytest_plugin` (``pytest_plugins = ["mcresolve.testing.pytest_plugin"]`` in
the top-level ``conftest.py``); importing this module starts nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from mcresolve.testing.storage import StorageCluster

__all__ = ["SESSION_LAYOUT", "mcresolve_storage", "mcresolve_storage_cluster"]

SESSION_LAYOUT: dict[str, int] = {"dc1": 2, "dc2": 2}
"""Storage nodes per datacenter of the session cluster."""

_lock = threading.Lock()
_shared: StorageCluster | None = None
_users = 0


def _acquire() -> StorageCluster:
    global _shared, _users
    with _lock:
        if _shared is None:
            cluster = StorageCluster(datacenters=SESSION_LAYOUT)
            cluster.start_blocking()
            _shared = cluster
        _users += 1
        return _shared


def _release() -> None:
    global _shared, _users
    with _lock:
        _users -= 1
        if _users == 0 and _shared is not None:
            cluster, _shared = _shared, None
            cluster.stop_blocking()


@pytest.fixture(scope="session")
def mcresolve_storage_cluster() -> Iterator[StorageCluster]:
    """The session's shared storage cluster (``dc1``: 2 nodes, ``dc2``: 2 nodes)."""
    cluster = _acquire()
    try:
        yield cluster
    finally:
        _release()


@pytest.fixture
def mcresolve_storage(mcresolve_storage_cluster: StorageCluster) -> Iterator[StorageCluster]:
    """The shared storage cluster, healed after the test (see :meth:`StorageCluster.heal`)."""
    try:
        yield mcresolve_storage_cluster
    finally:
        mcresolve_storage_cluster.run(mcresolve_storage_cluster.heal(), timeout=120)
