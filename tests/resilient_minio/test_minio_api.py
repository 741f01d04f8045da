"""ResilientMinio's API: same public methods and signatures as ``minio.Minio``; local pieces
(HTTP client policy, external endpoint, operation table) without a cluster."""

from __future__ import annotations

import asyncio
import inspect

import pytest
import urllib3
from minio import Minio

from mcresolve.minio import (
    AsyncResilientMinio,
    ExternalEndpoint,
    HttpPolicy,
    ResilientMinio,
    make_http_client,
)
from mcresolve.minio.client import _multipart_etag
from mcresolve.minio.operations import OPERATIONS, Runner


def public_methods(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_") and callable(getattr(cls, name))}


MINIO_METHODS = public_methods(Minio)


def test_operation_table_covers_exactly_the_public_minio_methods() -> None:
    assert set(OPERATIONS) == MINIO_METHODS


def test_sync_client_defines_every_public_method_itself_with_the_same_signature() -> None:
    assert issubclass(ResilientMinio, Minio)  # isinstance(client, Minio) holds for drop-in use
    own = {name for cls in ResilientMinio.__mro__[:-2] if cls is not Minio for name in vars(cls)}
    assert own >= MINIO_METHODS, f"inherited from Minio, not wrapped: {MINIO_METHODS - own}"
    for name in MINIO_METHODS:
        ours = inspect.signature(getattr(ResilientMinio, name))
        theirs = inspect.signature(getattr(Minio, name))
        assert list(ours.parameters) == list(theirs.parameters), name
        for param in theirs.parameters.values():
            mine = ours.parameters[param.name]
            assert (mine.kind, mine.default) == (param.kind, param.default), (name, param.name)


def test_async_client_has_every_method_as_a_coroutine_with_the_same_parameters() -> None:
    assert public_methods(AsyncResilientMinio) >= MINIO_METHODS
    for name in MINIO_METHODS:
        method = getattr(AsyncResilientMinio, name)
        params = list(inspect.signature(method).parameters)
        assert params == list(inspect.signature(getattr(Minio, name)).parameters), name
        if name in ("list_objects", "remove_objects"):
            assert not inspect.iscoroutinefunction(method)  # returns an awaitable async iterator
        else:
            assert inspect.iscoroutinefunction(method), name


def test_http_client_never_retries_and_has_short_timeouts() -> None:
    http = make_http_client(HttpPolicy(connect_timeout=0.7, read_timeout=3.0, max_connections=5))
    assert isinstance(http, urllib3.PoolManager)
    retries = http.connection_pool_kw["retries"]
    assert retries.total == 0 and retries.status == 0 and retries.redirect == 0
    assert not retries.raise_on_redirect  # 3xx answers go back to minio, which handles them
    assert not retries.raise_on_status
    timeout = http.connection_pool_kw["timeout"]
    assert (timeout.connect_timeout, timeout.read_timeout) == (0.7, 3.0)
    assert http.connection_pool_kw["maxsize"] == 5
    with pytest.raises(ValueError):
        HttpPolicy(read_timeout=0)


def test_http_client_fails_at_once_on_a_closed_port() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        http = make_http_client(HttpPolicy())
        with pytest.raises(urllib3.exceptions.MaxRetryError) as info:
            http.request("GET", f"http://127.0.0.1:{port}/")
    assert isinstance(info.value.reason, urllib3.exceptions.NewConnectionError)


def test_external_endpoint_from_the_articles_environment_variables() -> None:
    assert ExternalEndpoint.from_env({}) is None
    assert ExternalEndpoint.from_env({"MINIO_EXTERNAL_HOST": "  "}) is None
    https = ExternalEndpoint.from_env(
        {"MINIO_EXTERNAL_HOST": "files.example.com", "MINIO_EXTERNAL_PORT": "443"}
    )
    assert https == ExternalEndpoint("files.example.com", 443, True)
    assert https.public_url("b", "a b/c.png") == "https://files.example.com/b/a%20b/c.png"
    plain = ExternalEndpoint.from_env({"MINIO_EXTERNAL_HOST": "cdn", "MINIO_EXTERNAL_PORT": "80"})
    assert plain is not None and not plain.secure and plain.netloc == "cdn"
    odd = ExternalEndpoint.from_env(
        {
            "MINIO_EXTERNAL_HOST": "cdn",
            "MINIO_EXTERNAL_PORT": "8080",
            "MINIO_EXTERNAL_SECURE": "false",
        }
    )
    assert odd is not None and odd.netloc == "cdn:8080" and not odd.secure
    with pytest.raises(ValueError, match="MINIO_EXTERNAL_PORT"):
        ExternalEndpoint.from_env({"MINIO_EXTERNAL_HOST": "cdn", "MINIO_EXTERNAL_PORT": "x"})
    with pytest.raises(ValueError, match="host"):
        ExternalEndpoint("http://cdn/")


def test_multipart_etag_is_md5_of_part_md5s() -> None:
    import hashlib

    parts = [hashlib.md5(b"a").hexdigest(), hashlib.md5(b"b").hexdigest()]
    expected = hashlib.md5(bytes.fromhex(parts[0]) + bytes.fromhex(parts[1])).hexdigest()
    assert _multipart_etag(parts) == f"{expected}-2"
    assert _multipart_etag([f'"{parts[0]}"']).endswith("-1")


def test_every_local_operation_sends_nothing_and_special_ones_are_implemented() -> None:
    for name, operation in OPERATIONS.items():
        if operation.runner is Runner.SPECIAL:
            assert name in vars(ResilientMinio), name
        if operation.runner is Runner.LOCAL:
            assert name in vars(ResilientMinio), name  # explicit, not the generic forwarder


def test_async_client_requires_start_for_a_target() -> None:
    client = AsyncResilientMinio("static://127.0.0.1:9")
    with pytest.raises(RuntimeError, match="not started"):
        _ = client.sync
    asyncio.run(client.close())
