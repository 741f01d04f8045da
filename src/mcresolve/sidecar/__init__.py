"""mcresolve as a sidecar: local ports forwarded through health-aware pools.

:class:`Sidecar` runs one :class:`~mcresolve.pool.EndpointPool` per target and one listener per
local address (:class:`ListenSpec`); ``mcresolve sidecar`` / ``python -m mcresolve.sidecar`` is
its command line. See ``docs/sidecar.md``.
"""

from mcresolve.sidecar.core import DrainPolicy, Sidecar, SidecarBindError
from mcresolve.sidecar.http_mode import HttpListener, HttpProxyPolicy
from mcresolve.sidecar.listener import Listener, ListenerStats
from mcresolve.sidecar.spec import ListenSpec, SidecarUsageError
from mcresolve.sidecar.tcp_mode import TcpListener
from mcresolve.sidecar.tcp_rules import TcpProxyPolicy

__all__ = [
    "DrainPolicy",
    "HttpListener",
    "HttpProxyPolicy",
    "ListenSpec",
    "Listener",
    "ListenerStats",
    "Sidecar",
    "SidecarBindError",
    "SidecarUsageError",
    "TcpListener",
    "TcpProxyPolicy",
]
