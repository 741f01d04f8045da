"""Turning away a client connection over a listener's limit, the same way in every mode."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct

from mcresolve.sidecar.logs import log_event
from mcresolve.sidecar.spec import format_address

__all__ = ["reject_over_limit", "set_linger_reset"]


def set_linger_reset(writer: asyncio.StreamWriter) -> None:
    """SO_LINGER 0: closing sends a reset, not a FIN (a refused client knows at once)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def reject_over_limit(
    writer: asyncio.StreamWriter, listen: tuple[str, int] | None, limit: int
) -> None:
    """Reset a connection accepted while ``limit`` connections are open, and log it."""
    set_linger_reset(writer)
    writer.transport.abort()
    log_event(
        "connection_rejected",
        logging.WARNING,
        listen="?" if listen is None else format_address(listen),
        reason="max_connections",
        limit=limit,
    )
