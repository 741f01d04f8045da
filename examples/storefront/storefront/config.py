"""Configuration from environment variables, read the way the original MinIO store reads it.

The original variables (``MINIO_HOST``, ``MINIO_PORT``, ``MINIO_ACCESS_KEY``, ``MINIO_SECRET_KEY``,
``MINIO_EXTERNAL_HOST``, ``MINIO_EXTERNAL_PORT``, ``PORT``) keep their meaning; everything added by
this port is optional and prefixed ``STOREFRONT_`` (or is one of Consul's standard ``CONSUL_HTTP_*``
variables). Parsing is pure: :meth:`Settings.from_env` takes a mapping and either returns settings
or raises :class:`ConfigError` naming every bad variable.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from .target import is_plain_host, storage_target

_T = TypeVar("_T")

DEFAULT_BUCKET = "minio-store"


class ConfigError(ValueError):
    """One or more environment variables are missing or malformed (all are listed)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class ImageMode(enum.Enum):
    """How product images reach the browser."""

    #: Streamed through the storefront itself (``/images/<key>``); survives storage failover.
    PROXY = "proxy"
    #: Presigned GET URLs for ``MINIO_EXTERNAL_HOST:MINIO_EXTERNAL_PORT``.
    PRESIGNED = "presigned"
    #: Plain public URLs ``<external>/<bucket>/<key>`` (the bucket must allow anonymous reads).
    EXTERNAL = "external"


STORAGE_CLIENTS = ("mcresolve", "plain")
"""The values of ``STOREFRONT_STORAGE_CLIENT``."""


@dataclass(frozen=True)
class Settings:
    """Everything the storefront and its seeding command need, validated."""

    minio_host: str
    minio_port: int
    access_key: str
    secret_key: str
    #: The browsers' storage host; empty when ``MINIO_HOST`` is a target and
    #: ``MINIO_EXTERNAL_HOST`` is unset (then only the proxy image mode can be used).
    external_host: str
    external_port: int
    port: int
    bind: str = "0.0.0.0"
    minio_secure: bool = False
    external_secure: bool = False
    region: str = "us-east-1"
    bucket: str = DEFAULT_BUCKET
    image_mode: ImageMode = ImageMode.PROXY
    presign_expiry_s: int = 3600
    #: Connect/read timeout of one storage call; a page never waits much longer than this.
    storage_timeout_s: float = 3.0
    #: How long storage may stay unreachable before ``/health`` turns critical (503).
    health_grace_s: float = 10.0
    service_name: str = "storefront"
    service_id: str | None = None
    #: Address registered in Consul (default: the bind address, or 127.0.0.1 for a wildcard).
    advertise_address: str | None = None
    #: A label shown in the page footer and ``/health`` (e.g. the datacenter), purely informative.
    instance_label: str = ""
    consul_http_addr: str | None = None
    consul_token: str | None = None
    consul_check_interval: str = "2s"
    consul_check_timeout: str = "1s"
    #: ``mcresolve`` (default: mcresolve's resilient client on ``MINIO_HOST`` as a target) or
    #: ``plain`` (``minio.Minio`` on ``MINIO_HOST:MINIO_PORT`` as it comes, as the original app
    #: has it: one endpoint, e.g. a local ``mcresolve sidecar``).
    storage_client: str = "mcresolve"

    @property
    def storage_target(self) -> str:
        """``MINIO_HOST``/``MINIO_PORT`` as the mcresolve target the storage client resolves
        (see :mod:`storefront.target`; validated by :meth:`from_env`)."""
        return storage_target(self.minio_host, self.minio_port)

    @property
    def external_endpoint(self) -> str:
        """``host:port`` that browsers use to reach storage (presigned and external URLs);
        empty when there is no external host."""
        if not self.external_host:
            return ""
        return f"{_host_for_url(self.external_host)}:{self.external_port}"

    @property
    def external_base_url(self) -> str:
        """``http(s)://host:port`` for URLs handed to browsers (empty without an external
        host)."""
        if not self.external_host:
            return ""
        scheme = "https" if self.external_secure else "http"
        return f"{scheme}://{self.external_endpoint}"

    @property
    def registration_address(self) -> str:
        """The address to register in Consul and to point the HTTP check at."""
        if self.advertise_address:
            return self.advertise_address
        if self.bind in ("0.0.0.0", "::", ""):
            return "127.0.0.1"
        return self.bind

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read the settings from ``env`` (typically ``os.environ``).

        Required: ``MINIO_ACCESS_KEY`` and ``MINIO_SECRET_KEY``. ``MINIO_HOST`` (any mcresolve
        target, see :mod:`storefront.target`) defaults to ``localhost``, ``MINIO_PORT`` to 9000,
        the external host/port to the internal ones when ``MINIO_HOST`` is a plain host name or
        address, ``PORT`` to 8080 (0 picks a free port).
        """
        reader = _EnvReader(env)
        host = reader.text("MINIO_HOST", "localhost")
        minio_port = reader.number("MINIO_PORT", "9000", _port)
        try:
            storage_target(host, minio_port)
        except ValueError as error:
            reader.problems.append(f"MINIO_HOST={host!r}: {error}")
        secure = reader.number("MINIO_SECURE", "false", _boolean)
        image_mode = reader.number("STOREFRONT_IMAGES", "proxy", _image_mode)
        settings = cls(
            minio_host=host,
            minio_port=minio_port,
            access_key=reader.required("MINIO_ACCESS_KEY"),
            secret_key=reader.required("MINIO_SECRET_KEY"),
            external_host=reader.text("MINIO_EXTERNAL_HOST", host if is_plain_host(host) else ""),
            external_port=reader.number("MINIO_EXTERNAL_PORT", str(minio_port), _port),
            port=reader.number("PORT", "8080", _port_or_zero),
            bind=reader.text("STOREFRONT_BIND", "0.0.0.0"),
            minio_secure=secure,
            external_secure=reader.number(
                "MINIO_EXTERNAL_SECURE", "true" if secure else "false", _boolean
            ),
            region=reader.text("MINIO_REGION", "us-east-1"),
            bucket=reader.text("STOREFRONT_BUCKET", DEFAULT_BUCKET),
            image_mode=image_mode,
            presign_expiry_s=reader.number("STOREFRONT_PRESIGN_EXPIRY", "3600", _expiry),
            storage_timeout_s=reader.number("STOREFRONT_STORAGE_TIMEOUT", "3", _positive_seconds),
            health_grace_s=reader.number("STOREFRONT_HEALTH_GRACE", "10", _seconds),
            service_name=reader.text("STOREFRONT_SERVICE_NAME", "storefront"),
            service_id=reader.optional("STOREFRONT_SERVICE_ID"),
            advertise_address=reader.optional("STOREFRONT_ADVERTISE_ADDRESS"),
            instance_label=reader.text("STOREFRONT_INSTANCE_LABEL", ""),
            consul_http_addr=reader.optional("CONSUL_HTTP_ADDR"),
            consul_token=reader.optional("CONSUL_HTTP_TOKEN"),
            consul_check_interval=reader.text("STOREFRONT_CHECK_INTERVAL", "2s"),
            consul_check_timeout=reader.text("STOREFRONT_CHECK_TIMEOUT", "1s"),
            storage_client=reader.text("STOREFRONT_STORAGE_CLIENT", "mcresolve"),
        )
        if settings.storage_client not in STORAGE_CLIENTS:
            reader.problems.append(
                f"STOREFRONT_STORAGE_CLIENT={settings.storage_client!r}: expected "
                + " or ".join(STORAGE_CLIENTS)
            )
        elif settings.storage_client == "plain" and not is_plain_host(host):
            reader.problems.append(
                f"STOREFRONT_STORAGE_CLIENT=plain needs MINIO_HOST to be one host name or "
                f"address (a plain client takes one endpoint), not {host!r}"
            )
        if settings.image_mode is not ImageMode.PROXY and not settings.external_host:
            reader.problems.append(
                f"STOREFRONT_IMAGES={image_mode.value} needs MINIO_EXTERNAL_HOST when MINIO_HOST "
                "is not a plain host name or address (browsers cannot resolve a target)"
            )
        reader.raise_if_problems()
        return settings


class _EnvReader:
    """Collects every problem instead of stopping at the first one."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.problems: list[str] = []

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            self.problems.append(f"{name} is required")
            return ""
        return value

    def number(self, name: str, default: str, parse: Callable[[str], _T]) -> _T:
        raw = self.text(name, default)
        try:
            return parse(raw)
        except ValueError as error:
            self.problems.append(f"{name}={raw!r}: {error}")
            return parse(default)

    def raise_if_problems(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


def _port(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 65535:
        raise ValueError("a TCP port is between 1 and 65535")
    return value


def _port_or_zero(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("a TCP port is between 0 (any free port) and 65535")
    return value


def _boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _image_mode(raw: str) -> ImageMode:
    try:
        return ImageMode(raw.lower())
    except ValueError:
        choices = "|".join(mode.value for mode in ImageMode)
        raise ValueError(f"expected one of {choices}") from None


def _seconds(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value < 0:
        raise ValueError("expected a non-negative number of seconds")
    return value


def _positive_seconds(raw: str) -> float:
    value = _seconds(raw)
    if value == 0:
        raise ValueError("expected a positive number of seconds")
    return value


def _expiry(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 7 * 24 * 3600:
        raise ValueError("a presigned URL lives between 1 s and 7 days")
    return value


def _host_for_url(host: str) -> str:
    """Bracket a bare IPv6 address so that ``host:port`` stays unambiguous."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host
