"""Prepared-query definitions as Consul 1.0.8 decodes, normalises and validates them.

A definition is kept in Consul's own JSON shape (the dict ``GET /v1/query/<id>`` renders), with
every field present::

    {"ID", "Name", "Session", "Token",
     "Template": {"Type", "Regexp", "RemoveEmptyTags"},
     "Service": {"Service", "Failover": {"NearestN", "Datacenters"}, "OnlyPassing",
                 "IgnoreCheckIDs", "Near", "Tags", "NodeMeta"},
     "DNS": {"TTL"}}

plus ``CreateIndex``/``ModifyIndex`` once stored. Decoding follows mapstructure (which Consul runs
over the decoded JSON): keys match case-insensitively (exact case first), ``null`` leaves the zero
value, unknown keys are ignored, and type mismatches produce mapstructure's exact error list.
Everything here is pure.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from .prepared_query_golang import GoError, parse_duration_ns

#: Consul's ``structs.QueryTemplateTypeNamePrefixMatch``.
TEMPLATE_TYPE_NAME_PREFIX_MATCH = "name_prefix_match"

#: What Consul shows instead of a token it redacts; submitting it back is refused.
REDACTED_TOKEN = "<hidden>"

_META_MAX_PAIRS = 64
_META_KEY_MAX = 128
_META_VALUE_MAX = 512
_META_KEY_FORMAT = re.compile(r"^[a-zA-Z0-9_-]+$")


class DefinitionError(ValueError):
    """A definition Consul refuses; ``str()`` is the exact text of its 500 answer."""


# --------------------------------------------------------------------------- mapstructure


@dataclass(frozen=True)
class _Scalar:
    go_type: str  # as printed in mapstructure's messages: string, int, bool, types.CheckID
    kind: str  # str | int | bool


@dataclass(frozen=True)
class _Slice:
    element: _Scalar | _Struct


@dataclass(frozen=True)
class _Map:
    element: _Scalar


@dataclass(frozen=True)
class _Struct:
    fields: tuple[tuple[str, _Field], ...]


_Field = _Scalar | _Slice | _Map | _Struct

_STRING = _Scalar("string", "str")
_INT = _Scalar("int", "int")
_UINT64 = _Scalar("uint64", "int")
_BOOL = _Scalar("bool", "bool")
_CHECK_ID = _Scalar("types.CheckID", "str")

#: ``Failover.Targets`` elements (structs.QueryFailoverTarget; ``Partition``/``Namespace`` are
#: Enterprise and left out of a CE answer)
_TARGET = _Struct((("Peer", _STRING), ("Datacenter", _STRING)))

_PREPARED_QUERY = _Struct(
    (
        ("ID", _STRING),
        ("Name", _STRING),
        ("Session", _STRING),
        ("Token", _STRING),
        ("Template", _Struct((("Type", _STRING), ("Regexp", _STRING), ("RemoveEmptyTags", _BOOL)))),
        (
            "Service",
            _Struct(
                (
                    ("Service", _STRING),
                    ("Failover", _Struct((("NearestN", _INT), ("Datacenters", _Slice(_STRING))))),
                    ("OnlyPassing", _BOOL),
                    ("IgnoreCheckIDs", _Slice(_CHECK_ID)),
                    ("Near", _STRING),
                    ("Tags", _Slice(_STRING)),
                    ("NodeMeta", _Map(_STRING)),
                )
            ),
        ),
        ("DNS", _Struct((("TTL", _STRING),))),
        ("RaftIndex", _Struct((("CreateIndex", _UINT64), ("ModifyIndex", _UINT64)))),
    )
)


def _with_targets(query: _Struct) -> _Struct:
    """The modern definition: ``Failover`` gains ``Targets`` (Consul 1.14+)."""

    def patch(struct: _Struct, path: tuple[str, ...]) -> _Struct:
        fields = []
        for name, sub in struct.fields:
            if path and name == path[0] and isinstance(sub, _Struct):
                sub = patch(sub, path[1:])
            fields.append((name, sub))
        if not path:
            fields.append(("Targets", _Slice(_TARGET)))
        return _Struct(tuple(fields))

    return patch(query, ("Service", "Failover"))


_PREPARED_QUERY_MODERN = _with_targets(_PREPARED_QUERY)


def _go_type(data: Any) -> str:
    if isinstance(data, bool):
        return "bool"
    if isinstance(data, int | float):
        return "float64"
    if isinstance(data, str):
        return "string"
    if isinstance(data, list):
        return "[]interface {}"
    return "map[string]interface {}"


def _go_kind(data: Any) -> str:
    if isinstance(data, list):
        return "slice"
    if isinstance(data, dict):
        return "map"
    return _go_type(data)


def _zero(field: _Field) -> Any:
    if isinstance(field, _Scalar):
        return {"str": "", "int": 0, "bool": False}[field.kind]
    if isinstance(field, _Struct):
        return {name: _zero(sub) for name, sub in field.fields}
    return None


def _decode_scalar(name: str, data: Any, field: _Scalar, errors: list[str]) -> Any:
    if data is None:
        return _zero(field)
    ok = (
        (field.kind == "str" and isinstance(data, str))
        or (field.kind == "bool" and isinstance(data, bool))
        or (field.kind == "int" and isinstance(data, int | float) and not isinstance(data, bool))
    )
    if not ok:
        errors.append(
            f"'{name}' expected type '{field.go_type}', got unconvertible type '{_go_type(data)}'"
        )
        return _zero(field)
    return int(data) if field.kind == "int" else data


def _lookup(data: dict[str, Any], key: str) -> tuple[bool, Any]:
    if key in data:
        return True, data[key]
    for candidate, value in data.items():
        if candidate.lower() == key.lower():
            return True, value
    return False, None


def _decode(name: str, data: Any, field: _Field, current: Any, errors: list[str]) -> Any:
    if data is None:
        return current
    if isinstance(field, _Scalar):
        return _decode_scalar(name, data, field, errors)
    if isinstance(field, _Slice):
        if not isinstance(data, list):
            errors.append(f"'{name}': source data must be an array or slice, got {_go_kind(data)}")
            return current
        element = field.element
        if isinstance(element, _Struct):
            return [
                _decode(f"{name}[{index}]", item, element, _zero(element), errors)
                for index, item in enumerate(data)
            ]
        return [
            _decode_scalar(f"{name}[{index}]", item, element, errors)
            for index, item in enumerate(data)
        ]
    if isinstance(field, _Map):
        if not isinstance(data, dict):
            errors.append(f"'{name}' expected a map, got '{_go_kind(data)}'")
            return current
        return {
            key: _decode_scalar(f"{name}[{key}]", value, field.element, errors)
            for key, value in data.items()
        }
    if not isinstance(data, dict):
        errors.append(f"'{name}' expected a map, got '{_go_kind(data)}'")
        return current
    result = dict(current)
    for key, sub in field.fields:
        found, value = _lookup(data, key)
        if found:
            path = f"{name}.{key}" if name else key
            result[key] = _decode(path, value, sub, result[key], errors)
    return result


def blank_definition() -> dict[str, Any]:
    """A definition with every field at its zero value (what an empty body decodes to)."""
    definition: dict[str, Any] = _zero(_PREPARED_QUERY)
    del definition["RaftIndex"]
    return definition


def decode_definition(raw: Any, *, modern: bool = False) -> dict[str, Any]:
    """Decode a request body's JSON value into a normalised definition (``modern``: with
    ``Service.Failover.Targets``).

    Raises :class:`GoError` with mapstructure's text (``'' expected a map, got 'slice'`` or
    ``N error(s) decoding:\\n\\n* ...``), which Consul wraps in ``Request decode failed: ``.
    """
    schema = _PREPARED_QUERY_MODERN if modern else _PREPARED_QUERY
    zero = _zero(schema)
    if raw is None:
        decoded: dict[str, Any] = zero
    else:
        if not isinstance(raw, dict):
            raise GoError(f"'' expected a map, got '{_go_kind(raw)}'")
        errors: list[str] = []
        decoded = _decode("", raw, schema, zero, errors)
        if errors:
            points = sorted(f"* {error}" for error in errors)
            raise GoError(f"{len(errors)} error(s) decoding:\n\n" + "\n".join(points))
    del decoded["RaftIndex"]
    return decoded


# --------------------------------------------------------------------------- validation


def is_template(definition: dict[str, Any]) -> bool:
    """Consul's ``IsTemplate``: any non-empty ``Template.Type``."""
    return bool(definition["Template"]["Type"])


def _validate_node_meta(meta: dict[str, str] | None) -> None:
    if not meta:
        return
    if len(meta) > _META_MAX_PAIRS:
        raise DefinitionError(
            f"Node metadata cannot contain more than {_META_MAX_PAIRS} key/value pairs"
        )
    for key in sorted(meta):
        value = meta[key]
        problem = None
        if key == "":
            problem = "Key cannot be blank"
        elif not _META_KEY_FORMAT.match(key):
            problem = "Key contains invalid characters"
        elif len(key) > _META_KEY_MAX:
            problem = f"Key is too long (limit: {_META_KEY_MAX} characters)"
        elif len(value) > _META_VALUE_MAX:
            problem = f"Value is too long (limit: {_META_VALUE_MAX} characters)"
        if problem:
            raise DefinitionError(f"Couldn't load metadata pair ('{key}', '{value}'): {problem}")


def _check_definition(definition: dict[str, Any], enforce_version_8: bool) -> None:
    if enforce_version_8 and not (
        definition["Name"] or is_template(definition) or definition["Session"]
    ):
        raise DefinitionError("Must be bound to a session")
    if definition["Token"] == REDACTED_TOKEN:
        raise DefinitionError(
            f"Bad Token '{REDACTED_TOKEN}', it looks like a query definition with a redacted "
            "token was submitted"
        )
    service = definition["Service"]
    if not service["Service"]:
        raise DefinitionError("Must provide a Service name to query")
    nearest = service["Failover"]["NearestN"]
    if nearest < 0:
        raise DefinitionError(f"Bad NearestN '{nearest}', must be >= 0")
    # agent/consul/prepared_query_endpoint.go parseService (1.14+)
    if (nearest or service["Failover"]["Datacenters"]) and service["Failover"].get("Targets"):
        raise DefinitionError("Targets cannot be populated with NearestN or Datacenters")
    _validate_node_meta(service["NodeMeta"])
    ttl = definition["DNS"]["TTL"]
    if ttl:
        try:
            nanoseconds = parse_duration_ns(ttl)
        except GoError as exc:
            raise DefinitionError(f"Bad DNS TTL '{ttl}': {exc}") from None
        if nanoseconds < 0:
            raise DefinitionError(f"DNS TTL '{nanoseconds}', must be >=0")


def validate_definition(definition: dict[str, Any], *, enforce_version_8: bool = True) -> None:
    """Consul's ``parseQuery`` checks, in its order; raises :class:`DefinitionError` with
    ``Invalid prepared query: <reason>``. (Name uniqueness and templates are checked by the
    store, as Consul's state store does.)"""
    try:
        _check_definition(definition, enforce_version_8)
    except DefinitionError as exc:
        raise DefinitionError(f"Invalid prepared query: {exc}") from None


def stored_form(
    definition: dict[str, Any], query_id: str, create_index: int, modify_index: int
) -> dict[str, Any]:
    """The definition as Consul stores and renders it (fields in Consul's order)."""
    stored = copy.deepcopy(definition)
    stored["ID"] = query_id
    failover = stored["Service"]["Failover"]
    if "Targets" in failover and not failover["Targets"]:
        del failover["Targets"]  # json:",omitempty"
    return {
        "ID": stored["ID"],
        "Name": stored["Name"],
        "Session": stored["Session"],
        "Token": stored["Token"],
        "Template": stored["Template"],
        "Service": stored["Service"],
        "DNS": stored["DNS"],
        "CreateIndex": create_index,
        "ModifyIndex": modify_index,
    }
