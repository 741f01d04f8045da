"""Prepared-query templates: compile errors and rendering, as recorded in 06."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.testing.consul.prepared_query_definition import decode_definition, stored_form
from mcresolve.testing.consul.prepared_query_template import TemplateError, compile_template


def _template(name: str, service: dict[str, Any], **template: Any) -> dict[str, Any]:
    raw = {"Name": name, "Template": {"Type": "name_prefix_match", **template}, "Service": service}
    return stored_form(decode_definition(raw), "4a3efd62-6bf7-ac13-49ed-c06ffe1c3400", 161, 161)


def test_name_suffix_renders_the_service() -> None:
    compiled = compile_template(
        _template("tmpl-", {"Service": "${name.suffix}", "Failover": {"NearestN": 1}})
    )
    rendered = compiled.render("tmpl-storage-object-minio")
    assert rendered["Service"]["Service"] == "storage-object-minio"
    # The rendered query keeps the template's own identity (06 step 95).
    assert rendered["Name"] == "tmpl-"
    assert rendered["ID"] == "4a3efd62-6bf7-ac13-49ed-c06ffe1c3400"
    assert rendered["CreateIndex"] == 161
    assert rendered["Service"]["Failover"] == {"NearestN": 1, "Datacenters": None}


def test_regexp_groups_fill_service_and_tags() -> None:
    compiled = compile_template(
        _template(
            "geo-",
            {"Service": "${match(2)}", "Tags": ["${match(1)}"]},
            Regexp="^geo-([^-]+)-(.+)$",
        )
    )
    rendered = compiled.render("geo-primary-storage-object-minio")
    assert rendered["Service"]["Service"] == "storage-object-minio"
    assert rendered["Service"]["Tags"] == ["primary"]
    assert compiled.render("geo-x")["Service"]["Service"] == ""  # no match: empty groups


def test_catch_all_full_name_and_prefix_variables() -> None:
    compiled = compile_template(
        _template("", {"Service": "${name.full}", "Near": "${name.prefix}"})
    )
    rendered = compiled.render("totally-unknown-name")
    assert rendered["Service"]["Service"] == "totally-unknown-name"
    assert rendered["Service"]["Near"] == ""


def test_literal_text_escapes_and_literals() -> None:
    compiled = compile_template(
        _template(
            "p-",
            {
                "Service": 'svc-${name.suffix}-$${x}-${"lit"}-${7}',
                "NodeMeta": {"k": "${name.prefix}"},
            },
        )
    )
    rendered = compiled.render("p-a")
    assert rendered["Service"]["Service"] == "svc-a-${x}-lit-7"
    assert rendered["Service"]["NodeMeta"] == {"k": "p-"}


def test_remove_empty_tags() -> None:
    compiled = compile_template(
        _template("t-", {"Service": "s", "Tags": ["${match(1)}", "x"]}, RemoveEmptyTags=True)
    )
    assert compiled.render("t-anything")["Service"]["Tags"] == ["x"]


def test_suffix_trim_is_case_sensitive_like_go() -> None:
    compiled = compile_template(_template("tmpl-", {"Service": "${name.suffix}"}))
    assert compiled.render("TMPL-svc")["Service"]["Service"] == "TMPL-svc"


@pytest.mark.parametrize(
    ("template_type", "service", "message"),
    [
        ("bogus", {"Service": "${name.suffix}"}, "Bad Template.Type 'bogus'"),  # 06 step 92
        (
            "name_prefix_match",
            {"Service": "${nope}"},
            "Bad evaluation for '${nope}' in Service.Service: 1:3: unknown variable accessed: nope",
        ),  # 06 step 93
        (
            "name_prefix_match",
            {"Service": "s", "Tags": ["a-${nope}"]},
            "Bad evaluation for 'a-${nope}' in Service.Tags[0]: 1:5: unknown variable accessed: "
            "nope",
        ),
        (
            "name_prefix_match",
            {"Service": "${oops(1)}"},
            "Bad evaluation for '${oops(1)}' in Service.Service: 1:3: unknown function called: "
            "oops",
        ),
    ],
)
def test_compile_errors(template_type: str, service: dict[str, Any], message: str) -> None:
    definition = _template("bad-", service)
    definition["Template"]["Type"] = template_type
    with pytest.raises(TemplateError) as caught:
        compile_template(definition)
    assert str(caught.value) == message


def test_unterminated_interpolation_is_a_bad_format() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(_template("bad-", {"Service": "${name.full"}))
    assert str(caught.value).startswith("Bad format '${name.full' in Service.Service: ")


def test_bad_regexp() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(_template("bad-", {"Service": "s"}, Regexp="("))
    assert str(caught.value) == "Bad Regexp: error parsing regexp: missing closing ): `(`"


@settings(deadline=None)
@given(st.text(alphabet="abcdefghij-_.0123456789", max_size=20))
def test_suffix_plus_prefix_is_the_full_name(suffix: str) -> None:
    compiled = compile_template(_template("pre-", {"Service": "${name.prefix}${name.suffix}"}))
    name = "pre-" + suffix
    assert compiled.render(name)["Service"]["Service"] == name
