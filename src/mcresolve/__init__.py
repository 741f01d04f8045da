"""mcresolve: survive the loss of storage nodes, service instances and whole datacenters by
resolving dependencies through HashiCorp Consul (DNS, health watches, prepared queries).

The usual entry point is :class:`EndpointPool`::

    async with EndpointPool("consul+query://storage-object-minio") as pool:
        await pool.wait_ready(10)
        result = await pool.call(lambda endpoint: fetch(endpoint))

Synchronous programs use :meth:`EndpointPool.start_in_thread` (a :class:`BackgroundPool`) and
``call_sync``. Sources alone: :func:`from_target`.
"""

from mcresolve.balancer.outlier import FailureKind, OutlierPolicy
from mcresolve.balancer.picker import PickStrategy
from mcresolve.balancer.retry_budget import RetryBudgetPolicy
from mcresolve.endpoint import Endpoint
from mcresolve.errors import (
    AttemptsExhausted,
    CallFailed,
    ClusterUnavailable,
    DeadlineExceeded,
    McResolveError,
    NoEndpointAvailable,
    PoolClosed,
    RetryBudgetExhausted,
)
from mcresolve.pool import (
    AttemptHandle,
    BackgroundPool,
    EndpointPool,
    EndpointStatus,
    PoolPolicy,
    PoolSnapshot,
)
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.pool.events import EventHub, EventKind, PoolEvent
from mcresolve.pool.planner import (
    AttemptContext,
    AttemptRecord,
    AttemptVerdict,
    Classifier,
    Fault,
    VerdictLike,
    default_classify,
)
from mcresolve.sources import Resolution, Source, from_target
from mcresolve.sources.target import TargetError, parse_target

__version__ = "0.1.0"

__all__ = [
    "AttemptContext",
    "AttemptHandle",
    "AttemptRecord",
    "AttemptVerdict",
    "AttemptsExhausted",
    "BackgroundPool",
    "CallFailed",
    "CallPolicy",
    "Classifier",
    "ClusterUnavailable",
    "DeadlineExceeded",
    "Endpoint",
    "EndpointPool",
    "EndpointStatus",
    "EventHub",
    "EventKind",
    "FailureKind",
    "Fault",
    "McResolveError",
    "NoEndpointAvailable",
    "OutlierPolicy",
    "PickStrategy",
    "PoolClosed",
    "PoolEvent",
    "PoolPolicy",
    "PoolSnapshot",
    "Resolution",
    "RetryBudgetExhausted",
    "RetryBudgetPolicy",
    "Source",
    "TargetError",
    "VerdictLike",
    "__version__",
    "default_classify",
    "from_target",
    "parse_target",
]
