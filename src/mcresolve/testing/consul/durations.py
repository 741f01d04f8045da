"""Go's ``time.ParseDuration`` as Consul uses it for ``?wait=``, ``TTL``, ``Interval`` and friends.

Pure functions: error messages are Go's exact texts (Consul copies them into its HTTP answers).
"""

from __future__ import annotations

import re

_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d*\.?\d*)([^\d.]*)")


class GoDurationError(ValueError):
    """A duration Go's ``time.ParseDuration`` rejects; ``str()`` is Go's message."""


def parse_go_duration(text: str) -> float:
    """Parse a Go duration (``"5s"``, ``"1m30s"``, ``"2.5s"``, ``"100ms"``, ``"-1s"``, ``"0"``)
    into seconds, raising :class:`GoDurationError` with Go's message when it is invalid."""
    quoted = '"' + text + '"'
    rest = text
    sign = 1.0
    if rest[:1] in ("-", "+"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise GoDurationError(f"time: invalid duration {quoted}")
    total = 0.0
    while rest:
        match = _PART.match(rest)
        if match is None:  # pragma: no cover - the pattern matches the empty string
            raise GoDurationError(f"time: invalid duration {quoted}")
        number, unit = match.group(1), match.group(2)
        if number in ("", "."):
            raise GoDurationError(f"time: invalid duration {quoted}")
        if not unit:
            raise GoDurationError(f"time: missing unit in duration {quoted}")
        if unit not in _UNITS:
            raise GoDurationError(f'time: unknown unit "{unit}" in duration {quoted}')
        total += float(number) * _UNITS[unit]
        rest = rest[match.end() :]
    return sign * total


def format_go_duration(seconds: float) -> str:
    """Render seconds the way Go's ``Duration.String`` does for whole-ish values
    (``15m0s``, ``3s``, ``1.5s``, ``100ms``)."""
    if seconds == 0:
        return "0s"
    if abs(seconds) < 1:
        ms = seconds * 1000
        return f"{ms:g}ms"
    hours, rem = divmod(seconds, 3600)
    minutes, secs = divmod(rem, 60)
    out = ""
    if hours:
        out += f"{int(hours)}h"
    if hours or minutes:
        out += f"{int(minutes)}m"
    out += f"{secs:g}s"
    return out
