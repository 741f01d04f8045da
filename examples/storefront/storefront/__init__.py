"""The storefront: a small web shop whose products are the objects of one MinIO bucket.

A Python port of the MinIO store of the reference multi-cloud deployment, used by mcresolve's demo.
Run it with ``python -m storefront`` and seed its sample catalog with ``python -m storefront.seed``;
both read their configuration from the environment (see :mod:`storefront.config`).
"""

__version__ = "0.1.0"
