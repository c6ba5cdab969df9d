"""YAML as go-yaml v3 decodes it, with positions, duplicate keys, merge keys and tags."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from orchestr.stack.errors import StackError
from orchestr.stack.schema import cast_types, errors
from orchestr.stack.yamlfile import load_yaml


def one(text: str) -> object:
    return load_yaml(text, "c.yaml")[0].data


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("22:22", "22:22"), ("1:30", "1:30"), ("yes", "yes"), ("no", "no"), ("on", "on"),
        ("off", "off"), ("y", "y"), ("true", True), ("False", False), ("TRUE", True),
        ("~", None), ("null", None), ("", None), ("12", 12), ("-3", -3), ("0x1F", 31),
        ("0o17", 15), ("0777", 511), ("0b101", 5), ("1_000", 1000), ("1.5", 1.5),
        ("1e3", 1000.0), (".inf", math.inf), ("-.Inf", -math.inf), ("2001-12-14", "2001-12-14"),
        ("'22'", "22"), ('"true"', "true"), ("!!str 12", "12"), ("08", 8.0),
    ],
)  # fmt: skip
def test_scalars_resolve_as_yaml_12(text: str, value: object) -> None:
    assert one(f"v: {text}\n") == {"v": value}


def test_nan() -> None:
    data = one("v: .nan\n")
    assert isinstance(data, dict) and math.isnan(data["v"])


def test_positions_are_of_keys_and_items() -> None:
    doc = load_yaml("services:\n  web:\n    ports:\n      - 80\n      - '81'\n", "c.yaml")[0]
    assert doc.positions[("services", "web")] == (2, 3)
    assert doc.positions[("services", "web", "ports")] == (3, 5)
    assert doc.positions[("services", "web", "ports", 1)] == (5, 9)
    assert doc.locate(("services", "web", "ports", 1, "nope")) == (5, 9)


def test_duplicate_keys_name_both_lines() -> None:
    with pytest.raises(StackError) as caught:
        load_yaml("a:\n  b: 1\n  b: 2\n", "c.yaml")
    assert str(caught.value) == "c.yaml:3:3: a: mapping key 'b' already defined at line 2"


def test_merge_keys_and_anchors() -> None:
    data = one("x: &x {a: 1, b: 2}\ny: &y {c: 3}\nz:\n  <<: [*x, *y]\n  b: 9\n")
    assert data == {"x": {"a": 1, "b": 2}, "y": {"c": 3}, "z": {"a": 1, "b": 9, "c": 3}}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("x: &a [*a]\n", "x[0]"),
        ("x: &a {<<: *a}\n", "x"),  # through a merge key (was a RecursionError)
        ("x: &a {b: {<<: [*a]}}\n", "x.b"),
    ],
)
def test_an_alias_inside_its_own_value_is_refused(text: str, where: str) -> None:
    with pytest.raises(StackError, match="an alias refers to a value that contains it") as caught:
        load_yaml(text, "c.yaml")
    assert f"c.yaml:1:4: {where}:" in str(caught.value)


def test_aliases_of_aliases_are_bounded() -> None:
    """A "billion laughs" document stops at go-yaml's bound, with an error, quickly."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    with pytest.raises(StackError, match="expands to more than 400000 values"):
        load_yaml("\n".join(lines) + "\n", "bomb.yaml")


def test_reset_and_override_tags() -> None:
    doc = load_yaml(
        "s:\n  ports: !reset []\n  env: !override {A: 1}\n  l: [a, !reset b, c]\n", "f"
    )[0]
    assert doc.data == {"s": {"env": {"A": 1}, "l": ["a", "c"]}}
    assert doc.tags == {("s", "ports"): "reset", ("s", "env"): "override", ("s", "l", 1): "reset"}


def test_bad_yaml_and_bad_tags() -> None:
    with pytest.raises(StackError) as caught:
        load_yaml("a: b: c\n", "c.yaml")
    assert (caught.value.line, caught.value.column) == (1, 5)
    assert "mapping values are not allowed" in str(caught.value)
    with pytest.raises(StackError, match="unknown tag !weird"):
        load_yaml("a: !weird x\n", "c.yaml")
    with pytest.raises(StackError, match="a mapping key must be a scalar"):
        load_yaml("? [a]\n: 1\n", "c.yaml")


def test_several_documents_and_empty_text() -> None:
    assert [d.data for d in load_yaml("a: 1\n---\nb: 2\n", "f")] == [{"a": 1}, {"b": 2}]
    assert [d.data for d in load_yaml("", "f")] == [None]


def test_casts_after_interpolation() -> None:
    data = {"services": {"w": {"read_only": "yes", "scale": "3", "ports": [{"target": "80"}],
                               "ulimits": {"nofile": "10"}, "image": "5"}}}  # fmt: skip
    assert cast_types(data) == {
        "services": {"w": {"read_only": True, "scale": 3, "ports": [{"target": 80}],
                           "ulimits": {"nofile": 10}, "image": "5"}}}  # fmt: skip
    with pytest.raises(StackError) as caught:
        cast_types({"services": {"w": {"scale": "many"}}})
    assert caught.value.path == ("services", "w", "scale")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"services": {"w": {"imag": "x"}}},
         "services.w.imag: unknown key 'imag' (hint: did you mean 'image'?)"),
        ({"services": {"w": {"ports": 80}}}, "services.w.ports: expected a list, got a number"),
        ({"services": {"w": {"depends_on": {"d": {"condition": "up"}}}}},
         'services.w.depends_on.d.condition: "up" is not one of service_started, '
         "service_healthy, service_completed_successfully"),
        ({"services": {"w": {"depends_on": {"d": {"required": True}}}}},
         "services.w.depends_on.d: 'condition' is required"),
        ({"services": {"w": {"dns": ["a", "a"]}}}, 'services.w.dns: duplicate item "a"'),
        ({"services": {"w": {"ports": [{"target": 80, "bogus": 1}]}}},
         "services.w.ports[0].bogus: unknown key 'bogus'"),
        ({"services": {"a b": {}}}, "services.a b: 'a b' is not a valid service name"),
        ({"servics": {}}, "servics: unknown key 'servics' (hint: did you mean 'services'?)"),
    ],
)  # fmt: skip
def test_schema_errors_read_well(doc: dict[str, object], message: str) -> None:
    found = errors(doc)
    assert found, "expected an error"
    assert str(found[0]).startswith(message)


def test_valid_documents_are_remembered_and_not_checked_again(tmp_path: Path) -> None:
    from orchestr.stack import schema

    cache = str(tmp_path / "cache")
    good = {"services": {"w": {"image": "x"}}}
    schema.check(good, cache_dir=cache)
    assert len(list((tmp_path / "cache").iterdir())) == 1
    original = schema.errors
    try:
        schema.errors = lambda *a, **k: pytest.fail("checked again")  # type: ignore[assignment]
        schema.check({"services": {"w": {"image": "x"}}}, cache_dir=cache)
    finally:
        schema.errors = original  # type: ignore[assignment]
    with pytest.raises(StackError):  # an invalid one is never remembered
        schema.check({"services": {"w": {"imag": "x"}}}, cache_dir=cache)
    with pytest.raises(StackError):
        schema.check({"services": {"w": {"imag": "x"}}}, cache_dir=cache)
    assert len(list((tmp_path / "cache").iterdir())) == 1
