"""How to reach Consul: agent addresses, ACL token, TLS, timeouts; read from the consul CLI's
environment variables by :meth:`ConsulConfig.from_env`.

The token is a secret: it is excluded from ``repr``/``str`` (shown as ``'<redacted>'``) and never
put in log lines or exception messages.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from mcresolve.consul.errors import ConsulConfigError

#: Consul's HTTP port.
DEFAULT_PORT = 8500
#: Address used when none is configured (the consul CLI's default).
DEFAULT_ADDRESS = "127.0.0.1:8500"

# Go's strconv.ParseBool, which the consul CLI uses for its boolean variables.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(name: str, value: str) -> bool:
    """Parse a boolean environment variable the way the consul CLI does (Go ``ParseBool``)."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConsulConfigError(
        f"{name} must be a boolean (1, t, true, TRUE, 0, f, false, FALSE...), got {value!r}"
    )


@dataclass(frozen=True, slots=True)
class ConsulAddress:
    """One agent's HTTP API address."""

    host: str
    port: int = DEFAULT_PORT
    scheme: str = "http"

    def __post_init__(self) -> None:
        if self.scheme not in ("http", "https"):
            raise ConsulConfigError(f"Consul scheme must be http or https, got {self.scheme!r}")
        if not self.host:
            raise ConsulConfigError("Consul address has an empty host")
        if not 0 < self.port < 65536:
            raise ConsulConfigError(f"Consul port must be in 1..65535, got {self.port!r}")

    @classmethod
    def parse(cls, text: str, default_scheme: str = "http") -> ConsulAddress:
        """Parse ``host:port``, ``http://host:port``, ``https://host``, ``[::1]:8500``...

        A scheme in the text wins over ``default_scheme`` (as with the consul CLI, where
        ``CONSUL_HTTP_ADDR=http://...`` is plain HTTP even with ``CONSUL_HTTP_SSL=true``).
        ``unix://`` sockets are not supported.
        """
        raw = text.strip()
        scheme = default_scheme
        if "://" in raw:
            scheme, raw = raw.split("://", 1)
            scheme = scheme.lower()
            if scheme == "unix":
                raise ConsulConfigError(
                    f"Consul address {text!r}: unix:// sockets are not supported, "
                    "use http://host:port or https://host:port"
                )
            if scheme not in ("http", "https"):
                raise ConsulConfigError(
                    f"Consul address {text!r}: scheme must be http or https, got {scheme!r}"
                )
        raw = raw.rstrip("/")
        if "/" in raw:
            raise ConsulConfigError(f"Consul address {text!r}: expected host:port without a path")
        host, port_text = raw, ""
        if raw.startswith("["):
            end = raw.find("]")
            if end < 0:
                raise ConsulConfigError(f"Consul address {text!r}: unclosed '[' in IPv6 address")
            host, rest = raw[1:end], raw[end + 1 :]
            if rest and not rest.startswith(":"):
                raise ConsulConfigError(f"Consul address {text!r}: expected [ipv6]:port")
            port_text = rest[1:]
        elif raw.count(":") == 1:
            host, port_text = raw.split(":")
        elif raw.count(":") > 1:
            raise ConsulConfigError(
                f"Consul address {text!r}: put IPv6 addresses in brackets, e.g. [::1]:8500"
            )
        port = DEFAULT_PORT
        if port_text:
            if not port_text.isdigit():
                raise ConsulConfigError(f"Consul address {text!r}: port must be a number")
            port = int(port_text)
        return cls(host=host, port=port, scheme=scheme)

    @property
    def base_url(self) -> str:
        """``scheme://host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def __str__(self) -> str:
        return self.base_url


@dataclass(frozen=True, slots=True, repr=False)
class ConsulConfig:
    """Everything needed to talk to Consul's HTTP API.

    Attributes:
        addresses: agents to use, in order of preference. The client sticks to the first one that
            works and moves to the next when it cannot connect.
        token: ACL token sent as ``X-Consul-Token`` (never shown in ``repr``/logs/errors).
        datacenter: default ``?dc=`` for calls that do not name one (``None``: the agent's).
        ca_file: PEM file of CAs to verify the agent's certificate (``None``: system CAs).
        client_cert, client_key: PEM client certificate and key for mutual TLS.
        tls_server_name: host name expected in the agent's certificate (SNI and verification),
            when it differs from the address's host.
        verify: verify the agent's certificate (``CONSUL_HTTP_SSL_VERIFY=false`` turns it off).
        connect_timeout: seconds to establish a connection to one agent. 2 s: agents are local or
            on the LAN, and a dead one must not hold up failing over to the next.
        request_timeout: total seconds for a non-blocking call. 10 s: non-blocking reads and agent
            writes complete in milliseconds (1–3 ms measured on Consul 1.0.8); a remote-datacenter
            call that hangs this long is better reported as an error. Blocking calls compute their
            own timeout from ``wait`` (see :mod:`mcresolve.consul.blocking`).
    """

    addresses: tuple[ConsulAddress, ...] = (ConsulAddress("127.0.0.1"),)
    token: str | None = field(default=None, compare=False)
    datacenter: str | None = None
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    tls_server_name: str | None = None
    verify: bool = True
    connect_timeout: float = 2.0
    request_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.addresses:
            raise ConsulConfigError("at least one Consul address is needed")
        if bool(self.client_cert) != bool(self.client_key):
            raise ConsulConfigError("a TLS client certificate needs its key, and the key its cert")
        if not self.connect_timeout > 0 or not self.request_timeout > 0:
            raise ConsulConfigError("Consul timeouts must be > 0 seconds")
        if self.token is not None and any(c in self.token for c in "\r\n"):
            raise ConsulConfigError("the Consul token must not contain line breaks")

    @classmethod
    def for_addresses(
        cls, *addresses: str, scheme: str = "http", **options: object
    ) -> ConsulConfig:
        """Build a config from address strings (``"127.0.0.1:8500"``, ``"https://c1:8501"``);
        addresses without a scheme use ``scheme``. Other keyword arguments are fields."""
        parsed = tuple(ConsulAddress.parse(a, scheme) for a in addresses)
        return cls(addresses=parsed, **options)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConsulConfig:
        """Read the consul CLI's environment variables.

        ``CONSUL_HTTP_ADDR`` (``host:port`` or ``http(s)://host:port``; several addresses may be
        given separated by commas, an mcresolve extension), ``CONSUL_HTTP_TOKEN``,
        ``CONSUL_HTTP_TOKEN_FILE`` (wins over ``CONSUL_HTTP_TOKEN`` when it holds a token, like
        the Go API client), ``CONSUL_HTTP_SSL``, ``CONSUL_CACERT``, ``CONSUL_CLIENT_CERT``,
        ``CONSUL_CLIENT_KEY``, ``CONSUL_TLS_SERVER_NAME``, ``CONSUL_HTTP_SSL_VERIFY``.
        Unset or empty variables keep the defaults.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        scheme = "http"
        ssl_flag = get("CONSUL_HTTP_SSL")
        if ssl_flag is not None and parse_bool("CONSUL_HTTP_SSL", ssl_flag):
            scheme = "https"
        addr_text = get("CONSUL_HTTP_ADDR") or DEFAULT_ADDRESS
        parts = [p for p in (s.strip() for s in addr_text.split(",")) if p]
        if not parts:
            raise ConsulConfigError(f"CONSUL_HTTP_ADDR holds no address: {addr_text!r}")
        addresses = tuple(ConsulAddress.parse(p, scheme) for p in parts)

        token = get("CONSUL_HTTP_TOKEN")
        token_file = get("CONSUL_HTTP_TOKEN_FILE")
        if token_file is not None:
            try:
                from_file = Path(token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConsulConfigError(
                    f"CONSUL_HTTP_TOKEN_FILE {token_file!r} cannot be read: {exc.strerror}"
                ) from None
            token = from_file or token

        verify_text = get("CONSUL_HTTP_SSL_VERIFY")
        verify = True if verify_text is None else parse_bool("CONSUL_HTTP_SSL_VERIFY", verify_text)
        return cls(
            addresses=addresses,
            token=token,
            ca_file=get("CONSUL_CACERT"),
            client_cert=get("CONSUL_CLIENT_CERT"),
            client_key=get("CONSUL_CLIENT_KEY"),
            tls_server_name=get("CONSUL_TLS_SERVER_NAME"),
            verify=verify,
        )

    def with_options(self, **changes: object) -> ConsulConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def uses_tls(self) -> bool:
        """Whether any address is ``https``."""
        return any(a.scheme == "https" for a in self.addresses)

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for ``https`` addresses (CA file, client certificate, verification)."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.client_cert and self.client_key:
                context.load_cert_chain(self.client_cert, self.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConsulConfigError(f"cannot load Consul TLS files: {exc}") from None
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def __repr__(self) -> str:
        token = "'<redacted>'" if self.token else "None"
        addresses = ", ".join(repr(a.base_url) for a in self.addresses)
        return (
            f"ConsulConfig(addresses=({addresses}), token={token}, "
            f"datacenter={self.datacenter!r}, ca_file={self.ca_file!r}, "
            f"client_cert={self.client_cert!r}, client_key={self.client_key!r}, "
            f"tls_server_name={self.tls_server_name!r}, verify={self.verify!r}, "
            f"connect_timeout={self.connect_timeout!r}, request_timeout={self.request_timeout!r})"
        )

    __str__ = __repr__
