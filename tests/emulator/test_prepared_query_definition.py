"""Decoding, normalisation and validation of prepared-query definitions (Consul 1.0.8)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.testing.consul.prepared_query_definition import (
    DefinitionError,
    blank_definition,
    decode_definition,
    stored_form,
    validate_definition,
)
from mcresolve.testing.consul.prepared_query_golang import GoError


def test_minimal_definition_is_normalised_like_the_recording() -> None:
    decoded = decode_definition({"Name": "minio-nofailover", "Service": {"Service": "svc"}})
    stored = stored_form(decoded, "d2647338-3735-4fdd-a68e-3808072e88dc", 128, 128)
    # 06_prepared_queries step 18, the minio-nofailover element.
    assert stored == {
        "ID": "d2647338-3735-4fdd-a68e-3808072e88dc",
        "Name": "minio-nofailover",
        "Session": "",
        "Token": "",
        "Template": {"Type": "", "Regexp": "", "RemoveEmptyTags": False},
        "Service": {
            "Service": "svc",
            "Failover": {"NearestN": 0, "Datacenters": None},
            "OnlyPassing": False,
            "IgnoreCheckIDs": None,
            "Near": "",
            "Tags": None,
            "NodeMeta": None,
        },
        "DNS": {"TTL": ""},
        "CreateIndex": 128,
        "ModifyIndex": 128,
    }
    assert list(stored) == [
        "ID",
        "Name",
        "Session",
        "Token",
        "Template",
        "Service",
        "DNS",
        "CreateIndex",
        "ModifyIndex",
    ]


def test_keys_match_case_insensitively_and_exact_case_wins() -> None:
    decoded = decode_definition(
        {
            "name": "q",
            "SERVICE": {"service": "svc", "failover": {"nearestn": 2}},
            "Dns": {"ttl": "5s"},
        }
    )
    assert decoded["Name"] == "q"
    assert decoded["Service"]["Service"] == "svc"
    assert decoded["Service"]["Failover"]["NearestN"] == 2
    assert decoded["DNS"]["TTL"] == "5s"
    assert decode_definition({"name": "lower", "Name": "exact"})["Name"] == "exact"


def test_null_and_unknown_keys_leave_zero_values() -> None:
    decoded = decode_definition({"Name": None, "Service": None, "Bogus": 1, "CreateIndex": 5})
    assert decoded == blank_definition()
    assert decode_definition(None) == blank_definition()


def test_empty_lists_and_maps_stay_empty_not_null() -> None:
    decoded = decode_definition({"Service": {"Tags": [], "NodeMeta": {}}})
    assert decoded["Service"]["Tags"] == []
    assert decoded["Service"]["NodeMeta"] == {}


def test_numbers_truncate_into_ints() -> None:
    assert (
        decode_definition({"Service": {"Failover": {"NearestN": 2.9}}})["Service"]["Failover"][
            "NearestN"
        ]
        == 2
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "'' expected a map, got 'slice'"),
        ("x", "'' expected a map, got 'string'"),
        (
            {"Service": "svc"},
            "1 error(s) decoding:\n\n* 'Service' expected a map, got 'string'",
        ),
        (
            {"Service": {"Failover": {"NearestN": "1"}}},
            "1 error(s) decoding:\n\n* 'Service.Failover.NearestN' expected type 'int', got "
            "unconvertible type 'string'",
        ),
        (
            {"Name": 5, "Service": {"OnlyPassing": "yes", "Tags": "v1"}},
            "3 error(s) decoding:\n\n"
            "* 'Name' expected type 'string', got unconvertible type 'float64'\n"
            "* 'Service.OnlyPassing' expected type 'bool', got unconvertible type 'string'\n"
            "* 'Service.Tags': source data must be an array or slice, got string",
        ),
        (
            {"Service": {"IgnoreCheckIDs": [1], "NodeMeta": {"rack": 1}}},
            "2 error(s) decoding:\n\n"
            "* 'Service.IgnoreCheckIDs[0]' expected type 'types.CheckID', got unconvertible "
            "type 'float64'\n"
            "* 'Service.NodeMeta[rack]' expected type 'string', got unconvertible type 'float64'",
        ),
    ],
)
def test_type_errors_are_mapstructure_texts(raw: Any, message: str) -> None:
    with pytest.raises(GoError) as caught:
        decode_definition(raw)
    assert str(caught.value) == message


def _valid(**service: Any) -> dict[str, Any]:
    return decode_definition({"Name": "q", "Service": {"Service": "svc", **service}})


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        # Recorded in 06 (step 16) and 08 (steps 26, 27).
        (
            decode_definition({"Name": "bad-q", "Service": {}}),
            "Invalid prepared query: Must provide a Service name to query",
        ),
        (
            decode_definition({"Name": "t", "Service": {"Service": "s"}, "DNS": {"TTL": "ten"}}),
            "Invalid prepared query: Bad DNS TTL 'ten': time: invalid duration \"ten\"",
        ),
        (
            _valid(Failover={"NearestN": -1}),
            "Invalid prepared query: Bad NearestN '-1', must be >= 0",
        ),
        (
            decode_definition({"Name": "t", "Service": {"Service": "s"}, "DNS": {"TTL": "-1s"}}),
            "Invalid prepared query: DNS TTL '-1000000000', must be >=0",
        ),
        (
            decode_definition({"Service": {"Service": "s"}}),
            "Invalid prepared query: Must be bound to a session",
        ),
        (
            decode_definition({"Name": "t", "Token": "<hidden>", "Service": {"Service": "s"}}),
            "Invalid prepared query: Bad Token '<hidden>', it looks like a query definition with "
            "a redacted token was submitted",
        ),
        (
            _valid(NodeMeta={"bad key": "v"}),
            "Invalid prepared query: Couldn't load metadata pair ('bad key', 'v'): Key contains "
            "invalid characters",
        ),
    ],
)
def test_validation_errors(definition: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        validate_definition(definition)
    assert str(caught.value) == message


def test_valid_definitions_pass() -> None:
    validate_definition(_valid(Failover={"Datacenters": ["nope"]}))  # unknown dc is accepted (08)
    validate_definition(
        decode_definition(
            {
                "Name": "",
                "Template": {"Type": "name_prefix_match"},
                "Service": {"Service": "${name.full}"},
            }
        )
    )
    validate_definition(decode_definition({"Service": {"Service": "s"}}), enforce_version_8=False)


@settings(deadline=None)
@given(st.integers(-100, 100))
def test_nearest_n_sign_decides_validity(nearest: int) -> None:
    definition = _valid(Failover={"NearestN": nearest})
    if nearest >= 0:
        validate_definition(definition)
    else:
        with pytest.raises(DefinitionError):
            validate_definition(definition)
