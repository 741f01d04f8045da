"""Registration of the storefront in Consul, with an HTTP health check on ``/health``.

Built on mcresolve's registration helper (:mod:`mcresolve.consul.registration`): it registers,
keeps the registration alive (re-registering after a Consul agent restart that lost it) and
deregisters on a clean shutdown. This module only says what a storefront instance looks like in
Consul.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mcresolve.consul import ConsulConfig
from mcresolve.consul.registration import HttpCheck, ServiceDefinition
from mcresolve.sources.target import TargetError, parse_duration


@dataclass(frozen=True)
class ServiceRegistration:
    """One storefront instance as Consul should know it (durations as Go duration strings,
    the way ``STOREFRONT_CHECK_INTERVAL`` and friends spell them)."""

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

    def definition(self) -> ServiceDefinition:
        """The instance as mcresolve's registration helper takes it (raises ``ValueError`` for
        a duration that is not a Go duration such as ``2s`` or ``500ms``)."""
        return ServiceDefinition(
            name=self.name,
            service_id=self.service_id,
            address=self.address,
            port=self.port,
            tags=self.tags,
            meta=dict(self.meta),
            check=HttpCheck(
                self.health_url,
                interval=_seconds(self.check_interval, "check interval"),
                timeout=_seconds(self.check_timeout, "check timeout"),
                deregister_critical_after=_seconds(
                    self.deregister_critical_after, "deregister-critical-after"
                ),
                check_id=f"{self.service_id}-http",
                name=f"{self.name} HTTP /health",
            ),
        )

    def payload(self) -> dict[str, Any]:
        """The body of ``PUT /v1/agent/service/register`` (durations spelled as configured;
        Consul parses ``1m`` and ``60s`` alike)."""
        body = self.definition().payload()
        check: dict[str, Any] = body["Check"]
        check["Interval"] = self.check_interval
        check["Timeout"] = self.check_timeout
        check["DeregisterCriticalServiceAfter"] = self.deregister_critical_after
        return body


def _seconds(text: str, what: str) -> float:
    try:
        return parse_duration(text.strip(), what=what)
    except TargetError as error:
        raise ValueError(str(error)) from None


def consul_base_url(address: str) -> str:
    """``CONSUL_HTTP_ADDR`` as a base URL (``127.0.0.1:8500`` → ``http://127.0.0.1:8500``)."""
    address = address.strip().rstrip("/")
    if "://" in address:
        return address
    return f"http://{address}"


def consul_config(
    address: str,
    token: str | None,
    *,
    call_timeout: float,
    environ: Mapping[str, str] | None = None,
) -> ConsulConfig:
    """The Consul client configuration: the agent at ``address`` with ``token``, TLS settings
    from the consul CLI's environment variables (``CONSUL_CACERT``...), calls bounded by
    ``call_timeout`` seconds."""
    base = ConsulConfig.from_env(environ)
    return ConsulConfig.for_addresses(
        consul_base_url(address),
        token=token or base.token,
        ca_file=base.ca_file,
        client_cert=base.client_cert,
        client_key=base.client_key,
        tls_server_name=base.tls_server_name,
        verify=base.verify,
        connect_timeout=min(base.connect_timeout, call_timeout),
        request_timeout=call_timeout,
    )
