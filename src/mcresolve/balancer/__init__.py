"""The balancer's pure core: what the pool knows about each endpoint and which one to pick.

No I/O, no asyncio, no threads: passive outlier detection (:mod:`.outlier`), in-flight and
peak-EWMA load (:mod:`.ewma`), the immutable picker (:mod:`.picker`), the datacenter
failover state machine (:mod:`.locality`) and the shared retry budget (:mod:`.retry_budget`).
The :class:`~mcresolve.pool.EndpointPool` drives them under its lock.
"""
