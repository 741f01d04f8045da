"""Downloads of :class:`~mcresolve.minio.client.ResilientMinio`: ``get_object`` returns a
response that resumes a broken body with a Range request on another endpoint
(:class:`~mcresolve.minio.stream.ResumableResponse`)."""

from __future__ import annotations

from minio import Minio
from minio.error import S3Error
from minio.helpers import (
    DictType,
)
from minio.sse import SseCustomerKey
from urllib3.response import BaseHTTPResponse

from mcresolve.endpoint import Endpoint
from mcresolve.minio.classify import (
    classify_exception,
)
from mcresolve.minio.core import ClientCore
from mcresolve.minio.errors import (
    ObjectChangedDuringRead,
)
from mcresolve.minio.stream import ResumableResponse

__all__ = ["DownloadOperations"]


def _release_response(value: tuple[BaseHTTPResponse, Endpoint]) -> None:
    """Close a hedge loser's object response and give its connection back to the pool."""
    response = value[0]
    response.close()
    response.release_conn()


class DownloadOperations(ClientCore):
    """The download method of ``ResilientMinio``."""

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
