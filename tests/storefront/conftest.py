"""Fixtures for the storefront tests: mcresolve's shared SeaweedFS cluster (``storage_cluster``,
and ``storage`` for tests that kill nodes) and the seeded test bucket (``seeded``).

``tests/storefront`` is deliberately not a package: it would shadow the ``storefront`` app package
(``examples/storefront/storefront``), which ``storefront_testing`` puts first on ``sys.path``.
"""

from storefront_testing import seeded

from mcresolve.testing.storage_fixtures import storage, storage_cluster

__all__ = ["seeded", "storage", "storage_cluster"]
