"""Structured log lines of the sidecar: one line per event, ``logfmt`` (``key=value``).

Every line starts with ``event=<name>``; values with spaces, quotes or ``=`` are quoted and
control characters escaped, so one event is always one line. No value ever holds a secret: the
sidecar logs addresses, targets (which carry no credentials: tokens come from the environment),
counts and error texts of socket operations.
"""

from __future__ import annotations

import logging

__all__ = ["log_event", "logfmt"]

_log = logging.getLogger("mcresolve.sidecar")


def _value(value: object) -> str:
    text = "" if value is None else str(value)
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if text and not any(c in text for c in ' "=\\'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def logfmt(event: str, **fields: object) -> str:
    """``event=<event> key=value ...`` as one line, None values left out (pure)."""
    parts = [f"event={_value(event)}"]
    parts.extend(f"{key}={_value(value)}" for key, value in fields.items() if value is not None)
    return " ".join(parts)


def log_event(event: str, level: int = logging.INFO, **fields: object) -> None:
    """Log one event line on the ``mcresolve.sidecar`` logger."""
    if _log.isEnabledFor(level):
        _log.log(level, logfmt(event, **fields))
