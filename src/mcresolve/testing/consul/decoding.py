"""Decoding request bodies the way Consul 1.0.8 does (Go's ``encoding/json`` + mapstructure):
case-insensitive keys and Go's exact error texts, wrapped as Consul wraps them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .contracts import EmulatorError
from .durations import GoDurationError, parse_go_duration

_GO_KIND = {list: "slice", str: "string", float: "float64", int: "float64", bool: "bool"}


def decode_error(detail: str) -> EmulatorError:
    """``400 Request decode failed: <detail>``."""
    return EmulatorError(400, f"Request decode failed: {detail}")


def _json_error_text(body: str, exc: json.JSONDecodeError) -> str:
    if not body.strip():
        return "EOF"
    if exc.pos >= len(body.rstrip()):
        return "unexpected EOF"
    char = body[exc.pos]
    return f"invalid character '{char}' looking for beginning of value"


def decode_json(body: bytes | None) -> Any:
    """Parse a JSON body, raising Consul's 400 ``Request decode failed: ...`` errors."""
    text = (body or b"").decode("utf-8", errors="replace")
    if not text.strip():
        raise decode_error("EOF")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise decode_error(_json_error_text(text, exc)) from None


def decode_object(body: bytes | None) -> dict[str, Any]:
    """Parse a JSON body that must be an object (``null`` counts as an empty object)."""
    value = decode_json(body)
    if value is None:
        return {}
    if not isinstance(value, dict):
        kind = _GO_KIND.get(type(value), "interface")
        raise decode_error(f"'' expected a map, got '{kind}'")
    return value


def ci_get(obj: Mapping[str, Any] | None, name: str, default: Any = None) -> Any:
    """``obj[name]`` with Go's case-insensitive field matching (exact case wins)."""
    if not obj:
        return default
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if key.lower() == lowered:
            return value
    return default


def ci_str(obj: Mapping[str, Any] | None, name: str, default: str = "") -> str:
    value = ci_get(obj, name)
    return default if value is None else str(value)


def ci_int(obj: Mapping[str, Any] | None, name: str) -> int:
    """An integer field; a string there is mapstructure's decode error."""
    value = ci_get(obj, name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = _GO_KIND.get(type(value), "interface")
        raise decode_error(
            f"1 error(s) decoding:\n\n* '{name}' expected type 'int', got unconvertible type "
            f"'{kind}'"
        )
    return int(value)


def ci_duration(obj: Mapping[str, Any] | None, name: str) -> float | None:
    """A Go duration field (string like ``"15m"`` or a number of nanoseconds)."""
    value = ci_get(obj, name)
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1e9
    try:
        return parse_go_duration(str(value))
    except GoDurationError as exc:
        raise decode_error(f'invalid "{name}": {exc}') from None


def ci_str_map(obj: Mapping[str, Any] | None, name: str) -> dict[str, str] | None:
    value = ci_get(obj, name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise decode_error(f"'{name}' expected a map, got '{_GO_KIND.get(type(value), 'x')}'")
    return {str(k): str(v) for k, v in value.items()}


def ci_str_list(obj: Mapping[str, Any] | None, name: str) -> list[str]:
    value = ci_get(obj, name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise decode_error(f"'{name}': source data must be an array or slice, got string")
    return [str(v) for v in value]
