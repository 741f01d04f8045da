"""Where presigned and public URLs point: an external host, independent of the serving node.

The reference deployment hands browsers URLs on ``MINIO_EXTERNAL_HOST:MINIO_EXTERNAL_PORT`` (a
load balancer or CDN name), never a storage node's address. Presigning is local (an HMAC over
the host, path and query): no request is sent, so it neither needs nor uses a healthy node.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["ExternalEndpoint"]


@dataclass(frozen=True, slots=True)
class ExternalEndpoint:
    """Host (and port) that presigned/public URLs name, e.g. ``files.example.com:443``."""

    host: str
    port: int | None = None
    secure: bool = True

    def __post_init__(self) -> None:
        if not self.host or "/" in self.host:
            raise ValueError(f"ExternalEndpoint host must be a host name, got {self.host!r}")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"ExternalEndpoint port must be in 1..65535, got {self.port!r}")

    @property
    def netloc(self) -> str:
        """``host`` or ``host:port`` (the default port of the scheme is left out)."""
        default = 443 if self.secure else 80
        if self.port is None or self.port == default:
            return self.host
        return f"{self.host}:{self.port}"

    def public_url(self, bucket_name: str, object_name: str) -> str:
        """The unsigned path-style URL of an object (for buckets with a public-read policy)."""
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.netloc}/{quote(bucket_name)}/{quote(object_name)}"

    @staticmethod
    def from_env(environ: Mapping[str, str] | None = None) -> ExternalEndpoint | None:
        """From ``MINIO_EXTERNAL_HOST`` / ``MINIO_EXTERNAL_PORT`` and
        ``MINIO_EXTERNAL_SECURE`` (``true``/``false``; default: true unless the port is 80).
        None when ``MINIO_EXTERNAL_HOST`` is unset or empty."""
        env = os.environ if environ is None else environ
        host = env.get("MINIO_EXTERNAL_HOST", "").strip()
        if not host:
            return None
        port_text = env.get("MINIO_EXTERNAL_PORT", "").strip()
        try:
            port = int(port_text) if port_text else None
        except ValueError:
            raise ValueError(f"MINIO_EXTERNAL_PORT must be a number, got {port_text!r}") from None
        secure_text = env.get("MINIO_EXTERNAL_SECURE", "").strip().lower()
        if secure_text:
            if secure_text not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(
                    f"MINIO_EXTERNAL_SECURE must be true or false, got {secure_text!r}"
                )
            secure = secure_text in ("1", "true", "yes")
        else:
            secure = port != 80
        return ExternalEndpoint(host, port, secure)
