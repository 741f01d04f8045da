"""The sidecar's admin port: ``GET /health`` and ``GET /metrics`` over plain HTTP/1.1.

One request per connection (``Connection: close``), a request head of at most 8 KiB read within
5 s: the admin port serves probes and scrapers, not traffic, and a hostile client costs it one
small buffer for a bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from mcresolve.sidecar.health import HealthReport, ListenerView
from mcresolve.sidecar.logs import log_event

__all__ = ["AdminServer", "ListenerCollector", "prometheus_registry"]

HEAD_LIMIT = 8192
HEAD_TIMEOUT = 5.0


class ListenerCollector:
    """Prometheus collector of the listeners' counters (``<ns>_sidecar_*{listen, mode}``)."""

    def __init__(self, views: Callable[[], list[ListenerView]], namespace: str) -> None:
        self._views = views
        self._ns = namespace

    def collect(self) -> Iterator[Any]:
        core = importlib.import_module("prometheus_client.core")
        views = self._views()
        ns = self._ns
        rows = (
            ("connections_active", "gauge", "Client connections open", "active_connections"),
            ("connections_accepted", "counter", "Client connections accepted", "accepted_total"),
            ("connections_rejected", "counter", "Connections reset at the limit", "rejected_total"),
            ("forwarded", "counter", "Connections or requests forwarded", "requests_total"),
            ("retries", "counter", "Attempts beyond the first", "retried_total"),
            ("failed", "counter", "Connections or requests no endpoint took", "failed_total"),
            ("received_bytes", "counter", "Bytes from clients", "bytes_in_total"),
            ("sent_bytes", "counter", "Bytes to clients", "bytes_out_total"),
        )  # fmt: skip
        for name, kind, help_text, field in rows:
            family_type = core.GaugeMetricFamily if kind == "gauge" else core.CounterMetricFamily
            family = family_type(f"{ns}_sidecar_{name}", help_text, labels=["listen", "mode"])
            for view in views:
                family.add_metric([view.listen, view.mode], getattr(view.stats, field))
            yield family


def prometheus_registry() -> Any:
    """A fresh ``CollectorRegistry`` (None without prometheus-client)."""
    try:
        prom = importlib.import_module("prometheus_client")
    except ImportError:  # pragma: no cover - depends on the installation
        return None
    return prom.CollectorRegistry()


class AdminServer:
    """``/health`` from ``health()``, ``/metrics`` from ``registry`` (None: 501)."""

    def __init__(
        self, listen: tuple[str, int], health: Callable[[], HealthReport], registry: Any
    ) -> None:
        self._listen = listen
        self._health = health
        self._registry = registry
        self._server: asyncio.Server | None = None
        self.address = listen

    async def start(self) -> None:
        host, port = self._listen
        self._server = await asyncio.start_server(self._serve, host, port, reuse_address=True)
        sockname = self._server.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, content_type, body = self._answer(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            status, content_type, body = 400, "text/plain", b"bad request\n"
        except asyncio.CancelledError:
            writer.transport.abort()
            return
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  501: "Not Implemented", 503: "Service Unavailable"}.get(status, "")  # fmt: skip
        head_out = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            writer.write(head_out.encode("ascii") + body)
            await writer.drain()
        writer.close()

    def _answer(self, head: bytes) -> tuple[int, str, bytes]:
        if len(head) > HEAD_LIMIT:
            return 400, "text/plain", b"request head too large\n"
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return 400, "text/plain", b"bad request\n"
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return 405, "text/plain", b"GET only\n"
        if target == b"/health":
            report = self._health()
            return report.status, "application/json", json.dumps(report.body).encode() + b"\n"
        if target == b"/metrics":
            if self._registry is None:
                return 501, "text/plain", b"metrics need prometheus-client\n"
            prom = importlib.import_module("prometheus_client")
            return 200, prom.CONTENT_TYPE_LATEST, prom.generate_latest(self._registry)
        log_event("admin_not_found", path=target.decode("latin-1")[:100])
        return 404, "text/plain", b"not found: try /health or /metrics\n"
