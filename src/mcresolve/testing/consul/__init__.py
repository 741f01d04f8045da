"""An asyncio, in-process emulator of Consul 1.0.8's HTTP API and DNS interface, with several
WAN-joined datacenters in one process; each datacenter may instead answer like a modern 1.21 /
2.x Community Edition agent (``version=``, see :mod:`.profile`). See ``docs/emulator.md``.

::

    from mcresolve.testing.consul import ConsulEmulator

    async with ConsulEmulator(["dc1", "dc2"], rtt_ms={("dc1", "dc2"): 40.0}) as consul:
        dc1 = consul.dc("dc1")          # agent node "n1"
        dc1.http_url, dc1.dns_port
"""

from __future__ import annotations

from .agent import AgentConfig
from .contracts import (
    ClusterView,
    DatacenterUnreachable,
    DatacenterView,
    EmulatorError,
    HealthEntry,
    HttpAnswer,
    QueryNotFound,
)
from .datacenter import Datacenter
from .emulator import ConsulEmulator
from .faults import AgentFaults

__all__ = [
    "AgentConfig",
    "AgentFaults",
    "ClusterView",
    "ConsulEmulator",
    "Datacenter",
    "DatacenterUnreachable",
    "DatacenterView",
    "EmulatorError",
    "HealthEntry",
    "HttpAnswer",
    "QueryNotFound",
]
