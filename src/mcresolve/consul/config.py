"""How to reach Consul: agent addresses, ACL token, TLS, timeouts; read from the consul CLI's
environment variables by :meth:`ConsulConfig.from_env`.

The token is a secret: it is excluded from ``repr``/``str`` (shown as ``'<redacted>'``) and never
put in log lines or exception messages.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from mcresolve.arguments import (
    check_instance,
    check_iterable,
    check_optional_str,
)
from mcresolve.consul.errors import ConsulConfigError
from mcresolve.errors import McResolveError

#: Consul's HTTP port.
DEFAULT_PORT = 8500
#: Address used when none is configured (the consul CLI's default).
DEFAULT_ADDRESS = "127.0.0.1:8500"
#: Default bound on one answer's body: 64 MiB. A health entry (node, service, checks) recorded
#: from Consul 1.0.8 is 0.98 kB compact and 1.6 kB as the agent indents it; today's entries carry
#: more fields (``TaggedAddresses``, ``Weights``, ``Proxy``, ``Connect``), about 1.85 kB, so a
#: ``?passing`` answer for 1,000 instances is about 1.85 MB and for 10,000 about 19 MB. 64 MiB
#: leaves more than three times the largest of these.
DEFAULT_MAX_ANSWER_BYTES = 64 * 1024 * 1024
#: Default longest pause while an answer's body is arriving, seconds. Consul encodes the whole
#: answer first and writes it at once (also after a blocking wait, which happens before the
#: headers), so a healthy body flows without pause; 5 s outlasts four successive TCP
#: retransmissions of one segment (200 ms minimum RTO, doubling: 0.2+0.4+0.8+1.6+... = 3 s).
DEFAULT_BODY_IDLE_TIMEOUT = 5.0

#: Default seconds between two looks (``stat``) at ``CONSUL_HTTP_TOKEN_FILE`` for a new token.
#: Kubernetes' client-go re-reads a projected token file once a minute
#: (``transport.NewCachedFileTokenSource``); a ``stat`` costs far less than a read, so the client
#: looks every 10 s and re-reads only when the file's inode, size or modification time changed.
#: A 403 answer makes it look at once, whatever the interval.
DEFAULT_TOKEN_FILE_CHECK_INTERVAL = 10.0

#: Default number of blocking queries held open at once on one agent. Consul's agent accepts
#: ``limits.http_max_conns_per_client`` = 200 concurrent HTTP connections per client IP (its
#: ``agent/config/default.go``; beyond it a 429 "Your IP is issuing too many concurrent
#: connections", a broken pipe over HTTPS) and every blocking query holds one connection for
#: its whole wait. 160 leaves 40 (a fifth): 16 for the watches' immediate reads
#: (:func:`~mcresolve.consul.watch.immediate_slots`), the rest for the non-blocking requests of
#: the same process (prepared-query executions, registration, ``/v1/agent/self``). Lower it
#: when several processes share one IP (containers behind one NAT address) or the agent's limit
#: is lower; raise it with the agent's limit.
DEFAULT_BLOCKING_CONNECTIONS = 160

# Go's strconv.ParseBool, which the consul CLI uses for its boolean variables.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


#: What an address part may look like to be quoted in an error message.
_QUOTABLE = re.compile(r"[A-Za-z0-9._:\[\]-]{1,80}")


def _show(part: str) -> str:
    """An address part for an error message: `` ('part')`` when it is made only of host-name,
    IP and port characters (at most 80), else nothing. Anything else (white space, control
    characters, ``@``, ``/``, ``?``...) could be, or hide, a secret or an injected header."""
    return f" ({part!r})" if _QUOTABLE.fullmatch(part) else ""


def parse_bool(name: str, value: str) -> bool:
    """Parse a boolean environment variable the way the consul CLI does (Go ``ParseBool``)."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConsulConfigError(
        f"{name} must be a boolean (1, t, true, TRUE, 0, f, false, FALSE...), got {value!r}"
    )


#: One host-name label: RFC 1123 letters, digits and inner hyphens, plus the underscore, which
#: the system resolver and Docker's embedded DNS accept in container and service names.
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")
#: The refusal for ``user:password@host``: it must not quote the address (it holds a secret).
_NO_CREDENTIALS = (
    "credentials in the address are not supported; use CONSUL_HTTP_TOKEN (or "
    "CONSUL_HTTP_TOKEN_FILE) for the ACL token"
)


def check_host(host: str) -> str | None:
    """Why ``host`` is not a usable agent host, or ``None`` when it is one.

    Accepted: an IPv4 literal (dotted quad), an IPv6 literal (without brackets and without a
    ``%zone``), or a DNS host name of at most 253 characters whose dot-separated labels are 1-63
    letters, digits, hyphens (not first or last) or underscores, with an optional final dot and
    a last label that is not all digits (``999.1.1.1`` is neither a name nor an address).
    """
    if not host:
        return "the host is empty"
    if not host.isascii() or not host.isprintable() or any(c.isspace() for c in host):
        return "the host contains spaces, control or non-ASCII characters"
    if ":" in host:
        if "%" in host:
            return "IPv6 zones (%interface) are not supported"
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return "the host is not a valid IPv6 address"
        return None
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253:
        return "the host name is longer than 253 characters"
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return "the host is not a valid host name or IP address"
    if labels[-1].isdigit():
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            return "the host is not a valid IPv4 address"
    return None


class _AddressProblem(McResolveError):
    """What is wrong with an address text (internal: turned into a ConsulConfigError)."""


#: How the agent is spoken to (the consul CLI's ``CONSUL_HTTP_ADDR`` schemes).
Scheme = Literal["http", "https"]


def _as_scheme(text: str) -> Scheme | None:
    """``text`` as a :data:`Scheme`, None when it is neither."""
    return "http" if text == "http" else "https" if text == "https" else None


def _split_address(text: str, default_scheme: str) -> tuple[str, int, Scheme]:
    """``(host, port, scheme)`` of an address text (see :meth:`ConsulAddress.parse`)."""
    raw = text.strip()
    if "@" in raw:
        raise _AddressProblem(f"{_NO_CREDENTIALS}")
    if not raw.isprintable() or any(c.isspace() for c in raw):
        raise _AddressProblem(
            "contains white space or control characters (line breaks, tabs...) inside the address"
        )
    scheme = default_scheme
    if "://" in raw:
        scheme, raw = raw.split("://", 1)
        scheme = scheme.lower()
        if scheme == "unix":
            raise _AddressProblem(
                "unix:// sockets are not supported, use http://host:port or https://host:port"
            )
        if scheme not in ("http", "https"):
            raise _AddressProblem(f"scheme must be http or https{_show(scheme)}")
    if raw.endswith("/"):
        raw = raw[:-1]
    if any(c in raw for c in "/?#"):
        raise _AddressProblem("expected [scheme://]host[:port], without a path, query or fragment")
    host, port_text = raw, ""
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise _AddressProblem("unclosed '[' in an IPv6 address")
        host, rest = raw[1:end], raw[end + 1 :]
        if ":" not in host:
            raise _AddressProblem(f"brackets are for IPv6 addresses{_show(host)}")
        if rest and not rest.startswith(":"):
            raise _AddressProblem("expected [ipv6]:port")
        port_text = rest[1:]
        if not port_text and rest:
            raise _AddressProblem("empty port after ':'")
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
        if not port_text:
            raise _AddressProblem("empty port after ':'")
    elif raw.count(":") > 1:
        raise _AddressProblem("put IPv6 addresses in brackets, e.g. [::1]:8500")
    port = DEFAULT_PORT
    if port_text:
        if not _PORT.fullmatch(port_text):
            raise _AddressProblem(f"port must be a number in 1..65535{_show(port_text)}")
        port = int(port_text)
    checked = _as_scheme(scheme)
    if checked is None:
        raise _AddressProblem(f"scheme must be http or https{_show(scheme)}")
    return host, port, checked


@dataclass(frozen=True, slots=True)
class ConsulAddress:
    """One agent's HTTP API address.

    ``host`` is an IP literal (IPv6 without brackets) or a DNS host name (see
    :func:`check_host`); anything else is refused with :class:`ConsulConfigError`, so that no
    malformed name reaches the resolver and no header can be smuggled through an address.
    """

    host: str
    port: int = DEFAULT_PORT
    scheme: Scheme = "http"

    def __post_init__(self) -> None:
        if _as_scheme(self.scheme) is None:
            raise ConsulConfigError("Consul scheme must be http or https")
        if not isinstance(self.host, str) or "@" in self.host:
            raise ConsulConfigError(f"Consul address: {_NO_CREDENTIALS}")
        problem = check_host(self.host)
        if problem is not None:
            raise ConsulConfigError(f"Consul address: {problem}{_show(self.host)}")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise ConsulConfigError("Consul port must be an integer")
        if not 0 < self.port < 65536:
            raise ConsulConfigError(f"Consul port must be in 1..65535, got {self.port!r}")

    @classmethod
    def parse(cls, text: str, default_scheme: str = "http") -> ConsulAddress:
        """Parse ``host:port``, ``http://host:port``, ``https://host``, ``[::1]:8500``...

        A scheme in the text wins over ``default_scheme`` (as with the consul CLI, where
        ``CONSUL_HTTP_ADDR=http://...`` is plain HTTP even with ``CONSUL_HTTP_SSL=true``).
        Surrounding white space and one trailing ``/`` are ignored. Refused with
        :class:`ConsulConfigError`: ``unix://`` sockets, other schemes, user-info
        (``user:password@``: the message never repeats the address), a path, query or fragment,
        white space or control characters inside, an invalid host (see :func:`check_host`), a
        port outside 1-65535. Error messages quote only the part at fault, never the whole text.
        """
        try:
            host, port, scheme = _split_address(text, default_scheme)
        except _AddressProblem as problem:
            raise ConsulConfigError(f"Consul address: {problem}") from None
        return cls(host=host, port=port, scheme=scheme)

    @property
    def base_url(self) -> str:
        """``scheme://host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def __str__(self) -> str:
        return self.base_url


def parse_addresses(text: str, scheme: str, origin: str) -> tuple[ConsulAddress, ...]:
    """Parse a comma-separated list of addresses (``CONSUL_HTTP_ADDR``, ``--consul-addr``) with
    :meth:`ConsulAddress.parse`; ``origin`` names where the text came from in error messages
    (which say which address is at fault by position, never quoting the text)."""
    parts = [p.strip() for p in text.split(",")]
    parts = [p for p in parts if p]
    if not parts:
        raise ConsulConfigError(f"{origin} holds no address")
    addresses = []
    for number, part in enumerate(parts, 1):
        try:
            addresses.append(ConsulAddress.parse(part, scheme))
        except ConsulConfigError as error:
            where = f"{origin} (address {number} of {len(parts)})" if len(parts) > 1 else origin
            raise ConsulConfigError(f"{where}: {error}") from None
    return tuple(addresses)


def _is_header_safe(value: str) -> bool:
    """Whether ``value`` can be sent as an HTTP header value as it is: printable ASCII, no white
    space (Consul's tokens are UUIDs)."""
    return value.isascii() and value.isprintable() and not any(c.isspace() for c in value)


@dataclass(frozen=True, slots=True, repr=False)
class BasicAuth:
    """HTTP basic-auth credentials (``CONSUL_HTTP_AUTH=user:password``), for agents behind a
    proxy that asks for them; sent as ``Authorization: Basic`` beside the ACL token, as
    Consul's Go client does. The password is never shown by ``repr``/``str``."""

    username: str
    password: str = ""

    def __post_init__(self) -> None:
        for part in (self.username, self.password):
            if not isinstance(part, str) or not part.isprintable():
                raise ConsulConfigError(
                    "CONSUL_HTTP_AUTH: user name and password must be printable text (no line "
                    "breaks or control characters)"
                )
        if ":" in self.username:
            raise ConsulConfigError("CONSUL_HTTP_AUTH: the user name cannot contain ':'")

    @classmethod
    def parse(cls, text: str) -> BasicAuth:
        """``user:password`` (split at the first ``:``), or ``user`` alone (empty password),
        as Consul's Go client reads ``CONSUL_HTTP_AUTH`` (api/api.go)."""
        username, _, password = text.partition(":")
        return cls(username, password)

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r}, password='<redacted>')"

    __str__ = __repr__


def _show_path(path: str) -> str:
    """A file path for an error message: quoted, or a placeholder when it holds control
    characters (an error stays one line) or is absurdly long. Paths are not secrets."""
    return repr(path) if path.isprintable() and len(path) <= 300 else "(unprintable path)"


def _check_readable(what: str, path: str, *, directory: bool = False) -> None:
    """Raise :class:`ConsulConfigError` naming ``what`` (the field and its variable) and
    ``path`` unless ``path`` is a readable file (or, with ``directory``, a listable directory)."""
    shown = _show_path(path)
    try:
        if directory:
            if not os.path.isdir(path):
                raise ConsulConfigError(f"{what} {shown} is not a directory")
            os.listdir(path)
        else:
            with open(path, "rb"):
                pass
    except ConsulConfigError:
        raise
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConsulConfigError(f"{what} {shown} cannot be read: {reason}") from None


@dataclass(frozen=True, slots=True, repr=False)
class ConsulConfig:
    """Everything needed to talk to Consul's HTTP API.

    Attributes:
        addresses: agents to use, in order of preference. The client sticks to the first one that
            works and moves to the next when it cannot connect.
        token: ACL token sent as ``X-Consul-Token`` (never shown in ``repr``/logs/errors).
        token_file: a file holding the ACL token (``CONSUL_HTTP_TOKEN_FILE``). Read at once
            (its token wins over ``token`` when it holds one, like Consul's Go client), and,
            unlike that client, re-read while the client runs: when the file changed (looked at
            every ``token_file_check_interval`` seconds) and after a 403 answer, which is then
            retried once if the token changed. Rotating the file needs no restart.
        token_file_check_interval: seconds between two looks at ``token_file`` (see
            :data:`DEFAULT_TOKEN_FILE_CHECK_INTERVAL`).
        http_auth: HTTP basic-auth credentials (``CONSUL_HTTP_AUTH``), never shown.
        namespace, partition: Consul Enterprise namespace and admin partition
            (``CONSUL_NAMESPACE``, ``CONSUL_PARTITION``), sent as ``?ns=``/``?partition=`` on
            every request, as Consul's Go client does, and only when set: Consul Community
            Edition answers 400 "Namespaces are a Consul Enterprise feature" to any ``ns``,
            even ``default``.
        datacenter: default ``?dc=`` for calls that do not name one (``None``: the agent's).
        ca_file: PEM file of CAs to verify the agent's certificate (``None``: system CAs).
        ca_path: directory of PEM CA files (``CONSUL_CAPATH``, OpenSSL's hashed layout).
            The TLS files and directory must exist and be readable when the configuration is
            made: a missing one is a :class:`ConsulConfigError` naming the setting and the path.
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
        body_idle_timeout: longest pause, in seconds, between two pieces of an answer's body once
            its headers have arrived (see :data:`DEFAULT_BODY_IDLE_TIMEOUT`); a longer pause
            raises :class:`~mcresolve.consul.errors.ConsulBodyStalled` at once instead of
            waiting for the call's whole timeout (``wait + wait/16 + 3 s`` for a blocking
            query, since the wait happens before the headers).
        max_answer_bytes: largest answer body read, in bytes (see
            :data:`DEFAULT_MAX_ANSWER_BYTES`); a larger ``Content-Length``, or more bytes
            streamed, raises :class:`~mcresolve.consul.errors.ConsulAnswerTooLarge` without
            reading the rest.
        blocking_connections: blocking queries a process holds open at once on one agent
            (see :data:`DEFAULT_BLOCKING_CONNECTIONS`): the watches' share of the agent's
            per-client connection limit. When more watches run, they take turns with a shorter
            ``wait`` so each still asks once per wait period
            (:func:`~mcresolve.consul.watch.scheduled_wait`).
    """

    addresses: tuple[ConsulAddress, ...] = (ConsulAddress("127.0.0.1"),)
    token: str | None = field(default=None, compare=False)
    datacenter: str | None = None
    ca_file: str | None = None
    ca_path: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    tls_server_name: str | None = None
    verify: bool = True
    connect_timeout: float = 2.0
    request_timeout: float = 10.0
    body_idle_timeout: float = DEFAULT_BODY_IDLE_TIMEOUT
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    token_file: str | None = None
    token_file_check_interval: float = DEFAULT_TOKEN_FILE_CHECK_INTERVAL
    http_auth: BasicAuth | None = None
    namespace: str | None = None
    partition: str | None = None
    blocking_connections: int = DEFAULT_BLOCKING_CONNECTIONS

    def __post_init__(self) -> None:
        _check_config_types(self)
        if self.blocking_connections < 1:
            raise ConsulConfigError(
                f"ConsulConfig.blocking_connections must be >= 1, got {self.blocking_connections}"
            )
        if not self.addresses:
            raise ConsulConfigError("at least one Consul address is needed")
        if not all(isinstance(a, ConsulAddress) for a in self.addresses):
            raise ConsulConfigError(
                "Consul addresses must be ConsulAddress values (use ConsulConfig.for_addresses)"
            )
        if bool(self.client_cert) != bool(self.client_key):
            raise ConsulConfigError("a TLS client certificate needs its key, and the key its cert")
        timeouts = (self.connect_timeout, self.request_timeout, self.body_idle_timeout)
        if not all(t > 0 for t in timeouts):
            raise ConsulConfigError("Consul timeouts must be > 0 seconds")
        if self.max_answer_bytes < 1:
            raise ConsulConfigError(
                f"ConsulConfig.max_answer_bytes must be >= 1, got {self.max_answer_bytes}"
            )
        if self.tls_server_name is not None and (
            ":" in self.tls_server_name or check_host(self.tls_server_name) is not None
        ):
            raise ConsulConfigError(
                "the TLS server name must be a host name "
                f"(CONSUL_TLS_SERVER_NAME){_show(self.tls_server_name)}"
            )
        if self.token is not None and not _is_header_safe(self.token):
            raise ConsulConfigError(
                "the Consul token must be printable ASCII without white space (no line breaks "
                "or control characters)"
            )
        if not self.token_file_check_interval > 0:
            raise ConsulConfigError("token_file_check_interval must be > 0 seconds")
        if self.http_auth is not None and not isinstance(self.http_auth, BasicAuth):
            raise ConsulConfigError("http_auth must be a BasicAuth value (BasicAuth.parse)")
        for name, variable, value in (
            ("namespace", "CONSUL_NAMESPACE", self.namespace),
            ("partition", "CONSUL_PARTITION", self.partition),
        ):
            if value is not None and (not value or not _is_header_safe(value)):
                raise ConsulConfigError(
                    f"the Consul {name} ({variable}) must be a non-empty name without white "
                    f"space or control characters{_show(value)}"
                )
        for what, path, directory in (
            ("ca_file (CONSUL_CACERT)", self.ca_file, False),
            ("ca_path (CONSUL_CAPATH)", self.ca_path, True),
            ("client_cert (CONSUL_CLIENT_CERT)", self.client_cert, False),
            ("client_key (CONSUL_CLIENT_KEY)", self.client_key, False),
            ("token_file (CONSUL_HTTP_TOKEN_FILE)", self.token_file, False),
        ):
            if path is not None:
                _check_readable(what, path, directory=directory)

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
        ``CONSUL_CLIENT_KEY``, ``CONSUL_CAPATH``, ``CONSUL_TLS_SERVER_NAME``,
        ``CONSUL_HTTP_SSL_VERIFY``, ``CONSUL_HTTP_AUTH`` (``user:password``),
        ``CONSUL_NAMESPACE``, ``CONSUL_PARTITION``. Unset or empty variables keep the defaults.
        A TLS file or token file that is missing or unreadable raises
        :class:`ConsulConfigError` naming the variable and the file.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        scheme = "http"
        ssl_flag = get("CONSUL_HTTP_SSL")
        if ssl_flag is not None and parse_bool("CONSUL_HTTP_SSL", ssl_flag):
            scheme = "https"
        addresses = parse_addresses(
            get("CONSUL_HTTP_ADDR") or DEFAULT_ADDRESS, scheme, "CONSUL_HTTP_ADDR"
        )

        token = get("CONSUL_HTTP_TOKEN")
        token_file = get("CONSUL_HTTP_TOKEN_FILE")
        if token_file is not None:
            token = read_token_file(token_file) or token

        auth = env.get("CONSUL_HTTP_AUTH") or None  # not stripped: a password may end in a space
        verify_text = get("CONSUL_HTTP_SSL_VERIFY")
        verify = True if verify_text is None else parse_bool("CONSUL_HTTP_SSL_VERIFY", verify_text)
        return cls(
            addresses=addresses,
            token=token,
            ca_file=get("CONSUL_CACERT"),
            ca_path=get("CONSUL_CAPATH"),
            client_cert=get("CONSUL_CLIENT_CERT"),
            client_key=get("CONSUL_CLIENT_KEY"),
            tls_server_name=get("CONSUL_TLS_SERVER_NAME"),
            verify=verify,
            token_file=token_file,
            http_auth=None if auth is None else BasicAuth.parse(auth),
            namespace=get("CONSUL_NAMESPACE"),
            partition=get("CONSUL_PARTITION"),
        )

    def with_options(self, **changes: object) -> ConsulConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def uses_tls(self) -> bool:
        """Whether any address is ``https``."""
        return any(a.scheme == "https" for a in self.addresses)

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for ``https`` addresses (CA file or directory, client certificate,
        verification). A file that cannot be loaded (not PEM, key not matching the
        certificate) raises :class:`ConsulConfigError` naming the setting and the file."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file, capath=self.ca_path)
        except (OSError, ssl.SSLError) as exc:
            where = f"ca_file (CONSUL_CACERT) {_show_path(self.ca_file)}" if self.ca_file else ""
            if self.ca_path:
                where += " or " if where else ""
                where += f"ca_path (CONSUL_CAPATH) {_show_path(self.ca_path)}"
            raise ConsulConfigError(
                f"cannot load the Consul CA from {where}: {_tls_reason(exc)}"
            ) from None
        if self.client_cert and self.client_key:
            try:
                context.load_cert_chain(self.client_cert, self.client_key)
            except (OSError, ssl.SSLError) as exc:
                raise ConsulConfigError(
                    "cannot load the Consul client certificate "
                    f"(CONSUL_CLIENT_CERT {_show_path(self.client_cert)}, CONSUL_CLIENT_KEY "
                    f"{_show_path(self.client_key)}): {_tls_reason(exc)}"
                ) from None
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
            f"connect_timeout={self.connect_timeout!r}, request_timeout={self.request_timeout!r}, "
            f"body_idle_timeout={self.body_idle_timeout!r}, "
            f"max_answer_bytes={self.max_answer_bytes!r}, ca_path={self.ca_path!r}, "
            f"token_file={self.token_file!r}, "
            f"token_file_check_interval={self.token_file_check_interval!r}, "
            f"http_auth={'<redacted>' if self.http_auth else None!r}, "
            f"namespace={self.namespace!r}, partition={self.partition!r}, "
            f"blocking_connections={self.blocking_connections!r})"
        )

    __str__ = __repr__


def _tls_reason(exc: BaseException) -> str:
    """What went wrong loading a TLS file, in a few words (no file contents)."""
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.strerror or type(exc).__name__
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__


def read_token_file(path: str) -> str | None:
    """The token in ``path`` (surrounding white space removed; ``None`` when the file is empty),
    or :class:`ConsulConfigError` naming ``CONSUL_HTTP_TOKEN_FILE`` and the file when it cannot
    be read or holds something that cannot be a token (the message never quotes the content)."""
    shown = _show_path(path)
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConsulConfigError(
            f"CONSUL_HTTP_TOKEN_FILE {shown} cannot be read: {reason}"
        ) from None
    except UnicodeDecodeError:
        raise ConsulConfigError(f"CONSUL_HTTP_TOKEN_FILE {shown} is not UTF-8 text") from None
    if not text:
        return None
    if not _is_header_safe(text):
        raise ConsulConfigError(
            f"CONSUL_HTTP_TOKEN_FILE {shown}: the token must be printable ASCII without white "
            "space (no line breaks or control characters)"
        )
    return text


def _check_config_types(config: ConsulConfig) -> None:
    """``TypeError``/``ValueError`` naming the field for a value of the wrong kind (the checks
    of what the values mean follow in ``__post_init__``)."""
    check_iterable("ConsulConfig.addresses", config.addresses, "a tuple of ConsulAddress")
    for name in (
        "token",
        "datacenter",
        "ca_file",
        "ca_path",
        "client_cert",
        "client_key",
        "tls_server_name",
        "token_file",
        "namespace",
        "partition",
    ):
        check_optional_str(f"ConsulConfig.{name}", getattr(config, name))
    check_instance("ConsulConfig.verify", config.verify, (bool,), "a bool")
    for name in (
        "connect_timeout",
        "request_timeout",
        "body_idle_timeout",
        "token_file_check_interval",
    ):
        value = getattr(config, name)
        check_instance(f"ConsulConfig.{name}", value, (int, float), "a number of seconds")
        if not (value > 0 and math.isfinite(value)):
            what = "Consul timeouts" if name.endswith("timeout") else name
            raise ConsulConfigError(
                f"ConsulConfig.{name}: {what} must be > 0 seconds and finite, got {value!r}"
            )
    check_instance("ConsulConfig.max_answer_bytes", config.max_answer_bytes, (int,), "an int")
    check_instance(
        "ConsulConfig.blocking_connections", config.blocking_connections, (int,), "an int"
    )
