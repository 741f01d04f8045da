"""What an agent's Consul version supports, and the ``filter`` expressions built for it.

Consul reports its version in ``/v1/agent/self`` (``Config.Version``, e.g. ``"1.0.8"``,
``"1.21.3"``, ``"2.1.0"``). Two facts decide how a health read is sent:

* ``filter=`` (go-bexpr) exists since Consul 1.5.0 (api-docs/features/filtering.mdx). Older
  agents ignore it like any unknown parameter and answer *unfiltered*, so a filter is never sent
  to them: :class:`UnsupportedByAgent` is raised instead.
* ``tag`` and ``node-meta`` are deprecated in favour of ``filter`` (api-docs/health.mdx). On an
  agent with ``filter``, node-meta pairs are sent inside the ``filter`` expression (both match
  exactly); on older agents as the plain parameters they understand. Tags stay plain ``tag``
  parameters on every version: Consul matches ``?tag`` case-insensitively (as this library
  does), while a filter's ``in`` is exact, so translating them would drop ``MinIO`` for ``minio``.
* ``peer=`` (cluster peering) exists since 1.13 (GA in 1.14); older agents ignore it and would
  answer the local service, so it is refused the same way.

The catalog listings ``/v1/catalog/service`` and ``/v1/catalog/nodes`` follow the same rules
(api-docs/catalog.mdx: ``filter`` on both, ``node-meta`` deprecated), with node metadata under the
selector each uses (``NodeMeta``, ``Meta``). Prepared-query execution has no ``filter`` at all
(its server side never applies one), so the library never sends it there.

An agent whose version cannot be read is treated as the oldest (plain parameters, no filter): the
plain parameters still work on every version, an unsent filter cannot silently widen an answer.
``/v1/agent/self`` needs ``agent:read`` under ACLs: a token without it can still use ``node-meta``
(sent plainly), but not ``filter``/``peer`` (refused, naming the 403).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mcresolve.consul.errors import ConsulError, ConsulHTTPError, ConsulProtocolError, RateLimited

#: First version with ``filter=`` (Consul 1.5.0 changelog; api-docs/features/filtering.mdx).
FILTER_SINCE = (1, 5, 0)
#: First version with ``?peer=`` on health reads (cluster peering, 1.13 beta, 1.14 GA).
PEER_SINCE = (1, 13, 0)

_VERSION = re.compile(r"\s*v?(\d{1,4})\.(\d{1,4})(?:\.(\d{1,4}))?")


class UnsupportedByAgent(ConsulError):
    """The agent's Consul version does not know a parameter the request needs (``filter`` before
    1.5, ``peer`` before 1.13): sending it would be ignored and widen the answer."""


def parse_version(text: object) -> tuple[int, int, int] | None:
    """``"1.21.3"``, ``"1.21.3+ent"``, ``"v2.1.0-rc1"`` → ``(1, 21, 3)``; anything else ``None``."""
    if not isinstance(text, str):
        return None
    match = _VERSION.match(text)
    if match is None:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


@dataclass(frozen=True, slots=True)
class AgentFeatures:
    """What one agent supports, from its version (``None``: unknown, treated as the oldest)."""

    version: tuple[int, int, int] | None = None
    #: Why the version is unknown (``/v1/agent/self`` refused or unreadable), for messages.
    unknown_because: str | None = None
    #: The agent's own datacenter (``Config.Datacenter``), ``None`` when unknown.
    datacenter: str | None = None

    @classmethod
    def from_agent_self(cls, answer: Mapping[str, Any]) -> AgentFeatures:
        """From a ``/v1/agent/self`` answer (``Config.Version``)."""
        config = answer.get("Config")
        if not isinstance(config, Mapping):
            return cls(None, "GET /v1/agent/self: no Config")
        datacenter = config.get("Datacenter")
        return cls(
            parse_version(config.get("Version")),
            None,
            datacenter if isinstance(datacenter, str) and datacenter else None,
        )

    @property
    def filter(self) -> bool:
        """``filter=`` is understood (1.5+)."""
        return self.version is not None and self.version >= FILTER_SINCE

    @property
    def peer(self) -> bool:
        """``peer=`` is understood (1.13+)."""
        return self.version is not None and self.version >= PEER_SINCE

    def describe(self) -> str:
        """``"1.21.3"`` or ``"unknown"``."""
        if self.version is not None:
            return ".".join(map(str, self.version))
        return "unknown" if self.unknown_because is None else f"unknown ({self.unknown_because})"


def quote(text: str) -> str:
    """A go-bexpr double-quoted string literal: ``"`` and ``\\`` escaped, line breaks and tabs
    as ``\\n``/``\\r``/``\\t`` (a raw line break ends a Go string literal); other characters as
    they are (Go's ``strconv.Unquote`` takes them raw)."""
    out = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


#: The selector of a node's metadata in each listing's filter (api-docs/health.mdx ``Node.Meta``,
#: catalog.mdx ``NodeMeta`` for ``/v1/catalog/service``, ``Meta`` for ``/v1/catalog/nodes``).
NodeMetaSelector = Literal["Node.Meta", "NodeMeta", "Meta"]


def health_filter(
    node_meta: Mapping[str, str] | None = None,
    filter: str | None = None,
    selector: NodeMetaSelector = "Node.Meta",
) -> str | None:
    """One ``filter`` expression for a listing: every node-meta pair as
    ``<selector>["k"] == "v"`` (``Node.Meta`` for health reads) and the user's ``filter``
    (parenthesised), joined by ``and``; ``None`` when there is nothing to filter on."""
    parts = [f"{selector}[{quote(k)}] == {quote(v)}" for k, v in (node_meta or {}).items()]
    if filter is not None and filter.strip():
        parts.append(f"({filter})" if parts else filter)
    return " and ".join(parts) if parts else None


def health_scope(
    features: AgentFeatures,
    where: str,
    *,
    node_meta: Mapping[str, str] | None,
    filter: str | None,
    peer: str | None,
    selector: NodeMetaSelector = "Node.Meta",
) -> tuple[str | None, Mapping[str, str] | None]:
    """How a health or catalog read asks for ``node_meta``, ``filter`` and ``peer`` on an
    agent with ``features``: ``(filter expression or None, node_meta to send as ?node-meta= or
    None)``; ``selector`` names node metadata in that listing's filter (:func:`health_filter`).

    :class:`UnsupportedByAgent` when ``filter`` or ``peer`` is asked of an agent that does not
    know it (it would ignore the parameter and answer more than asked). ``where`` names the
    request and the agent for that message."""
    for name, asked, known in (
        ("filter", filter is not None, features.filter),
        ("peer", peer is not None, features.peer),
    ):
        if asked and not known:
            raise UnsupportedByAgent(
                f"{where} runs Consul {features.describe()}, which does not know ?{name}= (it "
                "would ignore it and answer more than asked); use a newer agent or drop the "
                "option"
            )
    if features.filter:
        return health_filter(node_meta, filter, selector), None
    return None, node_meta


async def read_agent_features(
    agent_self: Callable[[], Awaitable[Mapping[str, Any]]],
) -> AgentFeatures:
    """What the agent supports, from ``/v1/agent/self`` ``Config.Version`` (read with
    ``agent_self``). An agent that answers with an error (a 403 for a token without
    ``agent:read``) or an unreadable answer gives an *unknown* version; a transient failure
    (unreachable, 5xx, 429) raises, so that the caller asks again next time."""
    try:
        answer = await agent_self()
    except ConsulHTTPError as error:
        if not 400 <= error.status < 500 or isinstance(error, RateLimited):
            raise
        return AgentFeatures(None, f"GET /v1/agent/self answered {error.status}")
    except ConsulProtocolError as error:
        return AgentFeatures(None, f"GET /v1/agent/self: {type(error).__name__}")
    return AgentFeatures.from_agent_self(answer)
