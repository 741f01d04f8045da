"""Checks of the constructor arguments shared by ``ResilientMinio`` and ``AsyncResilientMinio``.

Each check raises ``TypeError`` (wrong type) or ``ValueError`` (right type, out of range) with a
message naming the parameter, before anything is started: a wrong argument is reported where
it was written, not as an ``AssertionError`` or ``AttributeError`` deep inside a pool.
"""

from __future__ import annotations

import math
from typing import Any

from minio.credentials.providers import Provider

from mcresolve.call_policy import CallPolicy
from mcresolve.consul.client import ConsulClient
from mcresolve.consul.config import ConsulConfig
from mcresolve.minio.external import ExternalEndpoint
from mcresolve.minio.http import HttpPolicy
from mcresolve.pool import PoolPolicy

__all__ = [
    "HTTP_CLIENT_REFUSED",
    "check_client_arguments",
    "check_instance",
    "check_int_range",
    "check_optional_str",
    "check_ready_timeout",
]

HTTP_CLIENT_REFUSED = (
    "http_client is not accepted by ResilientMinio: it builds one HTTP client per endpoint, "
    "which must never retry on its own (failover retries on another endpoint) and whose "
    "timeouts are cut to each attempt's time left; a shared urllib3.PoolManager would do "
    "neither. Pass http=HttpPolicy(connect_timeout=..., read_timeout=..., max_connections=..., "
    "ca_certs=...) for timeouts, pool size and CA bundle, and cert_check=False to skip "
    "certificate verification."
)
"""Why a caller's ``http_client`` is refused, and what to pass instead."""


def _type_name(value: object) -> str:
    return type(value).__name__


def check_instance(name: str, value: object, types: tuple[Any, ...], expected: str) -> None:
    """``TypeError`` naming ``name`` unless ``value`` is one of ``types`` (``bool`` is never an
    ``int`` here)."""
    if isinstance(value, bool) and bool not in types:
        raise TypeError(f"{name} must be {expected}, not bool")
    if not isinstance(value, types):
        raise TypeError(f"{name} must be {expected}, not {_type_name(value)}")


def check_optional_str(name: str, value: object) -> None:
    """``TypeError`` unless ``value`` is a string or None."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, not {_type_name(value)}")


def check_int_range(name: str, value: object, low: int, high: int | None = None) -> None:
    """``TypeError`` unless an ``int`` (not ``bool``); ``ValueError`` outside ``low..high``."""
    check_instance(name, value, (int,), "an int")
    assert isinstance(value, int)
    if value < low or (high is not None and value > high):
        bounds = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bounds}, got {value}")


def check_ready_timeout(value: object) -> None:
    """``ready_timeout``: None (no wait) or a finite number of seconds >= 0."""
    if value is None:
        return
    check_instance("ready_timeout", value, (int, float), "a number of seconds or None")
    assert isinstance(value, int | float)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"ready_timeout must be a finite number of seconds >= 0, got {value!r}")


def check_client_arguments(
    *,
    access_key: object,
    secret_key: object,
    session_token: object,
    secure: object,
    region: object,
    http_client: object,
    credentials: object,
    cert_check: object,
    http: object,
    call_policy: object,
    external: object,
    consul: object,
    pool_policy: object,
    local_datacenter: object,
    ready_timeout: object,
    list_page_size: object,
) -> None:
    """Check everything but the endpoint, in the order of the signature."""
    check_optional_str("access_key", access_key)
    check_optional_str("secret_key", secret_key)
    check_optional_str("session_token", session_token)
    check_instance("secure", secure, (bool,), "a bool")
    check_optional_str("region", region)
    if http_client is not None:
        raise ValueError(HTTP_CLIENT_REFUSED)
    if credentials is not None:
        check_instance("credentials", credentials, (Provider,), "a minio credentials Provider")
    check_instance("cert_check", cert_check, (bool,), "a bool")
    if access_key and secret_key is None:
        raise ValueError("secret_key must be provided with access_key")
    optional: tuple[tuple[str, Any, tuple[type, ...], str], ...] = (
        ("http", http, (HttpPolicy,), "an HttpPolicy"),
        ("call_policy", call_policy, (CallPolicy,), "a CallPolicy"),
        ("external", external, (ExternalEndpoint,), "an ExternalEndpoint"),
        ("consul", consul, (ConsulClient, ConsulConfig), "a ConsulClient or ConsulConfig"),
        ("pool_policy", pool_policy, (PoolPolicy,), "a PoolPolicy"),
    )
    for name, value, types, expected in optional:
        if value is not None:
            check_instance(name, value, types, f"{expected} or None")
    check_optional_str("local_datacenter", local_datacenter)
    check_ready_timeout(ready_timeout)
    check_int_range("list_page_size", list_page_size, 1, 1000)
