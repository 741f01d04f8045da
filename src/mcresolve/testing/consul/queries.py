"""Pure query-parameter semantics of Consul 1.0.8's read endpoints: blocking parameters, the
``?passing`` filter (with its peculiar order), ``?tag``, ``?node-meta`` and ``?near``."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .catalog import PASSING
from .contracts import EmulatorError
from .durations import GoDurationError, parse_go_duration

T = TypeVar("T")

DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0
JITTER_FRACTION = 16

Query = Mapping[str, list[str]]


def first(query: Query, name: str) -> str | None:
    """The first value of a query parameter, ``None`` when absent."""
    values = query.get(name)
    return values[0] if values else None


@dataclass(frozen=True)
class BlockingParams:
    """``?index=`` and ``?wait=`` of a read; ``index`` 0 means a plain read."""

    index: int
    wait: float


def parse_blocking(query: Query) -> BlockingParams:
    """Parse ``?wait`` (Go duration, default 5 min, capped at 10 min; zero, negative or empty
    means the default) and ``?index`` (unsigned integer; empty means none)."""
    wait = DEFAULT_WAIT
    raw_wait = first(query, "wait")
    if raw_wait is not None and raw_wait != "":
        try:
            parsed = parse_go_duration(raw_wait)
        except GoDurationError:
            raise EmulatorError(400, "Invalid wait time") from None
        if parsed > 0:
            wait = min(parsed, MAX_WAIT)
    index = 0
    raw_index = first(query, "index")
    if raw_index:
        if not raw_index.isdigit():
            raise EmulatorError(400, "Invalid index")
        index = int(raw_index)
    return BlockingParams(index=index, wait=wait)


def jittered(wait: float, rng: random.Random) -> float:
    """Consul adds a random stagger of up to wait/16 to every blocking wait."""
    return wait + rng.uniform(0.0, wait / JITTER_FRACTION)


def consistency_mode(query: Query) -> str:
    """``leader`` (default), ``stale`` or ``consistent``; both at once is a 400."""
    stale = "stale" in query
    consistent = "consistent" in query
    if stale and consistent:
        raise EmulatorError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
    if stale:
        return "stale"
    if consistent:
        return "consistent"
    return "leader"


def bool_param(query: Query, name: str) -> bool:
    """Go's ``strconv.ParseBool`` on a present parameter; an empty value means true."""
    if name not in query:
        return False
    value = first(query, name) or ""
    if value == "":
        return True
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise EmulatorError(400, f"Invalid value for ?{name}")


def node_meta_filters(query: Query) -> dict[str, str]:
    """``?node-meta=key:value`` pairs (a value without ``:`` is a key with an empty value)."""
    out: dict[str, str] = {}
    for pair in query.get("node-meta", []):
        key, sep, value = pair.partition(":")
        out[key] = value if sep else ""
    return out


def meta_matches(meta: Mapping[str, str] | None, filters: Mapping[str, str]) -> bool:
    if not filters:
        return True
    meta = meta or {}
    return all(key in meta and meta[key] == value for key, value in filters.items())


def tag_matches(tags: Sequence[str], wanted: str) -> bool:
    wanted = wanted.lower()
    return any(tag.lower() == wanted for tag in tags)


def filter_passing(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep entries whose checks are all passing, removing the way Consul does: each dropped
    entry is replaced by the current last one (so the order changes)."""
    items = list(entries)
    n = len(items)
    i = 0
    while i < n:
        if all(check.get("Status") == PASSING for check in items[i].get("Checks", [])):
            i += 1
            continue
        items[i], items[n - 1] = items[n - 1], items[i]
        n -= 1
    return items[:n]


def sort_near(
    items: Sequence[T], node_of: Callable[[T], str], distances: Mapping[str, float]
) -> list[T]:
    """Stable sort by distance; nodes without a coordinate go last. ``distances`` maps a
    lower-cased node name to its distance from the reference node."""
    inf = float("inf")
    return sorted(items, key=lambda item: distances.get(node_of(item).lower(), inf))
