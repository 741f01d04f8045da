"""The value every part of mcresolve passes around: one network endpoint of a service."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

Key = tuple[str, int]
"""An endpoint's connection identity, ``(address, port)`` (:attr:`Endpoint.key`)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One instance of a service, as a source resolved it.

    Two endpoints are the same connection target when their :attr:`key` (address, port) is equal;
    the other fields describe where it lives (node, datacenter) and what it is (service ID, tags,
    meta). Instances are immutable and hashable (``meta`` is excluded from the hash).
    """

    address: str
    port: int
    node: str = ""
    datacenter: str = ""
    service_id: str = ""
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def __post_init__(self) -> None:
        if not self.address:
            raise ValueError("Endpoint address must not be empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"Endpoint port must be in 1..65535, got {self.port!r}")
        if not isinstance(self.meta, MappingProxyType):
            object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    @property
    def key(self) -> Key:
        """The connection identity: ``(address, port)``."""
        return (self.address, self.port)

    @property
    def host_port(self) -> str:
        """``address:port``, with IPv6 addresses in brackets (``[::1]:9000``)."""
        if ":" in self.address and not self.address.startswith("["):
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"

    def to_json(self) -> dict[str, Any]:
        """Every field as a JSON object (``tags`` a list, ``meta`` a plain dict): the form of the
        CLI's ``--json`` output and of last-known-good snapshot files."""
        return {
            "address": self.address,
            "port": self.port,
            "node": self.node,
            "datacenter": self.datacenter,
            "service_id": self.service_id,
            "tags": list(self.tags),
            "meta": dict(self.meta),
        }

    def __str__(self) -> str:
        where = f" {self.datacenter}" if self.datacenter else ""
        return f"{self.host_port}{where}"
