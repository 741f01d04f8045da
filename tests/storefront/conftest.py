"""Fixtures for the storefront tests (defined in :mod:`storefront_testing`).

``tests/storefront`` is deliberately not a package: it would shadow the ``storefront`` app package
(``examples/storefront/storefront``), which ``storefront_testing`` puts first on ``sys.path``.
"""

from storefront_testing import seaweed, seeded

__all__ = ["seaweed", "seeded"]
