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
from pathlib import Path

from mcresolve.endpoint import Endpoint
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


def load_snapshot(path: str | os.PathLike[str], target: str | None = None) -> Resolution | None:
    """The snapshot at ``path`` as a stale :class:`Resolution`, or ``None`` when there is none.

    A missing file gives ``None``; an unreadable or malformed one, or one written for another
    target (when ``target`` is given), is logged as a warning and ignored.
    """
    source = Path(path)
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        _log.warning("ignoring unreadable snapshot %s: %s", source, exc)
        return None
    try:
        if document["version"] != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported version {document['version']!r}")
        if target is not None and document["target"] != target:
            _log.warning(
                "ignoring snapshot %s written for %s, not %s", source, document["target"], target
            )
            return None
        endpoints = tuple(
            Endpoint(
                address=str(e["address"]),
                port=int(e["port"]),
                node=str(e.get("node", "")),
                datacenter=str(e.get("datacenter", "")),
                service_id=str(e.get("service_id", "")),
                tags=tuple(str(t) for t in e.get("tags", ())),
                meta={str(k): str(v) for k, v in (e.get("meta") or {}).items()},
            )
            for e in document["endpoints"]
        )
        datacenter = document.get("datacenter")
        return Resolution(
            endpoints=endpoints,
            source=f"snapshot:{source}",
            datacenter=None if datacenter is None else str(datacenter),
            resolved_at=float(document["resolved_at"]),
            stale=True,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        _log.warning("ignoring malformed snapshot %s: %s", source, exc)
        return None
