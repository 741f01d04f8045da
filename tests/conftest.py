"""Shared pytest configuration. Fixtures for the emulated Consul datacenters and the real SeaweedFS
cluster come from the ``mcresolve.testing.pytest_plugin`` plugin (registered as a pytest11 entry
point, so library users get them too)."""
