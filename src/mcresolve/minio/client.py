"""``ResilientMinio``: a drop-in ``minio.Minio`` that fails over across storage endpoints.

Every public method of ``minio.Minio`` exists with the same signature and return type (the
forwarding is generated from ``minio.Minio`` and :data:`~mcresolve.minio.operations.OPERATIONS`;
the tests compare both). Each call runs through an :class:`~mcresolve.pool.EndpointPool`
(``pool.call_sync``) on one cached ``minio.Minio`` per endpoint, whose HTTP client never retries
(:mod:`mcresolve.minio.http`); failures are classified by :mod:`mcresolve.minio.classify`:

* node failures (refused, reset, timeout, 502/504, ``XMinioServerNotInitialized``) eject the
  endpoint and retry at once on another one, when replaying the request is safe;
* cluster failures (quorum, ``SlowDown*``, 429, 503 everywhere), once a second node confirms
  them, wait ``Retry-After`` within the deadline, then raise
  :class:`~mcresolve.minio.classify.StorageClusterDegraded` (whatever the number of endpoints);
* answers (``NoSuchKey``, ``AccessDenied``, other 4xx) are raised at once, never retried;
* a write that failed after an attempt that may have executed it raises
  :class:`~mcresolve.minio.errors.WriteOutcomeUnknown` (the object may be stored: stat it and
  compare the ETag); :func:`~mcresolve.minio.errors.failure_of_call` decides.

Uploads replay their data (each part is held in memory, as ``minio.Minio`` itself does) and
multipart uploads retry per part; listings resume after the last key yielded; downloads resume
with a Range request (:mod:`mcresolve.minio.stream`). See ``docs/minio.md``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import inspect
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, BinaryIO, Self, TextIO, TypeVar, cast

from minio import Minio
from minio.commonconfig import Tags
from minio.credentials.providers import Provider
from minio.datatypes import EventIterable, Object, PostPolicy
from minio.deleteobjects import DeleteError, DeleteObject
from minio.error import MinioException, S3Error
from minio.helpers import (
    MIN_PART_SIZE,
    DictType,
    ObjectWriteResult,
    ProgressType,
    genheaders,
    get_part_info,
    read_part_data,
)
from minio.retention import Retention
from minio.sse import Sse, SseCustomerKey
from urllib3 import PoolManager
from urllib3.response import BaseHTTPResponse
from urllib3.util import Timeout

from mcresolve.balancer.outlier import FailureKind
from mcresolve.consul.client import ConsulClient
from mcresolve.consul.config import ConsulConfig
from mcresolve.endpoint import Endpoint
from mcresolve.errors import McResolveError
from mcresolve.minio.arguments import (
    PARAMETER_CHECKS,
    DataShorterThanLength,
    check_call,
    check_client_arguments,
    check_instance,
)
from mcresolve.minio.classify import (
    MalformedAnswer,
    classify_exception,
    transport_of,
)
from mcresolve.minio.errors import (
    ObjectChangedDuringRead,
    TriedAttempt,
    failure_of_call,
)
from mcresolve.minio.external import ExternalEndpoint
from mcresolve.minio.http import HttpPolicy, answers_received, make_http_client
from mcresolve.minio.operations import OPERATIONS, Operation, Runner
from mcresolve.minio.stream import ResumableResponse
from mcresolve.pool import BackgroundPool, EndpointPool, PoolPolicy
from mcresolve.pool.call_policy import CallPolicy
from mcresolve.pool.planner import AttemptContext, Fault, VerdictLike, attempt_time_left
from mcresolve.sources.target import Target

__all__ = ["ResilientMinio"]

_log = logging.getLogger(__name__)
T = TypeVar("T")
_END: Any = object()
_DEFAULT_REGION = "us-east-1"
_REMOVE_BATCH = 1000  # S3 DeleteObjects limit, as minio.Minio.remove_objects batches


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


def _seekable_start(data: Any) -> int | None:
    """The current position of a seekable stream, or None."""
    try:
        if hasattr(data, "seekable") and not data.seekable():
            return None
        return int(data.tell())
    except (AttributeError, OSError, ValueError):
        return None


_NOT_HEDGED = frozenset({"fget_object"})
"""Reads that must not run twice at once: ``fget_object`` writes the object to a local file."""


def _release_response(value: tuple[BaseHTTPResponse, Endpoint]) -> None:
    """Close a hedge loser's object response and give its connection back to the pool."""
    response = value[0]
    response.close()
    response.release_conn()


def _call_classifier(
    tried: list[TriedAttempt],
    http_method: str,
    idempotent: bool,
    replayable: Callable[[], bool] | None,
) -> Callable[[BaseException, AttemptContext], VerdictLike]:
    """The classifier of one call: MinIO's verdict of each failed attempt, given what the
    call's earlier attempts (appended to ``tried``, hedges included) said."""

    def classify(exc: BaseException, context: AttemptContext) -> VerdictLike:
        here = context.endpoint.key
        # "The same failure from every endpoint" (a hung cluster, 5xx everywhere) needs the
        # other endpoints to have been reached: one that refused says nothing about the
        # cluster (a PUT timing out on one node while the other is down is that node's).
        latest = {t.endpoint.key: t.verdict for t in tried if t.endpoint.key != here}
        reached = not any(
            v.error_class is Fault.NODE and v.failure_kind is FailureKind.CONNECT
            for v in latest.values()
        )
        verdict = classify_exception(
            exc,
            method=http_method,
            from_every_endpoint=context.every_endpoint_tried and reached,
            confirmed_elsewhere=any(
                t.verdict.error_class is Fault.CLUSTER and t.endpoint.key != here for t in tried
            ),
            body_replayable=replayable() if replayable is not None else True,
            idempotent=idempotent,
            now_epoch=time.time(),
        )
        tried.append(TriedAttempt(context.endpoint, exc, verdict))
        return verdict

    return classify


class ResilientMinio(Minio):
    """A ``minio.Minio`` whose calls fail over across the endpoints of a pool or target.

    ``endpoint``: a target string (``"consul+query://storage-object-minio"``,
    ``"consul://storage-object-minio?tag=minio"``, ``"static://10.0.0.1:9000,10.0.0.2:9000"``,
    ...), a parsed :class:`~mcresolve.sources.target.Target`, a started
    :class:`~mcresolve.pool.EndpointPool` (on any event loop; calls must not be made on that
    loop's thread), or a :class:`~mcresolve.pool.BackgroundPool`. A target is resolved by a
    pool this client starts and closes in :meth:`close`; it runs on the process-wide loop
    thread of every synchronous client (:mod:`mcresolve.pool.loop_thread`), so clients on the same
    Consul target share its watches.

    The positional parameters are ``minio.Minio``'s, in its order and with its defaults
    (``secure=True``: pass ``secure=False`` for plain HTTP endpoints). ``access_key``,
    ``secret_key``, ``session_token``, ``region``, ``credentials`` are used as minio uses them.
    Give ``region`` when you know it: without it every per-endpoint client first asks each
    bucket's location (one more request per bucket and endpoint). ``cert_check=False`` skips
    TLS certificate verification on every endpoint (as does ``HttpPolicy(cert_check=False)``).
    ``http_client`` must stay None (a ``ValueError`` says why and what to pass instead): the
    per-endpoint HTTP clients are built here, never retrying and bounded by each attempt's
    time; ``http`` sets their timeouts, pool size and CA bundle.

    The other options are keyword-only. ``call_policy``: deadline, attempts and backoff of every
    call (default: the pool's). ``external``: where presigned/public URLs point (default:
    ``MINIO_EXTERNAL_HOST``/``MINIO_EXTERNAL_PORT``, else the first endpoint). ``consul``,
    ``pool_policy``, ``local_datacenter``, ``ready_timeout``: used only when a pool is built
    here from a target; the constructor waits up to ``ready_timeout`` seconds for the pool's
    first endpoint (:class:`~mcresolve.errors.NoEndpointAvailable` after that), or not at all
    with ``None`` (calls then wait for endpoints within their own deadline).
    ``list_page_size``: keys per listing request (S3 maximum 1000). Every argument is checked
    here: a wrong type is a ``TypeError``, a value out of range a ``ValueError``, both naming
    the parameter.
    """

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
        check_instance(
            "endpoint",
            endpoint,
            (str, Target, EndpointPool, BackgroundPool),
            "a target string, Target, EndpointPool or BackgroundPool",
        )
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
        self._owned: BackgroundPool | None = None
        if isinstance(endpoint, EndpointPool):
            self._pool = endpoint
        elif isinstance(endpoint, BackgroundPool):
            self._pool = endpoint.pool
        else:
            kwargs: dict[str, Any] = {}
            if consul is not None:
                kwargs["consul"] = consul
            if pool_policy is not None:
                kwargs["policy"] = pool_policy
            if local_datacenter is not None:
                kwargs["local_datacenter"] = local_datacenter
            self._owned = EndpointPool.start_in_thread(
                endpoint, ready_timeout=ready_timeout, **kwargs
            )
            self._pool = self._owned.pool
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

    def with_policy(self, policy: CallPolicy | None = None, **overrides: Any) -> ResilientMinio:
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
        classify = _call_classifier(tried, http_method, idempotent, replayable)

        def attempt(endpoint: Endpoint) -> T:
            if prepare is not None:
                prepare()
            answered = answers_received()
            try:
                return fn(self.client_for(endpoint), endpoint)
            except Exception as exc:
                malformed = _malformed(exc, answered, endpoint)
                if malformed is None:
                    raise
                raise malformed from exc

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

    # --- local methods -----------------------------------------------------------------------

    def set_app_info(self, app_name: str, app_version: str) -> None:
        """Set the application name/version in the User-Agent of every endpoint's client."""
        if not (app_name and app_version):
            raise ValueError("Application name/version cannot be empty.")
        self._apply_setting("set_app_info", app_name, app_version)

    def trace_on(self, stream: TextIO) -> None:
        """Trace HTTP requests and responses of every endpoint's client to ``stream``."""
        self._apply_setting("trace_on", stream)

    def trace_off(self) -> None:
        """Stop tracing."""
        self._apply_setting("trace_off")

    def enable_accelerate_endpoint(self) -> None:
        """As ``minio.Minio.enable_accelerate_endpoint``, on every endpoint's client."""
        self._apply_setting("enable_accelerate_endpoint")

    def disable_accelerate_endpoint(self) -> None:
        """As ``minio.Minio.disable_accelerate_endpoint``, on every endpoint's client."""
        self._apply_setting("disable_accelerate_endpoint")

    def enable_dualstack_endpoint(self) -> None:
        """As ``minio.Minio.enable_dualstack_endpoint``, on every endpoint's client."""
        self._apply_setting("enable_dualstack_endpoint")

    def disable_dualstack_endpoint(self) -> None:
        """As ``minio.Minio.disable_dualstack_endpoint``, on every endpoint's client."""
        self._apply_setting("disable_dualstack_endpoint")

    def enable_virtual_style_endpoint(self) -> None:
        """As ``minio.Minio.enable_virtual_style_endpoint``, on every endpoint's client."""
        self._apply_setting("enable_virtual_style_endpoint")

    def disable_virtual_style_endpoint(self) -> None:
        """As ``minio.Minio.disable_virtual_style_endpoint``, on every endpoint's client."""
        self._apply_setting("disable_virtual_style_endpoint")

    # --- presigning (local: no request) ------------------------------------------------------

    def presigner(self) -> Minio:
        """The ``minio.Minio`` that signs URLs: on :attr:`external` when set, else on the first
        endpoint picked; with ``region`` (default ``us-east-1``) so that signing sends nothing."""
        with self._lock:
            presigner = self._presigner
        if presigner is not None:
            return presigner
        if self.external is not None:
            netloc, secure = self.external.netloc, self.external.secure
        else:
            netloc, secure = self._pool.pick().host_port, self._secure
        kwargs = dict(self._client_kwargs, secure=secure)
        client = Minio(
            netloc,
            region=self._region or _DEFAULT_REGION,
            **{k: v for k, v in kwargs.items() if k != "region"},
        )
        for name, args in self._settings:
            getattr(client, name)(*args)
        with self._lock:
            if self._presigner is None:
                self._presigner = client
            return self._presigner

    def get_presigned_url(
        self,
        method: str,
        bucket_name: str,
        object_name: str,
        expires: timedelta = timedelta(days=7),
        response_headers: DictType | None = None,
        request_date: datetime | None = None,
        version_id: str | None = None,
        extra_query_params: DictType | None = None,
    ) -> str:
        """As ``minio.Minio.get_presigned_url``, for the external host (see :meth:`presigner`)."""
        return self.presigner().get_presigned_url(
            method,
            bucket_name,
            object_name,
            expires,
            response_headers,
            request_date,
            version_id,
            extra_query_params,
        )

    def presigned_get_object(
        self,
        bucket_name: str,
        object_name: str,
        expires: timedelta = timedelta(days=7),
        response_headers: DictType | None = None,
        request_date: datetime | None = None,
        version_id: str | None = None,
        extra_query_params: DictType | None = None,
    ) -> str:
        """As ``minio.Minio.presigned_get_object``, for the external host."""
        return self.presigner().presigned_get_object(
            bucket_name,
            object_name,
            expires,
            response_headers,
            request_date,
            version_id,
            extra_query_params,
        )

    def presigned_put_object(
        self, bucket_name: str, object_name: str, expires: timedelta = timedelta(days=7)
    ) -> str:
        """As ``minio.Minio.presigned_put_object``, for the external host."""
        return self.presigner().presigned_put_object(bucket_name, object_name, expires)

    def presigned_post_policy(self, policy: PostPolicy) -> dict[str, str]:
        """As ``minio.Minio.presigned_post_policy``, for the external host."""
        return self.presigner().presigned_post_policy(policy)

    def public_url(self, bucket_name: str, object_name: str) -> str:
        """The unsigned URL of an object on the external host (not a ``minio.Minio`` method)."""
        PARAMETER_CHECKS["bucket_name"]("bucket_name", bucket_name)
        PARAMETER_CHECKS["object_name"]("object_name", object_name)
        external = self.external
        if external is None:
            endpoint = self._pool.pick()
            external = ExternalEndpoint(endpoint.address, endpoint.port, self._secure)
        return external.public_url(bucket_name, object_name)

    # --- uploads -----------------------------------------------------------------------------

    def put_object(
        self,
        bucket_name: str,
        object_name: str,
        data: BinaryIO,
        length: int,
        content_type: str = "application/octet-stream",
        metadata: DictType | None = None,
        sse: Sse | None = None,
        progress: ProgressType | None = None,
        part_size: int = 0,
        num_parallel_uploads: int = 3,
        tags: Tags | None = None,
        retention: Retention | None = None,
        legal_hold: bool = False,
        write_offset: int | None = None,
    ) -> ObjectWriteResult:
        """As ``minio.Minio.put_object``, retried safely.

        Each part is read into memory once (exactly what ``minio.Minio`` does) and sent from
        there, so every attempt replays identical bytes whatever the stream: a single-part upload
        is retried as a whole on another endpoint; a multipart upload retries each part on its
        own (``UploadPart`` is idempotent), then completes (a completion that may have executed
        is verified by the object's multipart ETag if its retry answers ``NoSuchUpload``).
        ``write_offset`` (append) is sent again only when it cannot have executed.
        """
        if not callable(getattr(data, "read", None)):
            raise ValueError("input data must have callable read()")
        if write_offset is not None:
            if write_offset < 0:
                raise ValueError("write offset should not be negative")
            if length < 0:
                raise ValueError("length must be provided for write offset")
            part_size = length if length > MIN_PART_SIZE else MIN_PART_SIZE
        part_size, part_count = get_part_info(length, part_size)
        if progress:
            progress.set_meta(object_name=object_name, total_length=length)
        if tags is not None and not isinstance(tags, Tags):
            raise ValueError("tags must be Tags type")
        if retention is not None and not isinstance(retention, Retention):
            raise ValueError("retention must be Retention type")
        if part_count == 1:
            first = read_part_data(data, length, progress=progress)
            if len(first) != length:
                raise DataShorterThanLength(
                    f"length {length} is more than data holds: "
                    f"stream having not enough data;expected: {length}, got: {len(first)} bytes"
                )
            return self._put_single(
                bucket_name,
                object_name,
                first,
                content_type,
                metadata,
                sse,
                tags,
                retention,
                legal_hold,
                write_offset,
            )
        if part_count < 0:
            # Unknown length: one byte more tells whether the stream fits in one part.
            first = read_part_data(data, part_size + 1, progress=progress)
            if len(first) <= part_size:
                return self._put_single(
                    bucket_name,
                    object_name,
                    first,
                    content_type,
                    metadata,
                    sse,
                    tags,
                    retention,
                    legal_hold,
                    write_offset,
                )
        else:
            first = read_part_data(data, part_size, progress=progress)
        headers = genheaders(metadata, sse, tags, retention, legal_hold)
        headers["Content-Type"] = content_type or "application/octet-stream"
        return self._put_multipart(
            bucket_name,
            object_name,
            data,
            length,
            first,
            part_size,
            part_count,
            headers,
            sse,
            progress,
            max(1, num_parallel_uploads),
        )

    def _put_single(
        self,
        bucket_name: str,
        object_name: str,
        payload: bytes,
        content_type: str,
        metadata: DictType | None,
        sse: Sse | None,
        tags: Tags | None,
        retention: Retention | None,
        legal_hold: bool,
        write_offset: int | None,
    ) -> ObjectWriteResult:
        def fn(client: Minio, _endpoint: Endpoint) -> ObjectWriteResult:
            return client.put_object(
                bucket_name,
                object_name,
                io.BytesIO(payload),
                len(payload),
                content_type=content_type,
                metadata=metadata,
                sse=sse,
                tags=tags,
                retention=retention,
                legal_hold=legal_hold,
                write_offset=write_offset,
            )

        return self._run(
            "put_object",
            fn,
            http_method="PUT",
            idempotent=write_offset is None,
            subject=lambda: (bucket_name, object_name),
            # With SSE the ETag is not the MD5 of the data; an append's is the whole object's.
            expected_etag=(
                hashlib.md5(payload, usedforsecurity=False).hexdigest()
                if sse is None and write_offset is None
                else None
            ),
        )

    def _put_multipart(
        self,
        bucket_name: str,
        object_name: str,
        data: BinaryIO,
        length: int,
        first: bytes,
        part_size: int,
        part_count: int,
        headers: dict[str, Any],
        sse: Sse | None,
        progress: ProgressType | None,
        parallel: int,
    ) -> ObjectWriteResult:
        # CreateMultipartUpload is a POST, but a repeated one only leaves an unused upload ID
        # behind (no object changes): safe to repeat.
        upload_id = self._run(
            "put_object",
            lambda c, _e: c._create_multipart_upload(bucket_name, object_name, dict(headers)),
            http_method="POST",
            idempotent=True,
            outcome_matters=False,  # no object until completed
        )
        ssec_headers: Any = sse.headers() if isinstance(sse, SseCustomerKey) else None

        def upload(number: int, payload: bytes) -> tuple[int, str, bytes]:
            etag = self._run(
                "put_object",
                lambda c, _e: c._upload_part(
                    bucket_name, object_name, payload, ssec_headers, upload_id, number
                ),
                http_method="PUT",
                idempotent=True,
                outcome_matters=False,  # a failed part aborts the upload: no object
            )
            return number, etag, hashlib.md5(payload, usedforsecurity=False).digest()

        done: dict[int, tuple[str, bytes]] = {}
        try:
            with concurrent.futures.ThreadPoolExecutor(
                max_workers=parallel, thread_name_prefix="mcresolve-part"
            ) as executor:
                running: set[concurrent.futures.Future[tuple[int, str, bytes]]] = set()
                for number, payload in self._parts(
                    data, length, first, part_size, part_count, progress
                ):
                    running.add(executor.submit(upload, number, payload))
                    del payload
                    if len(running) >= parallel:  # bound memory: `parallel` parts at most
                        finished, running = concurrent.futures.wait(
                            running, return_when=concurrent.futures.FIRST_COMPLETED
                        )
                        for future in finished:
                            n, etag, digest = future.result()
                            done[n] = (etag, digest)
                for future in concurrent.futures.as_completed(running):
                    n, etag, digest = future.result()
                    done[n] = (etag, digest)
            return self._complete(bucket_name, object_name, upload_id, done, sse)
        except BaseException:
            self._abort_quietly(bucket_name, object_name, upload_id)
            raise

    @staticmethod
    def _parts(
        data: BinaryIO,
        length: int,
        first: bytes,
        part_size: int,
        part_count: int,
        progress: ProgressType | None,
    ) -> Iterator[tuple[int, bytes]]:
        """(part number, bytes) of a multipart upload, as ``minio.Minio.put_object`` splits."""
        if part_count > 0:
            uploaded = 0
            for number in range(1, part_count + 1):
                size = part_size if number < part_count else length - uploaded
                payload = first if number == 1 else read_part_data(data, size, progress=progress)
                if len(payload) != size:
                    raise DataShorterThanLength(
                        f"length {length} is more than data holds: "
                        f"stream having not enough data;expected: {size}, got: {len(payload)} bytes"
                    )
                uploaded += size
                yield number, payload
            return
        # Unknown length: ``first`` holds part_size + 1 bytes.
        number = 0
        carry = first
        while True:
            number += 1
            if len(carry) <= part_size:
                yield number, carry
                return
            yield number, carry[:part_size]
            carry = read_part_data(data, part_size + 1, carry[part_size:], progress=progress)

    def _complete(
        self,
        bucket_name: str,
        object_name: str,
        upload_id: str,
        done: dict[int, tuple[str, bytes]],
        sse: Sse | None,
    ) -> ObjectWriteResult:
        from minio.datatypes import Part

        parts = [Part(n, done[n][0]) for n in sorted(done)]
        expected = _multipart_etag([done[n][0] for n in sorted(done)])
        attempts = 0

        def fn(client: Minio, _endpoint: Endpoint) -> ObjectWriteResult:
            nonlocal attempts
            attempts += 1
            try:
                result = client._complete_multipart_upload(
                    bucket_name,
                    object_name,
                    upload_id,
                    parts,
                    sse if isinstance(sse, SseCustomerKey) else None,
                )
            except S3Error as exc:
                if exc.code != "NoSuchUpload" or attempts == 1:
                    raise
                # An earlier attempt may have completed it: check the object is ours.
                stat = client.stat_object(bucket_name, object_name)
                if stat.etag != expected:
                    raise
                return ObjectWriteResult(
                    bucket_name,
                    object_name,
                    stat.version_id,
                    stat.etag,
                    cast(Any, stat.metadata),
                )
            return ObjectWriteResult(
                cast(str, result.bucket_name),
                cast(str, result.object_name),
                result.version_id,
                result.etag,
                result.http_headers,
                location=result.location,
            )

        return self._run(
            "put_object",
            fn,
            http_method="POST",
            idempotent=True,
            subject=lambda: (bucket_name, object_name),
            expected_etag=expected if sse is None else None,
        )

    def _abort_quietly(self, bucket_name: str, object_name: str, upload_id: str) -> None:
        try:
            self.with_policy(deadline=5.0)._run(
                "put_object",
                lambda c, _e: c._abort_multipart_upload(bucket_name, object_name, upload_id),
                http_method="DELETE",
                outcome_matters=False,
            )
        except Exception as exc:  # the upload failed already; an orphan upload is only garbage
            _log.warning(
                "could not abort multipart upload %s of %s/%s: %s",
                upload_id,
                bucket_name,
                object_name,
                exc,
            )

    def fput_object(
        self,
        bucket_name: str,
        object_name: str,
        file_path: str,
        content_type: str = "application/octet-stream",
        metadata: DictType | None = None,
        sse: Sse | None = None,
        progress: ProgressType | None = None,
        part_size: int = 0,
        num_parallel_uploads: int = 3,
        tags: Tags | None = None,
        retention: Retention | None = None,
        legal_hold: bool = False,
    ) -> ObjectWriteResult:
        """As ``minio.Minio.fput_object`` (through :meth:`put_object`)."""
        with open(file_path, "rb") as file_data:
            return self.put_object(
                bucket_name,
                object_name,
                file_data,
                os.stat(file_path).st_size,
                content_type=content_type,
                metadata=metadata,
                sse=sse,
                progress=progress,
                part_size=part_size,
                num_parallel_uploads=num_parallel_uploads,
                tags=tags,
                retention=retention,
                legal_hold=legal_hold,
            )

    def append_object(
        self,
        bucket_name: str,
        object_name: str,
        data: BinaryIO,
        length: int,
        chunk_size: int | None = None,
        progress: ProgressType | None = None,
        extra_headers: DictType | None = None,
    ) -> ObjectWriteResult:
        """As ``minio.Minio.append_object``. Appending twice would append twice, so it is sent
        again only when it cannot have executed *and* ``data`` is seekable (rewound to where it
        was); otherwise :class:`~mcresolve.minio.errors.UploadNotRetryable` /
        :class:`~mcresolve.minio.errors.WriteOutcomeUnknown` say what may have happened."""
        start = _seekable_start(data)
        started = False

        def prepare() -> None:
            nonlocal started
            if started and start is not None:
                data.seek(start)
            started = True

        return self._run(
            "append_object",
            lambda c, _e: c.append_object(
                bucket_name, object_name, data, length, chunk_size, progress, extra_headers
            ),
            http_method="PUT",
            idempotent=False,
            replayable=lambda: start is not None,
            prepare=prepare,
            subject=lambda: (bucket_name, object_name),
        )

    # --- downloads ---------------------------------------------------------------------------

    def get_object(
        self,
        bucket_name: str,
        object_name: str,
        offset: int = 0,
        length: int = 0,
        request_headers: DictType | None = None,
        ssec: SseCustomerKey | None = None,
        version_id: str | None = None,
        extra_query_params: DictType | None = None,
    ) -> BaseHTTPResponse:
        """As ``minio.Minio.get_object``; the returned response resumes a body that breaks
        mid-way with a Range request on another endpoint, checking the ETag
        (:class:`~mcresolve.minio.stream.ResumableResponse`)."""

        def open_range(
            start: int, size: int, if_match: str | None
        ) -> tuple[BaseHTTPResponse, Endpoint]:
            headers = dict(request_headers or {})
            if if_match is not None:
                headers["If-Match"] = if_match

            def fn(client: Minio, endpoint: Endpoint) -> tuple[BaseHTTPResponse, Endpoint]:
                response = client.get_object(
                    bucket_name,
                    object_name,
                    offset=start,
                    length=size,
                    request_headers=headers or None,
                    ssec=ssec,
                    version_id=version_id,
                    extra_query_params=dict(extra_query_params) if extra_query_params else None,
                )
                return response, endpoint

            return self._run(
                "get_object",
                fn,
                http_method="GET",
                exclude=avoid,
                hedge=True,
                discard=_release_response,
            )

        avoid: set[tuple[str, int]] = set()
        first, endpoint = open_range(offset, length, None)
        serving = [endpoint]
        user_range = any(k.lower() == "range" for k in (request_headers or {}))

        def reopen(start: int, size: int, etag: str | None) -> tuple[BaseHTTPResponse, Endpoint]:
            avoid.clear()
            avoid.add(serving[0].key)  # resume away from the node the body broke on
            try:
                response, new_endpoint = open_range(start, size, etag)
                serving[0] = new_endpoint
                return response, new_endpoint
            except S3Error as exc:
                if exc.code == "PreconditionFailed":
                    raise ObjectChangedDuringRead(
                        bucket_name, object_name, etag, None, start - offset
                    ) from exc
                raise

        def report(failed: Endpoint, exc: BaseException) -> None:
            self._pool.report_failure(failed, classify_exception(exc, method="GET"))

        return ResumableResponse(
            first,
            endpoint,
            bucket=bucket_name,
            object_name=object_name,
            offset=offset,
            reopen=reopen,
            report_failure=report,
            resumable=not user_range,
        )

    # --- listings ----------------------------------------------------------------------------

    def list_objects(
        self,
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
    ) -> Iterator[Object]:
        """As ``minio.Minio.list_objects`` (a lazy iterator). When a page request fails
        mid-listing, the listing resumes on another endpoint after the last entry already
        yielded (``start-after``/``marker``/``key-marker`` + ``version-id-marker``), skipping
        anything not after it: no entry is yielded twice and none is skipped."""
        last_name: str | None = None
        last_version: str | None = None
        avoid: tuple[tuple[str, int], ...] = ()  # the node the listing last broke on
        stalled = 0
        max_stalls = (self.call_policy or self._pool.policy.call).max_attempts
        while True:
            marker = last_name if last_name is not None else start_after
            version_marker = last_version if include_version else None

            def open_listing(
                client: Minio,
                endpoint: Endpoint,
                marker: str | None = marker,
                version_marker: str | None = version_marker,
            ) -> tuple[Iterator[Object], Any, Endpoint]:
                iterator = client._list_objects(
                    bucket_name,
                    delimiter=None if recursive else "/",
                    include_user_meta=include_user_meta,
                    prefix=prefix,
                    start_after=marker,
                    version_id_marker=version_marker,
                    use_api_v1=use_api_v1,
                    include_version=include_version,
                    encoding_type="url" if use_url_encoding_type else None,
                    fetch_owner=fetch_owner,
                    max_keys=self.list_page_size,
                    extra_headers=extra_headers,
                    extra_query_params=dict(extra_query_params) if extra_query_params else None,
                )
                return iterator, next(iterator, _END), endpoint

            iterator, item, endpoint = self._run(
                "list_objects", open_listing, http_method="GET", exclude=avoid
            )
            progressed = False
            while item is not _END:
                name = item.object_name
                duplicate = (
                    not include_version
                    and last_name is not None
                    and name is not None
                    and name <= last_name
                )
                if not duplicate:
                    yield item
                    last_name, last_version = name, item.version_id
                    progressed = True
                answered = answers_received()
                try:
                    try:
                        item = next(iterator, _END)
                    except Exception as exc:  # a page minio could not parse: the node's fault
                        malformed = _malformed(exc, answered, endpoint)
                        if malformed is None:
                            raise
                        raise malformed from exc
                except Exception as exc:
                    verdict = classify_exception(exc, method="GET")
                    if verdict.error_class is Fault.CLIENT or not verdict.replay_safe:
                        raise
                    if verdict.error_class is Fault.NODE:
                        self._pool.report_failure(endpoint, verdict)
                    avoid = (endpoint.key,)
                    stalled = 0 if progressed else stalled + 1
                    if stalled >= max_stalls:
                        raise
                    _log.info(
                        "list_objects %s: resuming after %r (%s)",
                        bucket_name,
                        last_name,
                        verdict.reason,
                    )
                    break
            else:
                return

    def remove_objects(
        self,
        bucket_name: str,
        delete_object_list: Iterable[DeleteObject],
        bypass_governance_mode: bool = False,
    ) -> Iterator[DeleteError]:
        """As ``minio.Minio.remove_objects`` (lazy: batches of 1000 are sent while the result is
        iterated); each batch is retried on its own (deleting twice deletes once)."""
        batch: list[DeleteObject] = []

        def send(objects: list[DeleteObject]) -> list[DeleteError]:
            return self._run(
                "remove_objects",
                lambda c, _e: list(c.remove_objects(bucket_name, objects, bypass_governance_mode)),
                http_method="POST",
                idempotent=True,
            )

        for obj in delete_object_list:
            batch.append(obj)
            if len(batch) == _REMOVE_BATCH:
                yield from send(batch)
                batch = []
        if batch:
            yield from send(batch)

    def listen_bucket_notification(
        self,
        bucket_name: str,
        prefix: str = "",
        suffix: str = "",
        events: tuple[str, ...] = (
            "s3:ObjectCreated:*",
            "s3:ObjectRemoved:*",
            "s3:ObjectAccessed:*",
        ),
    ) -> EventIterable:
        """As ``minio.Minio.listen_bucket_notification``, on one healthy endpoint (a
        long-lived stream: it is not resumed when that endpoint dies; listen again)."""
        endpoint = self._pool.pick()
        return self.client_for(endpoint).listen_bucket_notification(
            bucket_name, prefix, suffix, events
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


def _multipart_etag(part_etags: list[str]) -> str:
    """S3's ETag of a completed multipart upload: MD5 of the parts' binary MD5s, ``-<count>``."""
    digest = hashlib.md5(usedforsecurity=False)
    for etag in part_etags:
        digest.update(bytes.fromhex(etag.strip('"')))
    return f"{digest.hexdigest()}-{len(part_etags)}"


def _make_forwarder(name: str, operation: Operation) -> Callable[..., Any]:
    original = getattr(Minio, name)

    @functools.wraps(original)
    def method(self: ResilientMinio, *args: Any, **kwargs: Any) -> Any:
        return self._forward(name, operation, args, kwargs)

    method.__signature__ = inspect.signature(original)  # type: ignore[attr-defined]
    method.__doc__ = (
        f"As ``minio.Minio.{name}``, with failover across endpoints "
        f"({'idempotent' if operation.idempotent else 'sent again only if it did not execute'}, "
        f"{operation.http_method}).\n\n{original.__doc__ or ''}"
    )
    return method


def _checked(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` (the method ``name``) checking its arguments first
    (:func:`~mcresolve.minio.arguments.check_call`): a wrong argument is a ``TypeError`` or
    ``ValueError`` naming the parameter, raised before any endpoint is picked."""
    full = inspect.signature(getattr(Minio, name))
    signature = full.replace(parameters=list(full.parameters.values())[1:])

    @functools.wraps(function)
    def method(self: ResilientMinio, *args: Any, **kwargs: Any) -> Any:
        check_call(name, signature, args, kwargs)
        return function(self, *args, **kwargs)

    return method


def _install_forwarders() -> None:
    for name, operation in OPERATIONS.items():
        if operation.runner is Runner.CALL and name not in vars(ResilientMinio):
            setattr(ResilientMinio, name, _make_forwarder(name, operation))
    for name in OPERATIONS:
        setattr(ResilientMinio, name, _checked(name, vars(ResilientMinio)[name]))


_install_forwarders()
