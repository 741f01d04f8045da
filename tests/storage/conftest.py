"""Storage harness tests share one real SeaweedFS cluster per session."""

from mcresolve.testing.storage_fixtures import storage, storage_cluster

__all__ = ["storage", "storage_cluster"]
