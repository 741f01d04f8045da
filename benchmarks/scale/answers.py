"""Consul-shaped health entries, serialised once per instance state (pure, no I/O).

The shape is Consul 1.0.8's ``/v1/health/service/<name>`` element (``Node``, ``Service``,
``Checks``) as recorded in the golden recordings, with realistic sizes: five tags, four service
meta pairs, three node meta pairs, three checks (the node's ``serfHealth``, an HTTP check and a
TTL maintenance check), about 1.8 KB of JSON per instance, like the 1,000-instance answer of
1.85 MB measured against the emulator.

Every address is on loopback (``127.x.y.z``): nothing ever connects to them, but a target must
never name anything else.
"""

from __future__ import annotations

import json
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

DATACENTER = "dc1"


@dataclass(frozen=True, slots=True)
class Instance:
    """One service instance: where it listens and how it is named."""

    service: str
    number: int

    @property
    def address(self) -> str:
        n = self.number
        return f"127.{1 + n // 62500 % 250}.{n // 250 % 250}.{n % 250 + 1}"

    @property
    def port(self) -> int:
        return 20000 + self.number % 20000

    @property
    def node(self) -> str:
        return f"{self.service}-node-{self.number:05d}"

    @property
    def service_id(self) -> str:
        return f"{self.service}-{self.number:05d}"

    @property
    def key(self) -> tuple[str, int]:
        """What the pool's events identify an endpoint by (address, port)."""
        return (self.address, self.port)


def _check(
    instance: Instance,
    check_id: str,
    name: str,
    status: str,
    output: str,
    service: bool,
    index: int,
) -> dict[str, Any]:
    tags = _tags(instance) if service else []
    return {
        "Node": instance.node,
        "CheckID": check_id,
        "Name": name,
        "Status": status,
        "Notes": "",
        "Output": output,
        "ServiceID": instance.service_id if service else "",
        "ServiceName": instance.service if service else "",
        "ServiceTags": tags,
        "Definition": {},
        "CreateIndex": 10,
        "ModifyIndex": index,
    }


#: What an HTTP check records as output: the status line and the start of the body.
_LIVE_BODY = json.dumps(
    {
        "status": "ok",
        "mode": "online",
        "deploymentId": "6f1c2b8e-4b7a-4f0e-9a55-0c2d9b1d7e31",
        "drives": [{"path": f"/data{d}", "state": "ok", "uuid": f"d{d:031d}"} for d in range(4)],
    }
)


def _tags(instance: Instance) -> list[str]:
    n = instance.number
    return [
        "storage",
        "s3",
        f"v{1 + n % 3}",
        f"rack-{n % 16:02d}",
        "primary" if n % 2 else "replica",
    ]


def entry(instance: Instance, *, status: str = "passing", index: int = 10) -> dict[str, Any]:
    """The health entry of ``instance`` whose maintenance check has ``status`` (modified at
    ``index``)."""
    n = instance.number
    ident = uuid.UUID(int=zlib.crc32(instance.service.encode()) << 64 | n)
    return {
        "Node": {
            "ID": str(ident),
            "Node": instance.node,
            "Address": instance.address,
            "Datacenter": DATACENTER,
            "TaggedAddresses": {"lan": instance.address, "wan": instance.address},
            "Meta": {
                "consul-network-segment": "",
                "rack": f"r{n % 16}",
                "zone": f"{DATACENTER}-z{n % 3}",
            },
            "CreateIndex": 10,
            "ModifyIndex": 10,
        },
        "Service": {
            "ID": instance.service_id,
            "Service": instance.service,
            "Tags": _tags(instance),
            "Address": instance.address,
            "Meta": {
                "version": f"2026.11.{n % 28 + 1}",
                "owner": "storage-team",
                "weight": str(1 + n % 10),
                "az": f"{DATACENTER}-z{n % 3}",
            },
            "Port": instance.port,
            "EnableTagOverride": False,
            "CreateIndex": 10,
            "ModifyIndex": 10,
        },
        "Checks": [
            _check(
                instance,
                "serfHealth",
                "Serf Health Status",
                "passing",
                "Agent alive and reachable",
                False,
                10,
            ),
            _check(
                instance,
                f"service:{instance.service_id}",
                f"Service '{instance.service}' check",
                "passing",
                f"HTTP GET http://{instance.address}:{instance.port}/minio/health/live: "
                "200 OK Output: " + _LIVE_BODY,
                True,
                10,
            ),
            _check(
                instance,
                f"{instance.service_id}-maintenance",
                "maintenance",
                status,
                "" if status == "passing" else "drained by the scale benchmark",
                True,
                index,
            ),
        ],
    }


def fragment(instance: Instance, *, status: str = "passing", index: int = 10) -> bytes:
    """``entry`` as compact JSON bytes (Consul's own encoding has no spaces either)."""
    return json.dumps(entry(instance, status=status, index=index), separators=(",", ":")).encode()


def join(fragments: list[bytes]) -> bytes:
    """A JSON array of pre-serialised elements."""
    return b"[" + b",".join(fragments) + b"]"
