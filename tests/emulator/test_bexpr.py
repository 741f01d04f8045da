"""go-bexpr filter expressions: the parser (grammar, precedence, error texts quoted in
hashicorp/consul issues) and the evaluator (examples of api-docs/features/filtering.mdx), plus
invariants over generated expressions and hostile text."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcresolve.testing.consul.bexpr import (
    BinaryOp,
    Expr,
    FilterSyntaxError,
    Match,
    Not,
    Value,
    evaluate,
    filter_items,
    parse,
    unparse,
)

# ------------------------------------------------------------------ documented examples

REDIS = {
    "redis1": {"ID": "redis1", "Tags": ["primary", "production"], "Meta": {"env": "production"}},
    "redis2": {"ID": "redis2", "Tags": ["secondary", "production"], "Meta": {"env": "production"}},
    "redis3": {"ID": "redis3", "Tags": ["primary", "qa"], "Meta": {"env": "qa"}},
}


def test_filtering_doc_agent_example() -> None:
    # api-docs/features/filtering.mdx: filter=Meta.env == "qa" keeps redis3
    kept = filter_items('Meta.env == "qa"', list(REDIS.values()))
    assert [s["ID"] for s in kept] == ["redis3"]


def test_filtering_doc_catalog_example() -> None:
    nodes = [
        {"Node": "node-1", "NodeMeta": {"os": "darwin"}},
        {"Node": "node-2", "NodeMeta": {"arch": "arm", "os": "linux"}},
        {"Node": "node-4", "NodeMeta": {"os": "freebsd"}},
    ]
    assert [n["Node"] for n in filter_items('NodeMeta.os == "linux"', nodes)] == ["node-2"]


def test_filtering_doc_health_example() -> None:
    checks = [
        {"CheckID": "node-health", "ServiceName": ""},
        {"CheckID": "svc", "ServiceName": "web"},
    ]
    assert [c["CheckID"] for c in filter_items('ServiceName != ""', checks)] == ["svc"]


def test_filtering_doc_precedence_example() -> None:
    # "<E1> and not <E2> or <E3>" is "( <E1> and (not <E2> )) or <E3>"
    plain = parse("a == 1 and not b == 2 or c == 3")
    grouped = parse("( a == 1 and (not b == 2 )) or c == 3")
    assert plain == grouped
    assert isinstance(plain, BinaryOp) and plain.operator == "or"


@pytest.mark.parametrize(
    ("expression", "ids"),
    [
        ('"primary" in Tags', ["redis1", "redis3"]),
        ('"primary" not in Tags', ["redis2"]),
        ('Tags contains "qa"', ["redis3"]),
        ('Tags not contains "qa"', ["redis1", "redis2"]),
        ("Meta.env matches `^prod`", ["redis1", "redis2"]),
        ('Meta.env not matches "^prod"', ["redis3"]),
        ('Meta["env"] == qa', ["redis3"]),
        ("Meta.missing is empty", ["redis1", "redis2", "redis3"]),
        ("Tags is not empty", ["redis1", "redis2", "redis3"]),
        ('Meta.missing == "x"', []),
        ('Meta.missing != "x"', ["redis1", "redis2", "redis3"]),
        ('not (primary in Tags and Meta.env == "qa")', ["redis1", "redis2"]),
        ('"env" in Meta and ID == redis2', ["redis2"]),
        ('ID == redis1 or ID == "redis2"', ["redis1", "redis2"]),
    ],
)
def test_operators(expression: str, ids: list[str]) -> None:
    assert [s["ID"] for s in filter_items(expression, list(REDIS.values()))] == ids


def test_typed_comparisons_and_lists_of_objects() -> None:
    entry: dict[str, Any] = {
        "Service": {"Port": 8080, "EnableTagOverride": False, "Meta": {"version": "2"}},
        "Checks": [{"Status": "passing"}, {"Status": "critical"}],
    }
    for expression, expected in (
        ("Service.Port == 8080", True),
        ("Service.Port != 8080", False),
        ("Service.EnableTagOverride == false", True),
        ('Service.Meta.version == "2"', True),
        ("Service.Meta.version == 2", True),
        ('Checks.Status == "critical"', True),
        ('"passing" in Checks.Status', True),
        ('"warning" in Checks.Status', False),
        ("Checks.0.Status == passing", True),
    ):
        assert evaluate(parse(expression), entry) is expected, expression


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        # hashicorp/consul#7338 (agent/services, filter "foo"): the exact text
        (
            "foo",
            '1:4 (3): no match found, expected: "!=", ".", "==", "[", [ \\t\\r\\n] or [a-zA-Z0-9_]',
        ),
        # hashicorp/consul#9441 (catalog/nodes, unquoted IP): the exact text
        ("Address == 10.10.10.10 ", '1:17 (16): rule "number": Invalid number literal'),
        # hashicorp/consul#6467 (an unquoted value with a hyphen): the same expectation list
        (
            "Node==host-name",
            '1:11 (10): no match found, expected: ".", "[", [ \\t\\r\\n], [a-zA-Z0-9_] or EOF',
        ),
        ('Name == "abc', '1:13 (12): rule "string": Unterminated string literal'),
        ("(Service.Port == 1", '1:19 (18): rule "grouping": Unmatched parentheses'),
        ('Meta["x" == 1', '1:10 (9): rule "index": Unclosed index expression'),
    ],
)
def test_error_texts(expression: str, message: str) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse(expression)
    assert str(caught.value) == message


def test_a_bad_regular_expression_is_refused_when_parsing() -> None:
    with pytest.raises(FilterSyntaxError, match=r"^error parsing regexp: "):
        parse('Service.ID matches "("')


def test_and_or_need_blanks_around_them() -> None:
    with pytest.raises(FilterSyntaxError):
        parse("(a == 1)and(b == 2)")
    assert parse("(a == 1) and (b == 2)") == parse("a == 1 and b == 2")


# ------------------------------------------------------------------------ invariants

identifiers = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,6}", fullmatch=True).filter(
    lambda name: name not in ("not", "and", "or", "in", "is", "contains", "matches")
)
selectors = st.tuples(
    identifiers,
    st.lists(
        st.one_of(identifiers, st.text(alphabet="ab-. /", min_size=1, max_size=4)), max_size=2
    ),
).map(lambda parts: (parts[0], *parts[1]))
string_values = st.text(alphabet=st.characters(codec="ascii", exclude_characters="`"), max_size=8)
values = st.one_of(
    string_values.map(lambda text: Value("string", text)),
    st.integers(-999, 999).map(lambda n: Value("number", str(n))),
)
patterns = st.from_regex(r"\^?[abc .xyz_-]{0,6}\$?", fullmatch=True).map(
    lambda t: Value("string", t)
)
matches = st.one_of(
    st.builds(Match, st.sampled_from(["==", "!=", "contains", "not contains"]), selectors, values),
    st.builds(Match, st.sampled_from(["matches", "not matches"]), selectors, patterns),
    st.builds(Match, st.sampled_from(["is empty", "is not empty"]), selectors),
    st.builds(Match, st.sampled_from(["in", "not in"]), selectors, values),
)


def _trees(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.builds(Not, children),
        st.builds(BinaryOp, st.sampled_from(["and", "or"]), children, children),
    )


expressions = st.recursive(matches, _trees, max_leaves=6)


def _normal(expr: Expr) -> Expr:
    """Parsing builds right-leaning and/or chains; compare trees up to associativity."""
    if isinstance(expr, BinaryOp):
        items = _flatten(expr, expr.operator)
        out = _normal(items[-1])
        for item in reversed(items[:-1]):
            out = BinaryOp(expr.operator, _normal(item), out)
        return out
    if isinstance(expr, Not):
        return Not(_normal(expr.operand))
    return expr


def _flatten(expr: Expr, operator: str) -> list[Expr]:
    if isinstance(expr, BinaryOp) and expr.operator == operator:
        return _flatten(expr.left, operator) + _flatten(expr.right, operator)
    return [expr]


@settings(max_examples=300, deadline=None)
@given(expressions)
def test_unparse_then_parse_gives_the_tree_back(expr: Expr) -> None:
    assert _normal(parse(unparse(expr))) == _normal(expr)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=3, max_size=3), st.sampled_from(["and", "or"]))
def test_and_binds_tighter_than_or(truths: list[bool], first_op: str) -> None:
    second_op = "or" if first_op == "and" else "and"
    datum = {f"v{i}": str(t).lower() for i, t in enumerate(truths)}
    text = f"v0 == true {first_op} v1 == true {second_op} v2 == true"
    a, b, c = truths
    expected = (a and b) or c if first_op == "and" else a or (b and c)
    assert evaluate(parse(text), datum) is expected
    negated = ((not a) and b) or c if first_op == "and" else (not a) or (b and c)
    assert evaluate(parse(f"not {text}"), datum) is negated


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_fails_with_a_positioned_message(text: str) -> None:
    try:
        parse(text)
    except FilterSyntaxError as exc:
        assert str(exc).startswith("1:") or ":" in str(exc).split(" ")[0]
