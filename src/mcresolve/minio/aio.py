"""``AsyncResilientMinio``: the methods of ``minio.Minio`` as coroutines, with failover.

Each call runs the synchronous :class:`~mcresolve.minio.client.ResilientMinio` method on a
private thread pool of ``workers`` threads; the urllib3 pool of every endpoint is sized to the
same number (``HttpPolicy.max_connections``), so no thread waits for a connection and urllib3
never logs "Connection pool is full". The endpoint pool lives on the caller's event loop; the
worker threads use it through its thread-safe ``call_sync``.

Return types: a coroutine awaits to what ``minio.Minio``'s method returns. The two methods
where minio returns an ``Iterator[T]`` (``list_objects``, ``remove_objects``) are not
coroutines: they return an :class:`AwaitableAsyncIterable` ``[T]`` (an
:class:`AsyncResultIterator`), both awaitable (a ``list[T]``) and async-iterable (lazy, page by
page); their parameters are minio's. ``get_object`` returns the same
:class:`~mcresolve.minio.stream.ResumableResponse` as the synchronous client: read it with
``await asyncio.to_thread(response.read)`` (or :meth:`AsyncResilientMinio.read_object`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar

from minio import Minio
from minio.credentials.providers import Provider
from minio.datatypes import Object
from minio.deleteobjects import DeleteError, DeleteObject
from minio.helpers import DictType
from urllib3 import PoolManager

from mcresolve.consul.client import ConsulClient
from mcresolve.consul.config import ConsulConfig
from mcresolve.lifecycle import AsyncStartClose, deprecated_verb
from mcresolve.minio.arguments import (
    check_call,
    check_client_arguments,
    check_instance,
    check_int_range,
    pool_options,
)
from mcresolve.minio.client import ResilientMinio
from mcresolve.minio.external import ExternalEndpoint
from mcresolve.minio.http import HttpPolicy
from mcresolve.minio.operations import OPERATIONS, Runner
from mcresolve.pool import EndpointPool, PoolPolicy
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.sources.target import Target

__all__ = [
    "DEFAULT_WORKERS",
    "ITERATING_METHODS",
    "AsyncResilientMinio",
    "AsyncResultIterator",
    "AwaitableAsyncIterable",
]

T = TypeVar("T")
_END: Any = object()

DEFAULT_WORKERS = 16
"""Threads (and connections per endpoint). ``asyncio.to_thread``'s default executor has
``min(32, cpu + 4)`` threads; 16 keeps a small machine responsive and is above the ~10
concurrent requests per client a MinIO node serves at low latency."""

ITERATING_METHODS = frozenset({"list_objects", "remove_objects"})
"""The methods for which ``minio.Minio`` returns an ``Iterator[T]``: here they return an
:class:`AwaitableAsyncIterable` ``[T]`` instead of a coroutine."""


class AwaitableAsyncIterable(Protocol[T]):
    """What the asyncio facade's listing methods return for minio's ``Iterator[T]``:
    ``async for item in result`` yields the items lazily (each page fetched in a worker thread)
    and ``await result`` gives all of them as a ``list[T]``. :class:`AsyncResultIterator`
    implements it."""

    def __aiter__(self) -> AsyncIterator[T]: ...

    def __await__(self) -> Generator[Any, None, list[T]]: ...


class AsyncResultIterator(Generic[T]):
    """A synchronous iterator driven from a thread pool: ``await it`` gives a list,
    ``async for x in it`` yields items lazily (each page fetched in a worker thread)."""

    def __init__(self, start: Callable[[], Iterator[T]], run: Callable[..., Any]) -> None:
        self._start = start
        self._run = run
        self._iterator: Iterator[T] | None = None

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        iterator = await self._run(self._start)
        while True:
            item = await self._run(next, iterator, _END)
            if item is _END:
                return
            yield item

    async def _all(self) -> list[T]:
        return list(await self._run(lambda: list(self._start())))

    def __await__(self) -> Generator[Any, None, list[T]]:
        return self._all().__await__()


class AsyncResilientMinio(AsyncStartClose):
    """The public methods of ``minio.Minio`` as coroutines, with failover.

    ``endpoint``: a target string, a parsed target, or an :class:`~mcresolve.pool.EndpointPool`
    started on the running loop. With a target, use ``async with AsyncResilientMinio(...)`` or
    ``await client.start()`` (the pool starts on the running loop and waits up to
    ``ready_timeout`` seconds for an endpoint, :class:`~mcresolve.errors.NoEndpointAvailable`
    after that; ``None``: no wait, calls wait for endpoints within their own deadline).
    The positional parameters are ``minio.Minio``'s (``secure=True`` by default, as minio),
    the keyword-only ones those of :class:`~mcresolve.minio.client.ResilientMinio`, plus
    ``workers``: size of the thread pool and of each endpoint's connection pool. Every argument
    is checked here, at construction (``TypeError``/``ValueError`` naming the parameter), not
    when the client starts.
    """

    if TYPE_CHECKING:  # the generated coroutine methods (see _install_coroutines)

        def __getattr__(self, name: str) -> Any: ...

    def __init__(
        self,
        endpoint: str | Target | EndpointPool,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        secure: bool = True,
        region: str | None = None,
        http_client: PoolManager | None = None,
        credentials: Provider | None = None,
        cert_check: bool = True,
        *,
        workers: int = DEFAULT_WORKERS,
        http: HttpPolicy | None = None,
        call_policy: CallPolicy | None = None,
        external: ExternalEndpoint | None = None,
        consul: ConsulClient | ConsulConfig | None = None,
        pool_policy: PoolPolicy | None = None,
        local_datacenter: str | None = None,
        ready_timeout: float | None = 10.0,
        list_page_size: int = 1000,
    ) -> None:
        check_instance(
            "endpoint",
            endpoint,
            (str, Target, EndpointPool),
            "a target string, Target or EndpointPool",
        )
        check_int_range("workers", workers, 1)
        check_client_arguments(
            access_key=access_key,
            secret_key=secret_key,
            session_token=session_token,
            secure=secure,
            region=region,
            http_client=http_client,
            credentials=credentials,
            cert_check=cert_check,
            http=http,
            call_policy=call_policy,
            external=external,
            consul=consul,
            pool_policy=pool_policy,
            local_datacenter=local_datacenter,
            ready_timeout=ready_timeout,
            list_page_size=list_page_size,
        )
        self.workers = workers
        http = http if http is not None else HttpPolicy()
        self._http = replace(http, max_connections=max(http.max_connections, workers))
        if isinstance(endpoint, EndpointPool):
            self._pool: EndpointPool | None = endpoint
            self._owns_pool = False
        else:
            self._pool = None
            self._pool_spec: tuple[str | Target, dict[str, Any]] = (
                endpoint,
                pool_options(consul, pool_policy, local_datacenter),
            )
            self._owns_pool = True
        self._ready_timeout = ready_timeout
        self._client_kwargs: dict[str, Any] = {
            "access_key": access_key,
            "secret_key": secret_key,
            "session_token": session_token,
            "secure": secure,
            "region": region,
            "credentials": credentials,
            "cert_check": cert_check,
            "call_policy": call_policy,
            "external": external,
            "list_page_size": list_page_size,
        }
        self._sync: ResilientMinio | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="mcresolve-minio"
        )
        if self._pool is not None:
            self._make_sync(self._pool)

    def _make_sync(self, pool: EndpointPool) -> None:
        self._sync = ResilientMinio(pool, http=self._http, **self._client_kwargs)

    async def start(self) -> Self:
        """Start the pool built from a target (idempotent) and wait for an endpoint."""
        if self._sync is not None:
            return self
        source, kwargs = self._pool_spec
        pool = EndpointPool(source, **kwargs)
        await pool.start()
        try:
            if self._ready_timeout is not None:
                await pool.wait_ready(self._ready_timeout)
        except BaseException:
            await pool.aclose()
            raise
        self._pool = pool
        self._make_sync(pool)
        return self

    @property
    def sync(self) -> ResilientMinio:
        """The synchronous client the coroutines run (for use from worker threads)."""
        if self._sync is None:
            raise RuntimeError("AsyncResilientMinio is not started (use 'async with' or start())")
        return self._sync

    @property
    def pool(self) -> EndpointPool:
        """The endpoint pool."""
        return self.sync.pool

    async def close(self) -> None:
        """Deprecated: the old name of :meth:`aclose`."""
        deprecated_verb(self, "close")
        await self.aclose()

    async def aclose(self) -> None:
        """Wait for running calls, close connections and the pool this client built
        (``async with`` calls it)."""
        await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(self._executor.shutdown, wait=True)
        )
        if self._sync is not None:
            self._sync.close()
        if self._owns_pool and self._pool is not None:
            await self._pool.aclose()

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def read_object(self, bucket_name: str, object_name: str, **kwargs: Any) -> bytes:
        """The whole body of an object (``get_object`` + read + release, in a worker thread)."""
        check_call("get_object", _without_self("get_object"), (bucket_name, object_name), kwargs)

        def fetch() -> bytes:
            response = self.sync.get_object(bucket_name, object_name, **kwargs)
            try:
                return response.read()
            finally:
                with contextlib.suppress(Exception):
                    response.close()
                    response.release_conn()

        return await self._in_thread(fetch)

    def public_url(self, bucket_name: str, object_name: str) -> str:
        """See :meth:`ResilientMinio.public_url`."""
        return self.sync.public_url(bucket_name, object_name)


# The iterating methods (see ITERATING_METHODS), installed on AsyncResilientMinio below like
# the generated coroutines (statically the class answers every minio method through
# ``__getattr__``; at run time these carry their own, honest return annotations).


def _without_self(name: str) -> inspect.Signature:
    full = inspect.signature(getattr(Minio, name))
    return full.replace(parameters=list(full.parameters.values())[1:])


_SIGNATURES = {name: _without_self(name) for name in ITERATING_METHODS}
"""The iterating methods check their arguments when called, not when first iterated."""


def _list_objects(
    self: AsyncResilientMinio,
    bucket_name: str,
    prefix: str | None = None,
    recursive: bool = False,
    start_after: str | None = None,
    include_user_meta: bool = False,
    include_version: bool = False,
    use_api_v1: bool = False,
    use_url_encoding_type: bool = True,
    fetch_owner: bool = False,
    extra_headers: DictType | None = None,
    extra_query_params: DictType | None = None,
) -> AwaitableAsyncIterable[Object]:
    """As ``minio.Minio.list_objects`` (resumed across endpoints like
    :meth:`ResilientMinio.list_objects`): ``async for`` fetches page by page in worker
    threads, ``await`` gives the whole listing as a list."""
    check_call(
        "list_objects",
        _SIGNATURES["list_objects"],
        (bucket_name, prefix, recursive, start_after, include_user_meta, include_version),
        {
            "use_api_v1": use_api_v1,
            "use_url_encoding_type": use_url_encoding_type,
            "fetch_owner": fetch_owner,
            "extra_headers": extra_headers,
            "extra_query_params": extra_query_params,
        },
    )
    return AsyncResultIterator(
        functools.partial(
            self.sync.list_objects,
            bucket_name,
            prefix,
            recursive,
            start_after,
            include_user_meta,
            include_version,
            use_api_v1,
            use_url_encoding_type,
            fetch_owner,
            extra_headers,
            extra_query_params,
        ),
        self._in_thread,
    )


def _remove_objects(
    self: AsyncResilientMinio,
    bucket_name: str,
    delete_object_list: Iterable[DeleteObject],
    bypass_governance_mode: bool = False,
) -> AwaitableAsyncIterable[DeleteError]:
    """As ``minio.Minio.remove_objects``: the deletion errors, sent in batches of 1000
    (each retried on its own) while ``async for`` iterates, or all at once with ``await``."""
    check_call(
        "remove_objects",
        _SIGNATURES["remove_objects"],
        (bucket_name, delete_object_list, bypass_governance_mode),
        {},
    )
    return AsyncResultIterator(
        functools.partial(
            self.sync.remove_objects, bucket_name, delete_object_list, bypass_governance_mode
        ),
        self._in_thread,
    )


def _coroutine(name: str) -> Callable[..., Any]:
    original = getattr(Minio, name)

    async def method(self: AsyncResilientMinio, *args: Any, **kwargs: Any) -> Any:
        bound = getattr(self.sync, name)
        return await self._in_thread(functools.partial(bound, *args, **kwargs))

    functools.update_wrapper(method, original)
    del method.__wrapped__  # type: ignore[attr-defined]  # inspect must see a coroutine
    method.__signature__ = inspect.signature(original)  # type: ignore[attr-defined]
    return method


def _local(name: str) -> Callable[..., Any]:
    original = getattr(Minio, name)

    async def method(self: AsyncResilientMinio, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.sync, name)(*args, **kwargs)  # no I/O: presigning, settings

    functools.update_wrapper(method, original)
    del method.__wrapped__  # type: ignore[attr-defined]
    method.__signature__ = inspect.signature(original)  # type: ignore[attr-defined]
    return method


def _install_coroutines() -> None:
    for function in (_list_objects, _remove_objects):
        name = function.__name__.lstrip("_")
        function.__name__ = name
        function.__qualname__ = f"AsyncResilientMinio.{name}"
        setattr(AsyncResilientMinio, name, function)
    for name, operation in OPERATIONS.items():
        if name in ITERATING_METHODS:
            continue
        if operation.runner is Runner.LOCAL:
            setattr(AsyncResilientMinio, name, _local(name))
        else:
            setattr(AsyncResilientMinio, name, _coroutine(name))


_install_coroutines()
