"""ResilientMinio's API: same public methods and signatures as ``minio.Minio``; local pieces
(HTTP client policy, external endpoint, operation table) without a cluster."""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Callable, Iterator
from typing import Any

import minio.api
import pytest
import urllib3
from minio import Minio
from minio.datatypes import Object

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
NO_ANNOTATION = inspect.Signature.empty
#: Where minio leaves the return type out but documents and returns a value, we may name it.
NAMED_WHERE_MINIO_IS_SILENT: dict[str, object] = {"list_objects": Iterator[Object]}
#: Known differences, asserted as they are so that a fix shows up here (the owner of
#: ``mcresolve/minio`` should remove them): ``listen_bucket_notification`` returns the endpoint
#: client's ``EventIterable`` but is annotated ``Any``.
SYNC_RETURN_DEVIATIONS: dict[str, object] = {"listen_bucket_notification": Any}
#: The async iterating methods return an async iterator but keep minio's synchronous annotation
#: (their ``__signature__`` is copied from ``minio.Minio``).
ASYNC_ITERATING = ("list_objects", "remove_objects")


def return_type(function: Callable[..., Any], namespace: dict[str, Any] | None = None) -> object:
    """The evaluated return annotation (``NO_ANNOTATION`` when there is none). ``namespace``:
    where string annotations copied from another module are evaluated."""
    hints = typing.get_type_hints(function, globalns=namespace)
    return hints.get("return", NO_ANNOTATION)


def same_or_narrower(ours: object, theirs: object) -> bool:
    """``ours`` is ``theirs`` or a subclass of it (a drop-in may return a more precise type)."""
    if ours == theirs:
        return True
    origin = typing.get_origin(ours)
    if origin is not None and origin == typing.get_origin(theirs):  # typing.X vs abc.X
        return typing.get_args(ours) == typing.get_args(theirs)
    return isinstance(ours, type) and isinstance(theirs, type) and issubclass(ours, theirs)


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


def test_sync_client_returns_the_same_types_as_minio() -> None:
    for name in sorted(MINIO_METHODS):
        theirs = return_type(getattr(Minio, name))
        ours = return_type(getattr(ResilientMinio, name))
        if name in SYNC_RETURN_DEVIATIONS:
            assert not same_or_narrower(ours, theirs), f"{name} was fixed: drop the deviation"
            assert ours == SYNC_RETURN_DEVIATIONS[name], name
        elif theirs is NO_ANNOTATION:
            # minio returns None here (or what NAMED_WHERE_MINIO_IS_SILENT says)
            expected = NAMED_WHERE_MINIO_IS_SILENT.get(name, type(None))
            assert ours in (NO_ANNOTATION, expected), (name, ours)
        else:
            assert same_or_narrower(ours, theirs), (name, ours, theirs)


def test_async_client_awaits_to_the_same_types_as_minio() -> None:
    for name in sorted(MINIO_METHODS):
        theirs = return_type(getattr(Minio, name))
        ours = return_type(getattr(AsyncResilientMinio, name), vars(minio.api))
        if name in ASYNC_ITERATING:
            assert not inspect.iscoroutinefunction(getattr(AsyncResilientMinio, name))
            continue  # see ASYNC_ITERATING: annotation copied, returns an async iterator
        assert ours == theirs, (name, ours, theirs)


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
