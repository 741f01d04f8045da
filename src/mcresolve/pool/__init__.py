"""The endpoint pool: health-aware failover calls over the endpoints of one source.

:mod:`.endpoint_pool` holds :class:`EndpointPool` (composing :mod:`.core`, :mod:`.steps`,
:mod:`.aio` and :mod:`.sync`) and the :class:`BackgroundPool` for synchronous programs,
:mod:`.planner` the pure call planner (``Attempt`` / ``Wait`` / ``GiveUp`` over a ``CallState``),
:mod:`.call_policy` the per-call policy and :mod:`.loop_thread` the process-wide loop thread.
"""

from mcresolve.pool.endpoint_pool import (
    AttemptHandle,
    BackgroundPool,
    EndpointPool,
    EndpointStatus,
    PoolPolicy,
    PoolSnapshot,
)

__all__ = [
    "AttemptHandle",
    "BackgroundPool",
    "EndpointPool",
    "EndpointStatus",
    "PoolPolicy",
    "PoolSnapshot",
]
