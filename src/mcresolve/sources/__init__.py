"""Where endpoints come from: three Consul stages (DNS, health catalog, prepared queries),
static lists, and their composition.

Build one from a target string with :func:`from_target`::

    async with from_target("consul+query://storage-object-minio") as source:
        async for resolution in source.updates():
            ...

See ``docs/stages.md`` for how the three stages map to target strings.
Watches are shared process-wide by default (one per Consul configuration, event loop and query).
"""

from mcresolve.sources.arbiter import Arbiter, ArbiterPolicy, Decision
from mcresolve.sources.base import AnswerRejected, PublishingSource, Resolution, Source
from mcresolve.sources.composite import ResilientSource
from mcresolve.sources.dns import DnsCache, DnsPolicy, DnsSource
from mcresolve.sources.factory import from_target
from mcresolve.sources.health import HealthSource
from mcresolve.sources.prepared_query import PreparedQuerySource
from mcresolve.sources.refresh import RefreshDamping
from mcresolve.sources.snapshot import load_snapshot, save_snapshot
from mcresolve.sources.standby import StandbyPolicy, StandbySource
from mcresolve.sources.static import StaticSource

__all__ = [
    "AnswerRejected",
    "Arbiter",
    "ArbiterPolicy",
    "Decision",
    "DnsCache",
    "DnsPolicy",
    "DnsSource",
    "HealthSource",
    "PreparedQuerySource",
    "PublishingSource",
    "RefreshDamping",
    "ResilientSource",
    "Resolution",
    "Source",
    "StandbyPolicy",
    "StandbySource",
    "StaticSource",
    "from_target",
    "load_snapshot",
    "save_snapshot",
]
