"""ResilientMinio tests: one real SeaweedFS cluster per session, one emulated Consul per module."""

from resilient_minio_bed import bucket, consul_bed

from mcresolve.testing.storage_fixtures import storage, storage_cluster

__all__ = ["bucket", "consul_bed", "storage", "storage_cluster"]
