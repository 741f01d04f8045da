"""Test beds shipped with mcresolve: a Consul emulator and a real SeaweedFS storage cluster harness.

Library users may use these in their own tests (``pip install mcresolve[storage]``); the pytest
fixtures are opt-in: ``pytest_plugins = ["mcresolve.testing.pytest_plugin"]``."""
