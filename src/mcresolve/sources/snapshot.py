"""The last-known-good file: a JSON snapshot of a good resolution, for warm starts.

Written atomically (temporary file in the same directory, ``fsync``, ``os.replace``) so a crash
never leaves a half-written file; read at start so an application restarted while Consul is
unreachable still has endpoints. Format (version 1)::

    {"version": 1, "target": "consul://svc", "source": "consul://svc", "datacenter": "dc1",
     "resolved_at": 1718000000.0,
     "endpoints": [{"address": "10.0.0.1", "port": 9000, "node": "n1", "datacenter": "dc1",
                    "service_id": "minio-1", "tags": ["v1"], "meta": {"zone": "z1"}}]}
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

from mcresolve.endpoint import Converted, Endpoint, Rejected, endpoint_problem, shorten
from mcresolve.sources.base import Resolution

__all__ = ["SNAPSHOT_VERSION", "load_snapshot", "save_snapshot"]

SNAPSHOT_VERSION = 1
_log = logging.getLogger(__name__)


def save_snapshot(path: str | os.PathLike[str], resolution: Resolution, target: str) -> None:
    """Write ``resolution`` for ``target`` to ``path`` atomically (creating parent dirs)."""
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "version": SNAPSHOT_VERSION,
        "target": target,
        "source": resolution.source,
        "datacenter": resolution.datacenter,
        "resolved_at": resolution.resolved_at,
        "endpoints": [e.to_json() for e in resolution.endpoints],
    }
    fd, temporary = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(document, file, indent=1)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _endpoint(item: object, position: int) -> Endpoint | Rejected:
    """One snapshot entry as an endpoint, or why it cannot be one (pure, total)."""
    what = f"endpoints[{position}]"
    if not isinstance(item, dict):
        return Rejected(what, f"expected an object, got {type(item).__name__}")
    problem = endpoint_problem(item.get("address"), item.get("port"))
    if problem is not None:
        return Rejected(what, problem)
    texts = {k: item.get(k, "") for k in ("node", "datacenter", "service_id")}
    tags, meta = item.get("tags") or [], item.get("meta") or {}
    if not all(isinstance(v, str) for v in texts.values()):
        return Rejected(what, "node, datacenter and service_id must be strings")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return Rejected(what, "tags must be a list of strings")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        return Rejected(what, "meta must be an object of strings")
    return Endpoint(
        address=item["address"],
        port=item["port"],
        node=texts["node"],
        datacenter=texts["datacenter"],
        service_id=texts["service_id"],
        tags=tuple(tags),
        meta=meta,
    )


def _decode(document: object, source: Path, target: str | None) -> Resolution | None:
    if not isinstance(document, dict):
        raise ValueError(f"expected a JSON object, got {type(document).__name__}")
    if document.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"unsupported version {shorten(document.get('version'))}")
    if target is not None and document.get("target") != target:
        _log.warning(
            "ignoring snapshot %s written for %s, not %s",
            source,
            shorten(document.get("target")),
            target,
        )
        return None
    items = document.get("endpoints")
    if not isinstance(items, list):
        raise ValueError("endpoints: expected a list")
    converted = Converted.of(_endpoint(item, i) for i, item in enumerate(items))
    if converted.rejected:
        _log.warning(
            "snapshot %s: %d endpoint(s) ignored%s: %s",
            source,
            len(converted.rejected),
            " (all of them)" if converted.rejected_whole else "",
            converted.describe(),
        )
    if converted.rejected_whole:
        return None
    datacenter = document.get("datacenter")
    resolved_at = document.get("resolved_at")
    if isinstance(resolved_at, bool) or not isinstance(resolved_at, int | float):
        raise ValueError(f"resolved_at: expected a number, got {type(resolved_at).__name__}")
    return Resolution(
        endpoints=converted.endpoints,
        source=f"snapshot:{source}",
        datacenter=datacenter if isinstance(datacenter, str) else None,
        # an absurd time (NaN, infinite, in the future) reads as "age unknown": the epoch
        resolved_at=float(resolved_at) if 0 <= resolved_at <= time.time() else 0.0,
        stale=True,
    )


def load_snapshot(path: str | os.PathLike[str], target: str | None = None) -> Resolution | None:
    """The snapshot at ``path`` as a stale :class:`Resolution`, or ``None`` when there is none.

    A missing file gives ``None``; an unreadable or malformed one (bad JSON, wrong types, nesting
    too deep for the parser), or one written for another target (when ``target`` is given), is
    logged as a warning and ignored. Entries that cannot be endpoints (a bad address or port,
    wrong types) are left out one by one, and logged; a file of nothing else is ignored. Never
    raises: a bad file must not stop a source from starting.
    """
    source = Path(path)
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
        return _decode(document, source, target)
    except FileNotFoundError:
        return None
    except Exception as exc:  # OSError, ValueError, RecursionError, MemoryError...
        _log.warning("ignoring unusable snapshot %s: %s", source, shorten(exc, 200))
        return None
