"""ResilientMinio tests: one real SeaweedFS cluster per session, one emulated Consul per module."""

from resilient_minio_bed import bucket, consul_bed

__all__ = ["bucket", "consul_bed"]
