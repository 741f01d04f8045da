"""ResilientMinio's API: same public methods and signatures as ``minio.Minio``; local pieces
(HTTP client policy, external endpoint, operation table) without a cluster."""

from __future__ import annotations

import asyncio
import collections.abc
import inspect
import sys
import typing
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import urllib3
from minio import Minio
from minio.datatypes import Object

from mcresolve.minio import (
    AsyncResilientMinio,
    AwaitableAsyncIterable,
    ExternalEndpoint,
    HttpPolicy,
    ResilientMinio,
    make_http_client,
)
from mcresolve.minio.aio import ITERATING_METHODS, AsyncResultIterator
from mcresolve.minio.client import _multipart_etag
from mcresolve.minio.operations import OPERATIONS, Runner


def public_methods(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_") and callable(getattr(cls, name))}


MINIO_METHODS = public_methods(Minio)
NO_ANNOTATION = inspect.Signature.empty
#: Where minio leaves the return type out but documents and returns a value, we may name it.
NAMED_WHERE_MINIO_IS_SILENT: dict[str, object] = {"list_objects": Iterator[Object]}


def hints(function: Callable[..., Any]) -> dict[str, object]:
    """Evaluated annotations of ``function``, in the module it says it comes from (the
    generated forwarders and coroutines carry minio's string annotations and module)."""
    return typing.get_type_hints(function, globalns=vars(sys.modules[function.__module__]))


def return_type(function: Callable[..., Any]) -> object:
    """The evaluated return annotation (``NO_ANNOTATION`` when there is none)."""
    return hints(function).get("return", NO_ANNOTATION)


def minio_return_type(name: str) -> object:
    """What ``minio.Minio.<name>`` returns (documented, where it does not annotate)."""
    theirs = return_type(getattr(Minio, name))
    return NAMED_WHERE_MINIO_IS_SILENT.get(name, theirs) if theirs is NO_ANNOTATION else theirs


def iterated_type(annotation: object) -> object | None:
    """``T`` when ``annotation`` is ``Iterator[T]`` (typing or collections.abc), else None."""
    if typing.get_origin(annotation) is collections.abc.Iterator:
        (item,) = typing.get_args(annotation)
        return item
    return None


def same_or_narrower(ours: object, theirs: object) -> bool:
    """``ours`` is ``theirs`` or a subclass of it (a drop-in may return a more precise type)."""
    if ours == theirs:
        return True
    origin = typing.get_origin(ours)
    if origin is not None and origin == typing.get_origin(theirs):  # typing.X vs abc.X
        return typing.get_args(ours) == typing.get_args(theirs)
    return isinstance(ours, type) and isinstance(theirs, type) and issubclass(ours, theirs)


def same_parameter_annotations(cls: type, name: str) -> None:
    """Every parameter of ``cls.<name>`` is annotated exactly as in ``minio.Minio`` (``Any``
    where minio is precise would hide type errors from callers)."""
    theirs = {k: v for k, v in hints(getattr(Minio, name)).items() if k != "return"}
    ours = {k: v for k, v in hints(getattr(cls, name)).items() if k not in ("return", "self")}
    assert ours.keys() == theirs.keys(), (cls.__name__, name, ours.keys() ^ theirs.keys())
    for param, annotation in theirs.items():
        assert ours[param] == annotation, (cls.__name__, name, param, ours[param], annotation)


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


def test_sync_client_annotates_parameters_as_minio() -> None:
    for name in sorted(MINIO_METHODS):
        same_parameter_annotations(ResilientMinio, name)


def test_sync_client_returns_the_same_types_as_minio() -> None:
    for name in sorted(MINIO_METHODS):
        theirs = return_type(getattr(Minio, name))
        ours = return_type(getattr(ResilientMinio, name))
        if theirs is NO_ANNOTATION:
            # minio returns None here (or what NAMED_WHERE_MINIO_IS_SILENT says)
            expected = NAMED_WHERE_MINIO_IS_SILENT.get(name, type(None))
            assert ours in (NO_ANNOTATION, expected), (name, ours)
        else:
            assert same_or_narrower(ours, theirs), (name, ours, theirs)


def test_async_client_follows_the_documented_return_rule() -> None:
    """A coroutine awaiting to minio's return type, except where minio returns ``Iterator[T]``:
    a plain method returning ``AwaitableAsyncIterable[T]`` (see ``mcresolve.minio.aio``)."""
    iterating = {name for name in MINIO_METHODS if iterated_type(minio_return_type(name))}
    assert iterating == ITERATING_METHODS == {"list_objects", "remove_objects"}
    for name in sorted(MINIO_METHODS):
        method = getattr(AsyncResilientMinio, name)
        theirs = minio_return_type(name)
        ours = return_type(method)
        item = iterated_type(theirs)
        if item is not None:
            assert not inspect.iscoroutinefunction(method), name
            assert ours == AwaitableAsyncIterable[item], (name, ours)  # type: ignore[valid-type]
        else:
            assert inspect.iscoroutinefunction(method), name
            assert ours == return_type(getattr(Minio, name)), (name, ours, theirs)


def test_async_iterating_results_implement_the_protocol() -> None:
    result = AsyncResultIterator(lambda: iter([1, 2]), run=lambda fn, *a: fn(*a))
    assert isinstance(result, collections.abc.AsyncIterable)
    assert isinstance(result, collections.abc.Awaitable)
    protocol_members = {"__aiter__", "__await__"}
    assert protocol_members <= set(vars(AwaitableAsyncIterable))
    assert protocol_members <= set(vars(AsyncResultIterator))


def test_async_client_has_every_method_with_minios_parameters() -> None:
    assert public_methods(AsyncResilientMinio) >= MINIO_METHODS
    for name in MINIO_METHODS:
        method = getattr(AsyncResilientMinio, name)
        ours = inspect.signature(method)
        theirs = inspect.signature(getattr(Minio, name))
        assert list(ours.parameters) == list(theirs.parameters), name
        for param in theirs.parameters.values():
            mine = ours.parameters[param.name]
            assert (mine.kind, mine.default) == (param.kind, param.default), (name, param.name)
        same_parameter_annotations(AsyncResilientMinio, name)


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
    client = AsyncResilientMinio("static://127.0.0.1:9", secure=False)
    with pytest.raises(RuntimeError, match="not started"):
        _ = client.sync
    asyncio.run(client.close())
