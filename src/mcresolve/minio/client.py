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

import functools
import inspect
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TextIO

from minio import Minio
from minio.datatypes import PostPolicy
from minio.helpers import (
    DictType,
)

from mcresolve.minio.arguments import (
    PARAMETER_CHECKS,
    check_call,
)
from mcresolve.minio.core import ClientCore
from mcresolve.minio.downloads import DownloadOperations
from mcresolve.minio.external import ExternalEndpoint
from mcresolve.minio.listings import ListingOperations
from mcresolve.minio.operations import OPERATIONS, Operation, Runner
from mcresolve.minio.uploads import UploadOperations
from mcresolve.minio.uploads import _multipart_etag as _multipart_etag  # re-exported

__all__ = ["ResilientMinio"]

_DEFAULT_REGION = "us-east-1"


class ResilientMinio(UploadOperations, DownloadOperations, ListingOperations, ClientCore):
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
        # Not overridden by ResilientMinio or one of its operation classes: forward it.
        if operation.runner is Runner.CALL and getattr(ResilientMinio, name) is getattr(
            Minio, name
        ):
            setattr(ResilientMinio, name, _make_forwarder(name, operation))
    for name in OPERATIONS:
        setattr(ResilientMinio, name, _checked(name, getattr(ResilientMinio, name)))


_install_forwarders()
