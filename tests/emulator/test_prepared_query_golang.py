"""Go standard-library texts that Consul copies into prepared-query answers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.testing.consul.prepared_query_golang import (
    GoError,
    compile_go_regexp,
    decode_json_value,
    go_atoi,
    is_uuid,
    parse_duration_ns,
    uuid_index_error,
)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "EOF"),
        (b" \n\t", "EOF"),
        (b'{"Name": "x", ', "unexpected EOF"),  # recorded in 08_errors
        (b"{", "unexpected EOF"),  # recorded in 08_errors (update)
        (b"[1, 2", "unexpected EOF"),
        (b"tru", "unexpected EOF"),
        (b'{"a" 1}', "invalid character '1' after object key"),
        (b'{"a": 1 "b"}', "invalid character '\"' after object key:value pair"),
        (b"[1 2]", "invalid character '2' after array element"),
        (b"{1: 2}", "invalid character '1' looking for beginning of object key string"),
        (b"x", "invalid character 'x' looking for beginning of value"),
        (b"trx", "invalid character 'x' in literal true (expecting 'u')"),
        (b'{"a": -}', "invalid character '}' in numeric literal"),
        (b'{"a": 1.}', "invalid character '}' after decimal point in numeric literal"),
        (b'"\\q"', "invalid character 'q' in string escape code"),
        (b'"a\nb"', "invalid character '\\n' in string literal"),
    ],
)
def test_json_decoder_errors_are_go_texts(body: bytes, message: str) -> None:
    with pytest.raises(GoError) as caught:
        decode_json_value(body)
    assert str(caught.value) == message


def test_json_decoder_reads_only_the_first_value() -> None:
    assert decode_json_value(b'{"Name": "x"} trailing garbage') == {"Name": "x"}
    assert decode_json_value(b"null") is None
    assert decode_json_value(b"12") == 12


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


@settings(deadline=None)
@given(json_values)
def test_any_valid_json_decodes_to_itself(value: object) -> None:
    assert decode_json_value(json.dumps(value).encode()) == value


@settings(deadline=None)
@given(json_values, st.data())
def test_any_truncated_json_container_is_an_unexpected_eof(
    value: object, data: st.DataObject
) -> None:
    text = json.dumps([value]).encode()
    cut = data.draw(st.integers(1, len(text) - 1))
    with pytest.raises(GoError) as caught:
        decode_json_value(text[:cut])
    assert str(caught.value) == "unexpected EOF"


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("10s", 10 * 10**9),
        ("0", 0),
        ("1h30m", 5400 * 10**9),
        ("1.5s", 1_500_000_000),
        (".5s", 500_000_000),
        ("-10s", -10 * 10**9),
        ("100ms", 100_000_000),
        ("1\u00b5s", 1000),
    ],
)
def test_parse_duration(text: str, nanoseconds: int) -> None:
    assert parse_duration_ns(text) == nanoseconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ten", 'time: invalid duration "ten"'),  # recorded in 08_errors
        ("10", 'time: missing unit in duration "10"'),
        ("10x", 'time: unknown unit "x" in duration "10x"'),
        ("", 'time: invalid duration ""'),
        ("-", 'time: invalid duration "-"'),
        (".s", 'time: invalid duration ".s"'),
        ("99999999999h", 'time: invalid duration "99999999999h"'),
    ],
)
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(GoError) as caught:
        parse_duration_ns(text)
    assert str(caught.value) == message


@settings(deadline=None)
@given(st.integers(0, 10**6), st.sampled_from(["ns", "us", "ms", "s", "m", "h"]))
def test_parse_duration_of_whole_units(amount: int, unit: str) -> None:
    scale = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    assert parse_duration_ns(f"{amount}{unit}") == amount * scale[unit]


def test_atoi() -> None:
    assert go_atoi("-1") == -1
    assert go_atoi("+5") == 5
    with pytest.raises(GoError) as caught:
        go_atoi("abc")
    assert str(caught.value) == 'strconv.Atoi: parsing "abc": invalid syntax'  # recorded in 06
    with pytest.raises(GoError) as caught:
        go_atoi("99999999999999999999")
    assert str(caught.value) == 'strconv.Atoi: parsing "99999999999999999999": value out of range'


def test_uuid_checks() -> None:
    assert is_uuid("F1582195-1c73-c571-d697-e554726e51c2")
    assert not is_uuid("storage-object-minio")
    assert uuid_index_error("f1582195-1c73-c571-d697-e554726e51c2") is None
    assert uuid_index_error("storage-object-minio") == "UUID must be 36 characters"
    assert uuid_index_error("g1582195-1c73-c571-d697-e554726e51c2") == (
        "Invalid UUID: encoding/hex: invalid byte: U+0067 'g'"
    )


def test_regexp_errors_have_go_shape() -> None:
    assert compile_go_regexp(r"^geo-([^-]+)-(.+)$").search("geo-eu-svc") is not None
    with pytest.raises(GoError) as caught:
        compile_go_regexp("^geo-(")
    assert str(caught.value) == "error parsing regexp: missing closing ): `^geo-(`"
