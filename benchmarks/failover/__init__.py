"""The failover-latency benchmark (issue 6): mcresolve's three stages against plain
``minio.Minio``, ``multiminio`` and HAProxy under storage and Consul faults.

Run ``python -m benchmarks.failover`` (full) or ``--quick``; see ``docs/benchmarks.md``.
"""
