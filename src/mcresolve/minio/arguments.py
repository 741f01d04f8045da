"""Checks of the constructor arguments shared by ``ResilientMinio`` and ``AsyncResilientMinio``.

Each check raises ``TypeError`` (wrong type) or ``ValueError`` (right type, out of range) with a
message naming the parameter, before anything is started: a wrong argument is reported where
it was written, not as an ``AssertionError`` or ``AttributeError`` deep inside a pool.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from minio.credentials.providers import Provider
from minio.helpers import (
    MAX_MULTIPART_COUNT,
    MAX_MULTIPART_OBJECT_SIZE,
    MAX_PART_SIZE,
    MIN_PART_SIZE,
    check_bucket_name,
    check_object_name,
    normalize_headers,
)
from minio.sse import Sse, SseCustomerKey

from mcresolve.arguments import check_instance, check_int_range, check_optional_str
from mcresolve.arguments import type_name as _type_name
from mcresolve.consul.client import ConsulClient
from mcresolve.consul.config import ConsulConfig
from mcresolve.errors import McResolveError
from mcresolve.minio.external import ExternalEndpoint
from mcresolve.minio.http import HttpPolicy
from mcresolve.pool import PoolPolicy
from mcresolve.pool.call_policy import CallPolicy

__all__ = [
    "HTTP_CLIENT_REFUSED",
    "PARAMETER_CHECKS",
    "DataShorterThanLength",
    "check_call",
    "check_client_arguments",
    "check_instance",
    "check_int_range",
    "check_optional_str",
    "check_ready_timeout",
    "pool_options",
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


# --- the arguments of minio's methods -----------------------------------------------------------


def _bucket_name(name: str, value: object) -> None:
    check_instance(name, value, (str,), "a string")
    assert isinstance(value, str)
    try:
        check_bucket_name(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _non_empty_str(name: str, value: object) -> None:
    check_instance(name, value, (str,), "a string")
    if not value:
        raise ValueError(f"{name} must not be empty")


def _optional_non_empty_str(name: str, value: object) -> None:
    if value is not None:
        _non_empty_str(name, value)


def _header_text(name: str, value: str) -> None:
    """A value sent in an HTTP header: latin-1 (what ``http.client`` can encode), without
    control characters (CR/LF would split the header)."""
    if any(ord(char) > 0xFF or ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError(
            f"{name} must hold header-safe text (latin-1, no control characters), got {value!r}"
        )


def _content_type(name: str, value: object) -> None:
    """A string sent as ``Content-Type`` (empty: minio's default, ``application/octet-stream``)."""
    check_instance(name, value, (str,), "a string")
    assert isinstance(value, str)
    _header_text(name, value)


def _object_name(name: str, value: object) -> None:
    """minio's rule: not blank, no ``.`` or ``..`` path segment."""
    check_instance(name, value, (str,), "a string")
    assert isinstance(value, str)
    if not value.strip():
        raise ValueError(f"{name} must not be empty or blank, got {value!r}")
    try:
        check_object_name(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
"""The characters of an HTTP header name (RFC 9110 ``tchar``)."""


def _optional_headers(name: str, value: object) -> None:
    """``metadata``/``extra_headers``: None or a mapping of header names to values (each a
    value or a list/tuple of values, as minio's ``DictType``; minio sends ``str()`` of each).
    Names must be HTTP tokens, values header-safe text, and user metadata US-ASCII (minio's
    own rule, checked by minio's ``normalize_headers``)."""
    _optional_mapping(name, value)
    if value is None:
        return
    assert isinstance(value, Mapping)
    for key, item in value.items():
        text = str(key)
        if not text or not set(text) <= _TOKEN:
            raise ValueError(f"{name} has a key that is not an HTTP header name: {text!r}")
        for element in item if isinstance(item, list | tuple) else [item]:
            _header_text(f"{name}[{text!r}]", str(element))
    try:
        normalize_headers(dict(value))
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _bool(name: str, value: object) -> None:
    check_instance(name, value, (bool,), "a bool")


def _optional_mapping(name: str, value: object) -> None:
    if value is not None:
        check_instance(name, value, (Mapping,), "a mapping or None")


def _readable(name: str, value: object) -> None:
    if not callable(getattr(value, "read", None)):
        raise TypeError(f"{name} must be a binary stream with read(), not {_type_name(value)}")


def _path(name: str, value: object) -> None:
    check_instance(name, value, (str, os.PathLike), "a path (str or os.PathLike)")


def _iterable(name: str, value: object) -> None:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be an iterable of DeleteObject, not {_type_name(value)}")


def _optional(types: tuple[Any, ...], expected: str) -> Callable[[str, object], None]:
    def check(name: str, value: object) -> None:
        if value is not None:
            check_instance(name, value, types, f"{expected} or None")

    return check


def _int_at_least(low: int) -> Callable[[str, object], None]:
    def check(name: str, value: object) -> None:
        check_int_range(name, value, low)

    return check


PARAMETER_CHECKS: Mapping[str, Callable[[str, object], None]] = {
    "bucket_name": _bucket_name,
    "object_name": _object_name,
    "file_path": _path,
    "data": _readable,
    "length": _int_at_least(-1),  # put_object: -1 = unknown (with part_size)
    "offset": _int_at_least(0),
    "part_size": _int_at_least(0),
    "num_parallel_uploads": _int_at_least(1),
    "chunk_size": lambda name, value: None if value is None else check_int_range(name, value, 1),
    "content_type": _content_type,
    "version_id": _optional((str,), "a string"),
    "prefix": _optional((str,), "a string"),
    "start_after": _optional((str,), "a string"),
    "recursive": _bool,
    "include_user_meta": _bool,
    "include_version": _bool,
    "use_api_v1": _bool,
    "use_url_encoding_type": _bool,
    "fetch_owner": _bool,
    "bypass_governance_mode": _bool,
    "object_lock": _bool,
    "metadata": _optional_headers,
    "extra_headers": _optional_headers,
    "extra_query_params": _optional_mapping,
    "response_headers": _optional_mapping,
    "sse": _optional((Sse,), "an Sse"),
    "ssec": _optional((SseCustomerKey,), "an SseCustomerKey"),
    "expires": lambda name, value: check_instance(name, value, (timedelta,), "a timedelta"),
    "request_date": _optional((datetime,), "a datetime"),
    "delete_object_list": _iterable,
    "app_name": _non_empty_str,
    "app_version": _non_empty_str,
}
"""How each parameter of ``minio.Minio``'s methods is checked, by name (the same name means the
same thing in every method). Parameters not listed are handed to minio as they are."""
PER_METHOD_CHECKS: Mapping[tuple[str, str], Callable[[str, object], None]] = {
    ("get_object", "length"): _int_at_least(0),  # 0: to the end of the object
    ("fget_object", "tmp_file_path"): _optional((str, os.PathLike), "a path"),
}
"""Where a parameter means something else in one method."""


class DataShorterThanLength(McResolveError, OSError, ValueError):
    """``put_object``'s ``data`` ended before ``length`` bytes: an ``OSError`` as minio raises
    it (``stream having not enough data``), and a ``ValueError`` naming ``length``."""


def _put_object_sizes(arguments: Mapping[str, Any]) -> None:
    """``length`` and ``part_size`` together, as minio's ``get_part_info`` requires them."""
    length = arguments.get("length", 0)
    part_size = arguments.get("part_size", 0)
    if part_size and not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise ValueError(
            f"part_size must be 0 (chosen from length) or {MIN_PART_SIZE}..{MAX_PART_SIZE} "
            f"bytes (5 MiB to 5 GiB), got {part_size}"
        )
    if length > MAX_MULTIPART_OBJECT_SIZE:
        raise ValueError(
            f"length must be at most {MAX_MULTIPART_OBJECT_SIZE} (5 TiB), got {length}"
        )
    if length == -1 and not part_size:
        raise ValueError("length -1 (size unknown) needs a part_size (5 MiB to 5 GiB)")
    if part_size and length > 0 and -(-length // part_size) > MAX_MULTIPART_COUNT:
        raise ValueError(
            f"length {length} with part_size {part_size} makes more than "
            f"{MAX_MULTIPART_COUNT} parts"
        )


CALL_CHECKS: Mapping[str, Callable[[Mapping[str, Any]], None]] = {
    "put_object": _put_object_sizes,
}
"""Checks of several arguments of one method together, after each was checked alone."""


def check_call(method: str, signature: inspect.Signature, args: Any, kwargs: Any) -> None:
    """Check the arguments of one call of ``minio.Minio.<method>`` (``signature`` without
    ``self``): a wrong number or name of arguments is the ``TypeError`` Python raises; a wrong
    type or value of a parameter in :data:`PARAMETER_CHECKS` a ``TypeError``/``ValueError``
    whose message starts with the parameter's name. Nothing is sent before this passes."""
    bound = signature.bind(*args, **kwargs)
    for name, value in bound.arguments.items():
        check = PER_METHOD_CHECKS.get((method, name)) or PARAMETER_CHECKS.get(name)
        if check is not None:
            check(name, value)
    together = CALL_CHECKS.get(method)
    if together is not None:
        together(bound.arguments)


def pool_options(
    consul: ConsulClient | ConsulConfig | None,
    pool_policy: PoolPolicy | None,
    local_datacenter: str | None,
) -> dict[str, Any]:
    """The keyword arguments of the ``EndpointPool`` a client builds from a target: only the
    options given (the pool's own defaults apply to the others)."""
    options: dict[str, Any] = {}
    if consul is not None:
        options["consul"] = consul
    if pool_policy is not None:
        options["policy"] = pool_policy
    if local_datacenter is not None:
        options["local_datacenter"] = local_datacenter
    return options
