"""Which Consul a datacenter of the emulator answers like: the recorded 1.0.8 (default) or a
modern Community Edition (1.21; 2.x answers the same for everything the emulator models).

A :class:`ConsulProfile` is a frozen policy: every difference between the two is a field whose
default cites where the modern behaviour is written. Parts of the emulator ask the profile
(``dc.profile.modern``, ``dc.profile.http_max_conns_per_client``, ...) instead of comparing
version strings.

Sources (``hashicorp/consul`` unless said otherwise):

* answer shapes: the real 1.21.3 answer published in LCMApps/consul-service-health-monitor
  README.md ("Implementation notes"); ``agent/structs/structs.go`` (``NodeService``,
  ``ServiceNode``, ``HealthCheck``), ``api/agent.go``;
* headers: ``agent/http.go`` (``setMeta``, ``setQueryBackend``, ``setCacheMeta``,
  ``setACLDefaultPolicy``, ``setIndex``); ``website/content/api-docs/features/streaming.mdx``;
* 2.x = 1.2x for the HTTP API and DNS: PR #23714 (the 2.0 line continues 1.22).
"""

from __future__ import annotations

from dataclasses import dataclass

LEGACY_VERSION = "1.0.8"
MODERN_VERSION = "1.21.3"


@dataclass(frozen=True, slots=True)
class ConsulProfile:
    """How one emulated agent answers.

    ``version`` is what the agent reports (``/v1/agent/self`` ``Config.Version``, node meta
    ``consul-version`` on modern agents). ``modern`` switches the answer shapes and headers.
    ``http_max_conns_per_client``: ``limits.http_max_conns_per_client`` (agent/config/
    default.go: 200; 1.0.8 had no such limit, ``None``). ``a_record_limit``: DNS answers per
    response (0 = unlimited, agent/config/default.go) that replaces the 3-record
    ``udp_answer_limit`` of 1.0.8 (``None`` there). ``acl_default_policy``: the
    ``X-Consul-Default-Acl-Policy`` header value (ACLs disabled = ``allow``).
    """

    version: str = LEGACY_VERSION
    modern: bool = False
    http_max_conns_per_client: int | None = None
    a_record_limit: int | None = None
    acl_default_policy: str = "allow"

    def with_conn_limit(self, limit: int | None) -> ConsulProfile:
        """A copy with another per-client connection limit (``None`` = unlimited)."""
        return ConsulProfile(
            self.version, self.modern, limit, self.a_record_limit, self.acl_default_policy
        )


LEGACY = ConsulProfile()
MODERN = ConsulProfile(
    version=MODERN_VERSION, modern=True, http_max_conns_per_client=200, a_record_limit=0
)

_ALIASES = {
    "1.0.8": LEGACY,
    "legacy": LEGACY,
    "1.21": MODERN,
    "modern": MODERN,
    "2": ConsulProfile("2.1.0", True, 200, 0),
    "2.x": ConsulProfile("2.1.0", True, 200, 0),
}


def profile_for(version: str | ConsulProfile) -> ConsulProfile:
    """The profile for a version name: ``1.0.8`` (recorded), ``1.21``/``1.21.x``/``1.22.x``,
    ``2``/``2.x``/``2.y.z`` (modern). Anything else is a ``ValueError``."""
    if isinstance(version, ConsulProfile):
        return version
    text = version.strip().lower()
    if text in _ALIASES:
        return _ALIASES[text]
    parts = text.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        major, minor = int(parts[0]), int(parts[1])
        if (major == 1 and minor >= 21) or major == 2:
            return ConsulProfile(text, True, 200, 0)
    raise ValueError(
        f"unknown Consul version {version!r}: use '1.0.8', '1.21' (or 1.21.x/1.22.x) or '2.x'"
    )


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` (``1s``, ``1.5s``, ``1m30s``, ``100ms``, ``0s``), as
    Consul renders a check's ``Interval`` and ``Timeout``."""
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return sign + _frac(nanos, size) + unit
    hours, rest = divmod(nanos, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    secs = _frac(rest, 10**9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    if minutes:
        return f"{sign}{minutes}m{secs}"
    return sign + secs


def _frac(value: int, size: int) -> str:
    whole, rest = divmod(value, size)
    if not rest:
        return str(whole)
    digits = len(str(size)) - 1
    return f"{whole}.{str(rest).rjust(digits, '0').rstrip('0')}"
