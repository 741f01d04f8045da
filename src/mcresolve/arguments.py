"""Checks of public arguments: a wrong type raises ``TypeError``, a right type out of range
``ValueError``, each with a message that starts with the parameter's name (``Class.field`` for
policy fields), so that a mistake is reported where it was written rather than as an
``AttributeError`` or an operator's ``TypeError`` deep inside.

``bool`` is never accepted as a number, NaN never as a duration, and ``math.inf`` only where a
parameter documents it as "no limit".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = [
    "check_instance",
    "check_int_range",
    "check_iterable",
    "check_optional_instances",
    "check_optional_str",
    "check_seconds",
    "check_str_tuple",
    "type_name",
]


def type_name(value: object) -> str:
    """The name of ``value``'s type, for an error message."""
    return type(value).__name__


def check_instance(name: str, value: object, types: tuple[Any, ...], expected: str) -> None:
    """``TypeError`` naming ``name`` unless ``value`` is one of ``types`` (``bool`` is never an
    ``int`` here)."""
    if isinstance(value, bool) and bool not in types:
        raise TypeError(f"{name} must be {expected}, not bool")
    if not isinstance(value, types):
        raise TypeError(f"{name} must be {expected}, not {type_name(value)}")


def check_optional_str(name: str, value: object) -> None:
    """``TypeError`` unless ``value`` is a string or None."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, not {type_name(value)}")


def check_int_range(name: str, value: object, low: int, high: int | None = None) -> None:
    """``TypeError`` unless an ``int`` (not ``bool``); ``ValueError`` outside ``low..high``."""
    check_instance(name, value, (int,), "an int")
    assert isinstance(value, int)
    if value < low or (high is not None and value > high):
        bounds = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bounds}, got {value}")


def check_seconds(
    name: str,
    value: object,
    *,
    zero: bool = False,
    inf: bool = False,
    optional: bool = False,
    high: float | None = None,
) -> None:
    """A duration (or any real number) in seconds: ``TypeError`` unless an ``int``/``float``
    (not ``bool``; None too when ``optional``), ``ValueError`` for NaN, a negative value, zero
    (unless ``zero``), infinity (unless ``inf``: "no limit") or a value above ``high``."""
    if optional and value is None:
        return
    check_instance(
        name, value, (int, float), "a number of seconds" + (" or None" if optional else "")
    )
    assert isinstance(value, int | float)
    low = ">= 0" if zero else "> 0"
    limit = " (math.inf: no limit)" if inf else ""
    if math.isnan(value) or value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be {low} seconds{limit}, got {value!r}")
    if math.isinf(value) and not inf:
        raise ValueError(f"{name} must be a finite number of seconds {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be at most {high} seconds, got {value!r}")


def check_str_tuple(name: str, value: object) -> None:
    """``TypeError`` unless ``value`` is a tuple or list of strings."""
    if not isinstance(value, tuple | list):
        raise TypeError(f"{name} must be a tuple of strings, not {type_name(value)}")
    for item in value:
        if not isinstance(item, str):
            raise TypeError(f"{name} must hold strings, not {type_name(item)}")


def check_iterable(name: str, value: object, expected: str) -> None:
    """``TypeError`` unless ``value`` is an iterable other than a string or bytes."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be {expected}, not {type_name(value)}")


def check_optional_instances(*checks: tuple[str, object, type]) -> None:
    """``TypeError`` naming the first ``(name, value, type)`` whose value is neither None nor an
    instance of the type."""
    for name, value, kind in checks:
        if value is not None:
            check_instance(name, value, (kind,), f"a {kind.__name__} or None")
