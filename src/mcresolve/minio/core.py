"""The core of :class:`~mcresolve.minio.client.ResilientMinio`: its pool, its per-endpoint
``minio.Minio`` clients and the call runner (one operation through the pool, classified
attempt by attempt, hedged only when asked, its final failure mapped to the library's errors).
The upload, download and listing operations build on :meth:`ClientCore._run`."""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Callable, Collection
from dataclasses import replace
from types import TracebackType
from typing import Any, Self, TypeVar

from minio import Minio
from minio.credentials.providers import Provider
from minio.error import MinioException
from urllib3 import PoolManager
from urllib3.response import BaseHTTPResponse
from urllib3.util import Timeout

from mcresolve.consul.client import ConsulClient
from mcresolve.consul.config import ConsulConfig
from mcresolve.endpoint import Endpoint
from mcresolve.errors import McResolveError
from mcresolve.minio.arguments import (
    check_client_arguments,
    check_instance,
    pool_options,
)
from mcresolve.minio.call_classifier import call_classifier
from mcresolve.minio.classify import (
    MalformedAnswer,
    transport_of,
)
from mcresolve.minio.errors import (
    TriedAttempt,
    failure_of_call,
)
from mcresolve.minio.external import ExternalEndpoint
from mcresolve.minio.http import HttpPolicy, answers_received, make_http_client
from mcresolve.minio.operations import Operation
from mcresolve.pool import BackgroundPool, EndpointPool, PoolPolicy
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.pool.planner import attempt_time_left
from mcresolve.sources.target import Target

__all__ = ["ClientCore"]

T = TypeVar("T")


def _within_attempt_time(http: PoolManager, policy: HttpPolicy) -> PoolManager:
    """``http`` whose requests made inside a pool attempt wait at most the attempt's time left
    (:func:`~mcresolve.pool.planner.attempt_time_left`): connect and read timeouts become
    ``min(policy timeout, time left)``, so a node that accepts and never answers cannot hold a
    call past its deadline (``pool.call_sync`` cannot interrupt a running request). Outside an
    attempt (the pages of a listing after the first, a download's body read by the caller)
    the policy's timeouts apply, and a body read later keeps the read timeout its request got.
    """
    urlopen = http.urlopen

    def bounded(method: str, url: str, redirect: bool = True, **kw: Any) -> BaseHTTPResponse:
        left = attempt_time_left()
        if (
            left is not None
            and "timeout" not in kw
            and left < max(policy.connect_timeout, policy.read_timeout)
        ):
            left = max(left, 0.001)  # 0 would mean non-blocking to urllib3
            kw["timeout"] = Timeout(
                connect=min(policy.connect_timeout, left), read=min(policy.read_timeout, left)
            )
        return urlopen(method, url, redirect=redirect, **kw)

    http.urlopen = bounded  # type: ignore[method-assign]
    return http


_NOT_HEDGED = frozenset({"fget_object"})
"""Reads that must not run twice at once: ``fget_object`` writes the object to a local file."""


def _pool_of(
    endpoint: str | Target | EndpointPool | BackgroundPool,
    *,
    consul: ConsulClient | ConsulConfig | None,
    pool_policy: PoolPolicy | None,
    local_datacenter: str | None,
    ready_timeout: float | None,
) -> tuple[EndpointPool, BackgroundPool | None]:
    """The pool a client's calls go through, and the background pool it started for a target
    (which the client closes), or None when it was given a pool."""
    check_instance(
        "endpoint",
        endpoint,
        (str, Target, EndpointPool, BackgroundPool),
        "a target string, Target, EndpointPool or BackgroundPool",
    )
    if isinstance(endpoint, EndpointPool):
        return endpoint, None
    if isinstance(endpoint, BackgroundPool):
        return endpoint.pool, None
    options = pool_options(consul, pool_policy, local_datacenter)
    owned = EndpointPool.start_in_thread(endpoint, ready_timeout=ready_timeout, **options)
    return owned.pool, owned


def _attempt_on(
    client_for: Callable[[Endpoint], Minio],
    fn: Callable[[Minio, Endpoint], T],
    prepare: Callable[[], None] | None,
) -> Callable[[Endpoint], T]:
    """One attempt of a call: ``prepare()``, then ``fn`` on the endpoint's client; an error
    minio raised because it could not make sense of the answer becomes
    :class:`~mcresolve.minio.classify.MalformedAnswer` (see :func:`_malformed`)."""

    def attempt(endpoint: Endpoint) -> T:
        if prepare is not None:
            prepare()
        answered = answers_received()
        try:
            return fn(client_for(endpoint), endpoint)
        except Exception as exc:
            malformed = _malformed(exc, answered, endpoint)
            if malformed is None:
                raise
            raise malformed from exc

    return attempt


class ClientCore(Minio):
    """Pool, per-endpoint clients and call runner of a ``ResilientMinio`` (see its docstring
    for the constructor's parameters)."""

    def __init__(
        self,
        endpoint: str | Target | EndpointPool | BackgroundPool,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        secure: bool = True,
        region: str | None = None,
        http_client: PoolManager | None = None,
        credentials: Provider | None = None,
        cert_check: bool = True,
        *,
        http: HttpPolicy | None = None,
        call_policy: CallPolicy | None = None,
        external: ExternalEndpoint | None = None,
        consul: ConsulClient | ConsulConfig | None = None,
        pool_policy: PoolPolicy | None = None,
        local_datacenter: str | None = None,
        ready_timeout: float | None = 10.0,
        list_page_size: int = 1000,
    ) -> None:
        # minio.Minio.__init__ is deliberately not called: this object sends nothing itself.
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
        self._pool, self._owned = _pool_of(
            endpoint,
            consul=consul,
            pool_policy=pool_policy,
            local_datacenter=local_datacenter,
            ready_timeout=ready_timeout,
        )
        self._client_kwargs: dict[str, Any] = {
            "access_key": access_key,
            "secret_key": secret_key,
            "session_token": session_token,
            "secure": secure,
            "region": region,
            "credentials": credentials,
        }
        self._secure = secure
        self._region = region
        http = http if http is not None else HttpPolicy()
        # Verification is off when either says so (both default to on).
        self.http_policy = replace(http, cert_check=http.cert_check and cert_check)
        self.call_policy = call_policy
        self.external = external if external is not None else ExternalEndpoint.from_env()
        self.list_page_size = list_page_size
        self._clients: dict[tuple[str, int], Minio] = {}
        self._settings: list[tuple[str, tuple[Any, ...]]] = []
        self._presigner: Minio | None = None
        self._lock = threading.Lock()
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def pool(self) -> EndpointPool:
        """The endpoint pool calls go through."""
        return self._pool

    def with_policy(self, policy: CallPolicy | None = None, **overrides: Any) -> Self:
        """A view of this client (same pool and connections) whose calls use ``policy``, or the
        current policy with ``deadline=``/``attempt_timeout=``/``max_attempts=`` overridden."""
        if policy is not None:
            check_instance("policy", policy, (CallPolicy,), "a CallPolicy or None")
        base = policy or self.call_policy or self._pool.policy.call
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view._owned = None  # closing a view does not close the pool
        view.call_policy = base.with_overrides(**overrides) if overrides else base
        return view

    def close(self) -> None:
        """Close the per-endpoint connections and the pool this client started (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            with contextlib.suppress(Exception):
                client._http.clear()
        if self._owned is not None:
            self._owned.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # minio.Minio.__del__ clears its http client; ours are closed by close().
        pass

    def __repr__(self) -> str:
        return f"<ResilientMinio {self._pool.name} {len(self._clients)} client(s)>"

    # --- per-endpoint clients ----------------------------------------------------------------

    def client_for(self, endpoint: Endpoint) -> Minio:
        """The cached ``minio.Minio`` of ``endpoint`` (created on first use, kept alive:
        ``minio.Minio.__del__`` clears its HTTP client)."""
        check_instance("endpoint", endpoint, (Endpoint,), "an Endpoint")
        client = self._clients.get(endpoint.key)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(endpoint.key)
            if client is None:
                client = self._new_client(endpoint.host_port)
                self._clients[endpoint.key] = client
        return client

    def _new_client(self, netloc: str, region: str | None = None) -> Minio:
        kwargs = dict(self._client_kwargs)
        if region is not None:
            kwargs["region"] = region
        client = Minio(
            netloc,
            http_client=_within_attempt_time(make_http_client(self.http_policy), self.http_policy),
            cert_check=self.http_policy.cert_check,
            **kwargs,
        )
        for name, args in self._settings:
            getattr(client, name)(*args)
        return client

    def _apply_setting(self, name: str, *args: Any) -> None:
        with self._lock:
            self._settings.append((name, args))
            clients = list(self._clients.values())
            if self._presigner is not None:
                clients.append(self._presigner)
        for client in clients:
            getattr(client, name)(*args)

    # --- running calls -----------------------------------------------------------------------

    def _run(
        self,
        operation: str,
        fn: Callable[[Minio, Endpoint], T],
        *,
        http_method: str,
        idempotent: bool = True,
        replayable: Callable[[], bool] | None = None,
        prepare: Callable[[], None] | None = None,
        exclude: Collection[tuple[str, int]] = (),
        subject: Callable[[], tuple[str | None, str | None]] | None = None,
        expected_etag: str | None = None,
        outcome_matters: bool = True,
        hedge: bool = False,
        discard: Callable[[T], object] | None = None,
    ) -> T:
        """Run ``fn(client, endpoint)`` with failover; translate the pool's outcome.

        ``hedge``: the call may hedge when the policy asks for it (reads whose result is
        complete in memory, or whose losing result ``discard`` releases); every other call
        runs one attempt at a time whatever the policy says (a hedged upload would read its
        body from two threads, a hedged download would write one file twice).

        ``replayable()`` says, after a failure, whether the request body can be sent again;
        ``prepare()`` runs before every attempt (rewinding a stream). ``exclude``: endpoint
        keys to avoid while another endpoint is left (a resumed stream or listing moves away
        from the node it broke on even when that node was not ejected). ``subject()``: the
        (bucket, object) a failed write names; ``expected_etag``: the ETag the object has if the
        write happened; ``outcome_matters=False`` for intermediate steps of a write (a part of
        a multipart upload), whose failure cannot leave an object behind.

        Dead endpoints (refused connections) do not use up the call's attempts: the pool
        keeps probing them with backoff and re-resolving until the deadline, so a whole
        datacenter's storage lost is survived once the source answers with another one.

        A quorum answer from one node is that node's own view (``verdict.confirmed`` False): the
        planner asks another node at once and the pool avoids the node for a while; only a
        confirmed condition ends the call
        (:class:`~mcresolve.minio.classify.StorageClusterDegraded`).
        """
        tried: list[TriedAttempt] = []
        classify = call_classifier(tried, http_method, idempotent, replayable)

        attempt = _attempt_on(self.client_for, fn, prepare)

        try:
            value = self._pool.call_sync(
                attempt,
                idempotent=idempotent,
                classify=classify,
                policy=self._policy_for(hedge),
                exclude=exclude,
                discard=discard,
            )
        except Exception as exc:
            bucket_name, object_name = subject() if subject is not None else (None, None)
            error = failure_of_call(
                exc,
                tried,
                operation=operation,
                http_method=http_method,
                bucket_name=bucket_name,
                object_name=object_name,
                expected_etag=expected_etag,
                body_replayable=replayable() if replayable is not None else True,
                outcome_matters=outcome_matters,
            )
            if error is exc:
                raise
            raise error from exc
        return value

    def _policy_for(self, hedge: bool) -> CallPolicy | None:
        """The call policy of one call: the client's, without hedging unless ``hedge``."""
        policy = self.call_policy or self._pool.policy.call
        if policy.hedging and not hedge:
            return replace(policy, hedge_delay=None)
        return self.call_policy

    def _forward(self, name: str, operation: Operation, args: Any, kwargs: Any) -> Any:
        def fn(client: Minio, _endpoint: Endpoint) -> Any:
            return getattr(client, name)(*args, **kwargs)

        def subject() -> tuple[str | None, str | None]:
            return _subject_of(name, args, kwargs)

        return self._run(
            name,
            fn,
            http_method=operation.http_method,
            idempotent=operation.idempotent,
            subject=subject,
            hedge=operation.is_read and name not in _NOT_HEDGED,
        )


def _malformed(exc: Exception, answered: int, endpoint: Endpoint) -> MalformedAnswer | None:
    """``exc`` as a :class:`~mcresolve.minio.classify.MalformedAnswer` when it is neither minio's
    nor mcresolve's nor a transport failure and was raised after the node answered
    (``answers_received()`` grew past ``answered``): minio could not make sense of the answer.
    None otherwise (the caller's own error, raised before anything was received)."""
    if isinstance(exc, MinioException | McResolveError):
        return None
    if answers_received() <= answered or transport_of(exc) is not None:
        return None
    return MalformedAnswer(endpoint.host_port, exc)


def _subject_of(name: str, args: Any, kwargs: Any) -> tuple[str | None, str | None]:
    """``bucket_name`` and ``object_name`` of a forwarded ``minio.Minio`` call, where it has
    them (for the errors of a failed write)."""
    try:
        bound = inspect.signature(getattr(Minio, name)).bind(None, *args, **kwargs)
    except (TypeError, ValueError):
        return None, None
    bucket = bound.arguments.get("bucket_name")
    obj = bound.arguments.get("object_name")
    return (
        bucket if isinstance(bucket, str) else None,
        obj if isinstance(obj, str) else None,
    )
