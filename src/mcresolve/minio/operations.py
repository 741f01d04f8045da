"""What each public ``minio.Minio`` method is, for failover (pure data, no I/O).

Every public method of ``minio.Minio`` appears here exactly once (the tests check the set against
the installed ``minio``). The entry says which HTTP method the call sends (for
:func:`mcresolve.minio.classify.classify`), whether sending it twice has the effect of once, and how
the wrapper runs it:

* ``LOCAL``: no request (presigning, client settings): applied to the local client(s).
* ``CALL``: one call retried as a whole on another endpoint (``idempotent`` decides whether a
  request that may have executed is sent again).
* ``SPECIAL``: the wrapper has its own implementation (uploads that replay their body or retry per
  part, listings that resume after the last key, downloads that resume with a Range request,
  lazy batched deletes, long-lived streams).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["OPERATIONS", "Operation", "Runner"]


class Runner(enum.Enum):
    """How the wrapper runs a method."""

    LOCAL = "local"
    CALL = "call"
    SPECIAL = "special"


@dataclass(frozen=True, slots=True)
class Operation:
    """One public ``minio.Minio`` method."""

    runner: Runner
    http_method: str = "GET"
    """The HTTP method of its request(s) (``GET``/``HEAD`` count as reads)."""
    idempotent: bool = True
    """Executing it twice has the effect of once (RFC 9110 for PUT/DELETE; some POSTs too)."""

    @property
    def is_read(self) -> bool:
        """Whether a degraded cluster would affect it as a read."""
        return self.http_method in ("GET", "HEAD")


def _read(method: str = "GET") -> Operation:
    return Operation(Runner.CALL, method, True)


def _write(method: str = "PUT", idempotent: bool = True) -> Operation:
    return Operation(Runner.CALL, method, idempotent)


_LOCAL = Operation(Runner.LOCAL, "GET", True)

OPERATIONS: Mapping[str, Operation] = MappingProxyType(
    {
        # --- local: no request --------------------------------------------------------------
        "set_app_info": _LOCAL,
        "trace_on": _LOCAL,
        "trace_off": _LOCAL,
        "enable_accelerate_endpoint": _LOCAL,
        "disable_accelerate_endpoint": _LOCAL,
        "enable_dualstack_endpoint": _LOCAL,
        "disable_dualstack_endpoint": _LOCAL,
        "enable_virtual_style_endpoint": _LOCAL,
        "disable_virtual_style_endpoint": _LOCAL,
        "get_presigned_url": _LOCAL,
        "presigned_get_object": _LOCAL,
        "presigned_put_object": _LOCAL,
        "presigned_post_policy": _LOCAL,
        # --- reads --------------------------------------------------------------------------
        "bucket_exists": _read("HEAD"),
        "list_buckets": _read(),
        "stat_object": _read("HEAD"),
        "get_bucket_encryption": _read(),
        "get_bucket_lifecycle": _read(),
        "get_bucket_notification": _read(),
        "get_bucket_policy": _read(),
        "get_bucket_replication": _read(),
        "get_bucket_tags": _read(),
        "get_bucket_versioning": _read(),
        "get_object_lock_config": _read(),
        "get_object_retention": _read(),
        "get_object_tags": _read(),
        "is_object_legal_hold_enabled": _read(),
        # fget_object downloads into "<file>.<etag>.part.minio" and resumes from its size: a whole
        # retry continues where the failed attempt stopped.
        "fget_object": _read(),
        # POSTs that only read (the request body is the query): safe to send again.
        "select_object_content": Operation(Runner.CALL, "POST", True),
        "prompt_object": Operation(Runner.CALL, "POST", True),
        # --- idempotent writes: PUT/DELETE of a whole resource ------------------------------
        "make_bucket": _write(),
        "remove_bucket": _write("DELETE"),
        "remove_object": _write("DELETE"),
        "set_bucket_encryption": _write(),
        "set_bucket_lifecycle": _write(),
        "set_bucket_notification": _write(),
        "set_bucket_policy": _write(),
        "set_bucket_replication": _write(),
        "set_bucket_tags": _write(),
        "set_bucket_versioning": _write(),
        "set_object_lock_config": _write(),
        "set_object_retention": _write(),
        "set_object_tags": _write(),
        "enable_object_legal_hold": _write(),
        "disable_object_legal_hold": _write(),
        "delete_bucket_encryption": _write("DELETE"),
        "delete_bucket_lifecycle": _write("DELETE"),
        "delete_bucket_notification": _write("DELETE"),
        "delete_bucket_policy": _write("DELETE"),
        "delete_bucket_replication": _write("DELETE"),
        "delete_bucket_tags": _write("DELETE"),
        "delete_object_lock_config": _write("DELETE"),
        "delete_object_tags": _write("DELETE"),
        # A server-side copy writes the same bytes again: idempotent.
        "copy_object": _write(),
        # A whole compose again creates a new multipart upload and the same object.
        "compose_object": _write(),
        # The snowball tar is rebuilt from the object list at every attempt.
        "upload_snowball_objects": _write(),
        # Appending twice would append twice; the server rejects a stale write offset, but
        # only send it again when it cannot have executed.
        "append_object": _write("PUT", idempotent=False),
        # --- special ------------------------------------------------------------------------
        "put_object": Operation(Runner.SPECIAL, "PUT", True),
        "fput_object": Operation(Runner.SPECIAL, "PUT", True),
        "get_object": Operation(Runner.SPECIAL, "GET", True),
        "list_objects": Operation(Runner.SPECIAL, "GET", True),
        "remove_objects": Operation(Runner.SPECIAL, "POST", True),
        "listen_bucket_notification": Operation(Runner.SPECIAL, "GET", True),
    }
)
"""Every public ``minio.Minio`` method (7.2) and how the wrapper runs it."""
