"""Registration of the storefront in Consul, with an HTTP health check on ``/health``.

LEAD: this is a stop-gap written directly against Consul's HTTP agent API (two aiohttp calls);
replace :func:`register_in_consul` and :func:`deregister_from_consul` with mcresolve's registration
helper when it lands (which should also re-register after an agent restart).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp


@dataclass(frozen=True)
class ServiceRegistration:
    """One storefront instance as Consul should know it."""

    service_id: str
    name: str
    address: str
    port: int
    tags: tuple[str, ...] = ("storefront", "http")
    meta: dict[str, str] = field(default_factory=dict)
    check_interval: str = "2s"
    check_timeout: str = "1s"
    #: Consul removes an instance whose check stayed critical this long (a crashed storefront
    #: never deregisters itself); Consul 1.0.8 reaped after ~85 s with "1m" (consul-golden 09b).
    deregister_critical_after: str = "1m"

    @property
    def health_url(self) -> str:
        """The URL the Consul agent polls."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/health"

    def payload(self) -> dict[str, Any]:
        """The body of ``PUT /v1/agent/service/register``."""
        return {
            "ID": self.service_id,
            "Name": self.name,
            "Tags": list(self.tags),
            "Address": self.address,
            "Port": self.port,
            "Meta": dict(self.meta),
            "Check": {
                "CheckID": f"{self.service_id}-http",
                "Name": f"{self.name} HTTP /health",
                "HTTP": self.health_url,
                "Interval": self.check_interval,
                "Timeout": self.check_timeout,
                "DeregisterCriticalServiceAfter": self.deregister_critical_after,
            },
        }


def consul_base_url(address: str) -> str:
    """``CONSUL_HTTP_ADDR`` as a base URL (``127.0.0.1:8500`` → ``http://127.0.0.1:8500``)."""
    address = address.strip().rstrip("/")
    if "://" in address:
        return address
    return f"http://{address}"


def _headers(token: str | None) -> dict[str, str]:
    return {"X-Consul-Token": token} if token else {}


async def register_in_consul(
    session: aiohttp.ClientSession,
    consul_address: str,
    registration: ServiceRegistration,
    *,
    token: str | None = None,
) -> None:
    """Register the instance with the local Consul agent (raises on any non-200 answer)."""
    async with session.put(
        f"{consul_base_url(consul_address)}/v1/agent/service/register",
        json=registration.payload(),
        headers=_headers(token),
    ) as response:
        if response.status != 200:
            text = await response.text()
            raise RuntimeError(f"Consul refused the registration: {response.status} {text}")


async def deregister_from_consul(
    session: aiohttp.ClientSession,
    consul_address: str,
    service_id: str,
    *,
    token: str | None = None,
) -> None:
    """Remove the instance from the local Consul agent (raises on any non-200 answer)."""
    async with session.put(
        f"{consul_base_url(consul_address)}/v1/agent/service/deregister/"
        f"{quote(service_id, safe='')}",
        headers=_headers(token),
    ) as response:
        if response.status != 200:
            text = await response.text()
            raise RuntimeError(f"Consul refused the deregistration: {response.status} {text}")
