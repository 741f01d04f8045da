"""Constructing ResilientMinio / AsyncResilientMinio as ``minio.Minio`` is constructed: minio's
parameters in minio's order with minio's defaults (positionally too), ``http_client`` refused
with a reason, ``cert_check=False`` really skipping verification (self-signed certificate made
with the openssl command, HTTPS server on loopback), and every argument checked at construction
with a ``TypeError``/``ValueError`` that names the parameter."""

from __future__ import annotations

import asyncio
import http.server
import inspect
import math
import shutil
import ssl
import subprocess
import threading
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from minio import Minio

from mcresolve.endpoint import Endpoint
from mcresolve.errors import McResolveError
from mcresolve.minio import AsyncResilientMinio, HttpPolicy, ResilientMinio
from mcresolve.pool import EndpointPool
from mcresolve.pool.call_policy import CallPolicy

CLOSED = "static://127.0.0.1:9"
ENDPOINT = Endpoint("127.0.0.1", 9)
ENDPOINT_TYPES = {"endpoint"}  # ours also takes targets and pools, minio a "host:port" str


def minio_parameters() -> list[inspect.Parameter]:
    return [p for p in inspect.signature(Minio.__init__).parameters.values() if p.name != "self"]


def hints(function: Any) -> dict[str, object]:
    import sys

    return typing.get_type_hints(function, globalns=vars(sys.modules[function.__module__]))


@pytest.mark.parametrize("cls", [ResilientMinio, AsyncResilientMinio])
def test_constructor_takes_minios_parameters_in_its_order_with_its_defaults(cls: type) -> None:
    """Compared with whatever minio is installed: the same names in the same order, the same
    defaults and annotations; callable every way minio's is (a parameter minio takes
    positionally is positional here too; where minio is keyword-only either is accepted);
    everything of ours comes after them, keyword-only."""
    ours = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    theirs = minio_parameters()
    assert [p.name for p in ours[: len(theirs)]] == [p.name for p in theirs]
    our_hints, their_hints = hints(cls.__init__), hints(Minio.__init__)
    for mine, param in zip(ours, theirs, strict=False):
        assert mine.default == param.default, param.name
        if param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            assert mine.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, param.name
        else:
            assert mine.kind in (param.kind, inspect.Parameter.POSITIONAL_OR_KEYWORD), param.name
        if param.name not in ENDPOINT_TYPES:
            assert our_hints[param.name] == their_hints[param.name], param.name
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in ours[len(theirs) :])


def test_minios_positional_call_builds_clients_as_minio_would() -> None:
    """``Minio(endpoint, access_key, secret_key, session_token, secure, region)``: the
    per-endpoint client gets the same scheme, keys and region."""
    pool = EndpointPool(CLOSED)  # never started: nothing is sent
    client = ResilientMinio(pool, "AKIA", "s3cr3t", None, False, "eu-west-1")
    bare = Minio("127.0.0.1:9", "AKIA", "s3cr3t", None, False, "eu-west-1")
    try:
        ours = client.client_for(ENDPOINT)
        assert ours._base_url.is_https is bare._base_url.is_https is False
        assert ours._base_url.region == bare._base_url.region == "eu-west-1"
        assert ours._provider is not None and bare._provider is not None
        assert ours._provider.retrieve().access_key == "AKIA"
    finally:
        client.close()


def test_secure_defaults_to_https_as_minio() -> None:
    pool = EndpointPool(CLOSED)
    client = ResilientMinio(pool, "k", "s")
    try:
        assert client.client_for(ENDPOINT)._base_url.is_https
        assert Minio("127.0.0.1:9", "k", "s")._base_url.is_https
    finally:
        client.close()


@pytest.mark.parametrize("cls", [ResilientMinio, AsyncResilientMinio])
def test_a_callers_http_client_is_refused_with_the_reason_and_what_to_pass(cls: type) -> None:
    with pytest.raises(ValueError, match="http_client") as info:
        cls(CLOSED, "k", "s", None, False, None, urllib3.PoolManager())
    message = str(info.value)
    assert "retr" in message and "HttpPolicy" in message and "cert_check" in message


def test_async_client_reports_a_misspelled_keyword_at_construction() -> None:
    with pytest.raises(TypeError, match="acess_key"):
        AsyncResilientMinio(CLOSED, acess_key="k")  # type: ignore[call-arg]


@pytest.mark.parametrize("cls", [ResilientMinio, AsyncResilientMinio])
@pytest.mark.parametrize("endpoint", [None, 123, b"static://127.0.0.1:9", ["x"], 1.5])
def test_endpoint_of_the_wrong_type_is_a_type_error_naming_it(cls: type, endpoint: Any) -> None:
    with pytest.raises(TypeError, match=r"^endpoint must be"):
        cls(endpoint)


#: Valid values of each checked parameter (anything else must be refused by name).
VALID: dict[str, Any] = {
    "access_key": st.one_of(st.none(), st.text(max_size=5)),
    "session_token": st.one_of(st.none(), st.text(max_size=5)),
    "secure": st.booleans(),
    "region": st.one_of(st.none(), st.text(max_size=5)),
    "cert_check": st.booleans(),
    "local_datacenter": st.one_of(st.none(), st.text(max_size=5)),
    "ready_timeout": st.one_of(st.none(), st.floats(0, 100), st.integers(0, 100)),
    "list_page_size": st.integers(1, 1000),
    "workers": st.integers(1, 64),
}
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.just(object()),
    st.just(CallPolicy()),
    st.just(HttpPolicy()),
)
OPTIONAL_OBJECTS = ("http", "call_policy", "external", "consul", "pool_policy", "credentials")


def _accepted(name: str, value: Any) -> bool:
    """Whether ``value`` is valid for ``name`` (the rule the constructors document)."""
    if name in ("access_key", "session_token", "region", "local_datacenter"):
        return value is None or isinstance(value, str)
    if name in ("secure", "cert_check"):
        return isinstance(value, bool)
    if name == "ready_timeout":
        return value is None or (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value >= 0
        )
    if name == "list_page_size":
        return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1000
    if name == "workers":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if name == "http":
        return value is None or isinstance(value, HttpPolicy)
    if name == "call_policy":
        return value is None or isinstance(value, CallPolicy)
    return value is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(VALID) + list(OPTIONAL_OBJECTS)),
    value=HOSTILE,
    asynchronous=st.booleans(),
)
def test_any_argument_is_accepted_or_refused_by_name(
    name: str, value: Any, asynchronous: bool
) -> None:
    """Invariant: each argument either builds a client or raises ``TypeError``/``ValueError``
    whose message starts with the parameter's name — never another exception."""
    if name == "workers" and not asynchronous:
        return
    pool = EndpointPool(CLOSED)  # never started: construction sends nothing
    kwargs: dict[str, Any] = {name: value}
    if name == "access_key" and value:
        kwargs["secret_key"] = "s"
    try:
        client: Any = (AsyncResilientMinio if asynchronous else ResilientMinio)(pool, **kwargs)
    except (TypeError, ValueError) as exc:
        assert not _accepted(name, value), (name, value, exc)
        assert str(exc).startswith(name), (name, str(exc))
        return
    assert _accepted(name, value), (name, value)
    if asynchronous:
        asyncio.run(client.close())
    else:
        client.close()


def test_with_policy_checks_its_argument() -> None:
    client = ResilientMinio(EndpointPool(CLOSED), secure=False)
    try:
        with pytest.raises(TypeError, match=r"^policy must be"):
            client.with_policy(5)  # type: ignore[arg-type]
    finally:
        client.close()


# --- cert_check against a self-signed HTTPS server on loopback --------------------------------

openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=storage.invalid", "-keyout", str(key),
         "-out", str(cert), "-addext", "subjectAltName=DNS:storage.invalid"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class _BucketHandler(http.server.BaseHTTPRequestHandler):
    """Answers HEAD /<bucket> with 200 (``bucket_exists`` is True) and counts requests."""

    requests: typing.ClassVar[list[str]] = []

    def do_HEAD(self) -> None:
        type(self).requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def https_server(certificate: tuple[Path, Path]) -> Iterator[tuple[int, list[str]]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    requests: list[str] = []
    handler = type("Handler", (_BucketHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


ONE_TRY = CallPolicy(attempt_timeout=5.0, deadline=5.0, max_attempts=1)


@openssl
def test_cert_check_false_reaches_a_self_signed_server(https_server: tuple[int, list[str]]) -> None:
    port, requests = https_server
    with ResilientMinio(
        f"static://127.0.0.1:{port}", "k", "s", None, True, "us-east-1", None, None, False,
        call_policy=ONE_TRY,
    ) as client:  # fmt: skip
        assert client.bucket_exists("bucket") is True
    assert requests == ["/bucket"]


@openssl
def test_cert_check_false_in_the_async_client(https_server: tuple[int, list[str]]) -> None:
    port, requests = https_server

    async def run() -> bool:
        async with AsyncResilientMinio(
            f"static://127.0.0.1:{port}", "k", "s", region="us-east-1", cert_check=False,
            call_policy=ONE_TRY,
        ) as client:  # fmt: skip
            result: bool = await client.bucket_exists("bucket")
            return result

    assert asyncio.run(run()) is True
    assert requests == ["/bucket"]


@openssl
def test_certificates_are_checked_by_default(https_server: tuple[int, list[str]]) -> None:
    """The same server with minio's default ``cert_check=True``: the handshake fails, no
    request is answered."""
    port, requests = https_server
    with (
        ResilientMinio(
            f"static://127.0.0.1:{port}", "k", "s", region="us-east-1", call_policy=ONE_TRY
        ) as client,
        pytest.raises((McResolveError, urllib3.exceptions.HTTPError, OSError)),
    ):
        client.bucket_exists("bucket")
    assert requests == []
