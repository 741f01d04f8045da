"""Listings of :class:`~mcresolve.minio.client.ResilientMinio`: ``list_objects`` resumes
after the last entry yielded, ``remove_objects`` sends and retries batches lazily,
``listen_bucket_notification`` streams from one endpoint."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from minio import Minio
from minio.datatypes import EventIterable, Object
from minio.deleteobjects import DeleteError, DeleteObject
from minio.helpers import (
    DictType,
)

from mcresolve.endpoint import Endpoint
from mcresolve.minio.classify import (
    Verdict,
    classify_exception,
)
from mcresolve.minio.core import ClientCore, _malformed
from mcresolve.minio.http import answers_received
from mcresolve.pool.planner import Fault

__all__ = ["ListingOperations"]

_log = logging.getLogger(__name__)
_END: Any = object()
_REMOVE_BATCH = 1000  # S3 DeleteObjects limit, as minio.Minio.remove_objects batches


def _next_entry(iterator: Iterator[Object], endpoint: Endpoint) -> Any:
    """The next entry of a listing (``_END`` after the last); a page minio could not parse
    is the node's fault (:class:`~mcresolve.minio.classify.MalformedAnswer`)."""
    answered = answers_received()
    try:
        return next(iterator, _END)
    except Exception as exc:
        malformed = _malformed(exc, answered, endpoint)
        if malformed is None:
            raise
        raise malformed from exc


class ListingOperations(ClientCore):
    """The listing methods of ``ResilientMinio`` (lazy iterators and streams)."""

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
        options: dict[str, Any] = {
            "delimiter": None if recursive else "/",
            "include_user_meta": include_user_meta,
            "prefix": prefix,
            "use_api_v1": use_api_v1,
            "include_version": include_version,
            "encoding_type": "url" if use_url_encoding_type else None,
            "fetch_owner": fetch_owner,
            "extra_headers": extra_headers,
        }
        while True:
            marker = last_name if last_name is not None else start_after
            version_marker = last_version if include_version else None

            open_listing = self._page_opener(
                bucket_name, marker, version_marker, extra_query_params, options
            )
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
                try:
                    item = _next_entry(iterator, endpoint)
                except Exception as exc:
                    verdict = self._resumable(exc, endpoint)
                    if verdict is None:
                        raise
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

    def _page_opener(
        self,
        bucket_name: str,
        marker: str | None,
        version_marker: str | None,
        extra_query_params: DictType | None,
        options: dict[str, Any],
    ) -> Callable[[Minio, Endpoint], tuple[Iterator[Object], Any, Endpoint]]:
        """The call that opens a listing after ``marker`` on one endpoint and reads its first
        entry (so that a failing first page fails the attempt)."""

        def open_listing(
            client: Minio, endpoint: Endpoint
        ) -> tuple[Iterator[Object], Any, Endpoint]:
            iterator = client._list_objects(
                bucket_name,
                start_after=marker,
                version_id_marker=version_marker,
                max_keys=self.list_page_size,
                extra_query_params=dict(extra_query_params) if extra_query_params else None,
                **options,
            )
            return iterator, next(iterator, _END), endpoint

        return open_listing

    def _resumable(self, exc: Exception, endpoint: Endpoint) -> Verdict | None:
        """The verdict of a listing page that failed on ``endpoint`` when the listing may resume
        elsewhere (a node's failure is reported to the pool), None when it must raise."""
        verdict = classify_exception(exc, method="GET")
        if verdict.error_class is Fault.CLIENT or not verdict.replay_safe:
            return None
        if verdict.error_class is Fault.NODE:
            self._pool.report_failure(endpoint, verdict)
        return verdict

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
