"""Uploads of :class:`~mcresolve.minio.client.ResilientMinio`: ``put_object`` (one part
retried whole, or a multipart upload retried part by part then completed and verified),
``fput_object`` and ``append_object`` (sent again only when it cannot have executed)."""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import logging
import os
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

from minio import Minio
from minio.commonconfig import Tags
from minio.error import S3Error
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

from mcresolve.endpoint import Endpoint
from mcresolve.minio.arguments import (
    DataShorterThanLength,
)
from mcresolve.minio.core import ClientCore

__all__ = ["UploadOperations"]

_log = logging.getLogger(__name__)


def _seekable_start(data: Any) -> int | None:
    """The current position of a seekable stream, or None."""
    try:
        if hasattr(data, "seekable") and not data.seekable():
            return None
        return int(data.tell())
    except (AttributeError, OSError, ValueError):
        return None


def _multipart_etag(part_etags: list[str]) -> str:
    """S3's ETag of a completed multipart upload: MD5 of the parts' binary MD5s, ``-<count>``."""
    digest = hashlib.md5(usedforsecurity=False)
    for etag in part_etags:
        digest.update(bytes.fromhex(etag.strip('"')))
    return f"{digest.hexdigest()}-{len(part_etags)}"


def _part_layout(
    data: BinaryIO,
    object_name: str,
    length: int,
    progress: ProgressType | None,
    part_size: int,
    tags: Tags | None,
    retention: Retention | None,
    write_offset: int | None,
) -> tuple[int, int]:
    """``put_object``'s checks and its (part size, part count), as ``minio.Minio.put_object``
    makes them (in its order: the progress meta is set before tags are checked)."""
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
    return part_size, part_count


class UploadOperations(ClientCore):
    """The upload methods of ``ResilientMinio``."""

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
        part_size, part_count = _part_layout(
            data, object_name, length, progress, part_size, tags, retention, write_offset
        )

        def single(payload: bytes) -> ObjectWriteResult:
            return self._put_single(
                bucket_name,
                object_name,
                payload,
                content_type,
                metadata,
                sse,
                tags,
                retention,
                legal_hold,
                write_offset,
            )

        if part_count == 1:
            first = read_part_data(data, length, progress=progress)
            if len(first) != length:
                raise DataShorterThanLength(
                    f"length {length} is more than data holds: "
                    f"stream having not enough data;expected: {length}, got: {len(first)} bytes"
                )
            return single(first)
        if part_count < 0:
            # Unknown length: one byte more tells whether the stream fits in one part.
            first = read_part_data(data, part_size + 1, progress=progress)
            if len(first) <= part_size:
                return single(first)
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
