"""Fixtures for the storefront tests: mcresolve's shared SeaweedFS cluster
(``mcresolve_storage_cluster``, and ``mcresolve_storage`` for tests that kill nodes) and the
seeded test bucket (``seeded``).

``tests/storefront`` is deliberately not a package: it would shadow the ``storefront`` app package
(``examples/storefront/storefront``), which ``storefront_testing`` puts first on ``sys.path``.
"""

from storefront_testing import seeded

__all__ = ["seeded"]
