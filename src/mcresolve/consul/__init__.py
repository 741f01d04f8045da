"""Consul access: configuration, the asyncio HTTP client, typed answers and errors, blocking-query
rules and shared watches."""

from mcresolve.consul.client import ConsulClient
from mcresolve.consul.config import ConsulAddress, ConsulConfig
from mcresolve.consul.errors import (
    BadRequest,
    ConsulConfigError,
    ConsulError,
    ConsulHTTPError,
    ConsulProtocolError,
    ConsulTimeout,
    ConsulUnavailable,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
)
from mcresolve.consul.models import (
    CatalogService,
    CheckStatus,
    Consistency,
    HealthCheck,
    Indexed,
    NodeInfo,
    PreparedQueryResult,
    QueryMeta,
    ServiceEntry,
    ServiceInfo,
    to_endpoints,
)

__all__ = [
    "BadRequest",
    "CatalogService",
    "CheckStatus",
    "Consistency",
    "ConsulAddress",
    "ConsulClient",
    "ConsulConfig",
    "ConsulConfigError",
    "ConsulError",
    "ConsulHTTPError",
    "ConsulProtocolError",
    "ConsulTimeout",
    "ConsulUnavailable",
    "HealthCheck",
    "Indexed",
    "MethodNotAllowed",
    "NodeInfo",
    "NotFound",
    "PermissionDenied",
    "PreparedQueryResult",
    "QueryMeta",
    "RateLimited",
    "ServerError",
    "ServiceEntry",
    "ServiceInfo",
    "to_endpoints",
]
