"""Shared pytest configuration.

mcresolve's test-bed fixtures (``mcresolve_consul``, ``mcresolve_storage_cluster``,
``mcresolve_storage``, ``mcresolve_topology``) come from the opt-in plugin enabled here, the same
way a library user enables it. Shared helpers (``until``, ``FAST_WATCH``, the emulated Consul
cluster) are in ``tests/support.py``.
"""

import pytest

pytest_plugins = ["mcresolve.testing.pytest_plugin"]


@pytest.fixture
def consul_version() -> str:
    """The Consul the emulator answers like; a module overrides this fixture with
    ``params=["1.0.8", "1.21"]`` to run its tests against both profiles."""
    return "1.0.8"
