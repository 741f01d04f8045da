"""MinIO clients that survive storage node loss: :class:`ResilientMinio` (a drop-in
``minio.Minio``) and :class:`AsyncResilientMinio` (the same methods as coroutines).

See ``docs/minio.md`` for configuration, retry rules and error types.
"""

from mcresolve.minio.aio import AsyncResilientMinio, AwaitableAsyncIterable
from mcresolve.minio.arguments import DataShorterThanLength
from mcresolve.minio.call_classifier import call_classifier
from mcresolve.minio.classify import MalformedAnswer
from mcresolve.minio.client import ResilientMinio
from mcresolve.minio.errors import (
    Affects,
    ClusterDegradedWriteOutcomeUnknown,
    ObjectChangedDuringRead,
    ResilientMinioError,
    StorageClusterDegraded,
    TriedAttempt,
    UploadNotRetryable,
    WriteOutcomeUnknown,
)
from mcresolve.minio.external import ExternalEndpoint
from mcresolve.minio.http import HttpPolicy, make_http_client
from mcresolve.minio.stream import ResumableResponse

__all__ = [
    "Affects",
    "AsyncResilientMinio",
    "AwaitableAsyncIterable",
    "ClusterDegradedWriteOutcomeUnknown",
    "DataShorterThanLength",
    "ExternalEndpoint",
    "HttpPolicy",
    "MalformedAnswer",
    "ObjectChangedDuringRead",
    "ResilientMinio",
    "ResilientMinioError",
    "ResumableResponse",
    "StorageClusterDegraded",
    "TriedAttempt",
    "UploadNotRetryable",
    "WriteOutcomeUnknown",
    "call_classifier",
    "make_http_client",
]
