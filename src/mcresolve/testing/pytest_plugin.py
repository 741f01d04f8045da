"""pytest fixtures for mcresolve users and for mcresolve's own tests.

Registered as a ``pytest11`` entry point: installing ``mcresolve[storage]`` makes the fixtures
available without a ``conftest.py``.
"""
