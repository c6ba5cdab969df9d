"""Compose variable interpolation, restating Docker Compose v2 (compose-go) behaviour.

The tables cover every operator against a set, an empty and an unset variable, nesting,
`$$`, the errors with their locations, the warnings, and the YAML tree walk.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestr.errors import OrchestrError
from orchestr.stack.interpolate import InterpolationError, interpolate, interpolate_tree

pytestmark = pytest.mark.unit

ENV = {"FOO": "first", "BAR": "", "JSON": '{"json":2}', "lower": "low"}
lookup = ENV.get


def run(text: str) -> str:
    return interpolate(text, lookup)


# Each operator with FOO (set), BAR (set, empty) and UNSET.
OPERATORS = [
    ("$FOO", "first"),
    ("${FOO}", "first"),
    ("$BAR", ""),
    ("${BAR}", ""),
    ("$UNSET", ""),
    ("${UNSET}", ""),
    # :- unset or empty -> default
    ("${FOO:-def}", "first"),
    ("${BAR:-def}", "def"),
    ("${UNSET:-def}", "def"),
    # - unset only -> default
    ("${FOO-def}", "first"),
    ("${BAR-def}", ""),
    ("${UNSET-def}", "def"),
    # :+ set and non-empty -> alternative
    ("${FOO:+alt}", "alt"),
    ("${BAR:+alt}", ""),
    ("${UNSET:+alt}", ""),
    # + set (even empty) -> alternative
    ("${FOO+alt}", "alt"),
    ("${BAR+alt}", "alt"),
    ("${UNSET+alt}", ""),
    # :? and ? with a value
    ("${FOO:?err}", "first"),
    ("${FOO?err}", "first"),
    ("${BAR?err}", ""),
    # empty words
    ("${UNSET:-}", ""),
    ("${UNSET-}", ""),
    ("${FOO:+}", ""),
    ("${FOO+}", ""),
]


@pytest.mark.parametrize(("text", "expected"), OPERATORS)
def test_operators(text: str, expected: str) -> None:
    assert run(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # surrounding text, several expressions, adjacent text
        ("This ${FOO} var", "This first var"),
        ("This $FOO var", "This first var"),
        ("pre${FOO}post", "prefirstpost"),
        ("$FOO-bar", "first-bar"),  # docker/compose#8601: "-" ends a bare name
        ("$FOO.$FOO", "first.first"),
        ("$FOO_bar", ""),  # the name runs on: FOO_bar is unset
        ("${UNSET:-x}${FOO}", "xfirst"),
        ("${UNSET:-a} and ${FOO:-b} and $FOO", "a and first and first"),
        ("ok ${SUBDOMAIN:-redis}.${FOO:?}", "ok redis.first"),
        # the first operator after the name decides
        ("${UNSET-myerror?msg}", "myerror?msg"),
        ("ok ${BAR:-/non:-alphanumeric}", "ok /non:-alphanumeric"),
        ("${UNSET:-a:+b-c?d}", "a:+b-c?d"),
        # operator characters outside the expression change nothing
        ("-ok ${BAR:-defaultValue}", "-ok defaultValue"),
        (":-ok ${BAR-defaultValue}", ":-ok "),
        (":?ok ${BAR:-defaultValue}", ":?ok defaultValue"),
        ("?ok ${BAR:-defaultValue}", "?ok defaultValue"),
        # braces inside a default are balanced
        ('ok ${missing:-{"json":1}}', 'ok {"json":1}'),
        ('ok ${missing-{"json":1}}', 'ok {"json":1}'),
        ('ok ${JSON:-{"json":1}}', 'ok {"json":2}'),
        ("${UNSET:-{a}} {b}", "{a} {b}"),
        # names are matched case-insensitively and looked up as written
        ("$lower ${lower}", "low low"),
        ("$Lower", ""),
    ],
)
def test_strings(text: str, expected: str) -> None:
    assert run(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${UNSET:-${BAR:-x}}", "x"),
        ("${UNSET:-${FOO}}", "first"),
        ("${UNSET-$FOO}", "first"),
        ("ok ${UNSET-${FOO} ${FOO}}", "ok first first"),
        ("ok ${BAR:-${FOO} ${FOO}}", "ok first first"),
        ("ok ${BAR+$FOO ${FOO:+second}}", "ok first second"),
        ("${FOO:+[$FOO]}", "[first]"),
        ("${UNSET:-${UNSET2:-${FOO}}}", "first"),
        ("${UNSET:-${UNSET2:-${UNSET3:-deep}}}", "deep"),
        ("+ok ${UNSET:-${BAR-defaultValue}}", "+ok "),
        ("${FOO:-${UNSET:?never evaluated}}", "first"),
        ("${UNSET:-$$}", "$"),
        ("${UNSET:-$${X}}", "${X}"),
    ],
)
def test_nesting(text: str, expected: str) -> None:
    assert run(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$$", "$"),
        ("$${foo}", "${foo}"),
        ("$$FOO", "$FOO"),
        ("$$$FOO", "$first"),
        ("$$$$", "$$"),
        ("$$VAR_NOT_INTERPOLATED_BY_COMPOSE", "$VAR_NOT_INTERPOLATED_BY_COMPOSE"),
        # a "$" that starts no expression is kept
        ("a $ string", "a $ string"),
        ("^REGEX$", "^REGEX$"),
        ("$}", "$}"),
        ("$", "$"),
        ("$1", "$1"),
        ("costs 5$ or $-1", "costs 5$ or $-1"),
        ("$:{FOO}", "$:{FOO}"),
        ("no dollar", "no dollar"),
        ("", ""),
    ],
)
def test_dollar_signs(text: str, expected: str) -> None:
    assert run(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "${",
        "${}",
        "${ }",
        "${ foo}",
        "${foo }",
        "${foo!}",
        "${FOO",
        "${1A}",
        "${FOO:x}",
        "${FOO:}",
        "${FOO/foo/bar}",  # not supported by Compose
        "ok $FOO ${",
        "${UNSET:-a\nb}",  # an expression does not span lines
    ],
)
def test_invalid_expressions(text: str) -> None:
    with pytest.raises(InterpolationError, match="invalid interpolation format") as caught:
        run(text)
    assert caught.value.variable is None
    assert caught.value.template == text


def test_invalid_expression_message_names_the_location() -> None:
    with pytest.raises(InterpolationError) as caught:
        interpolate("${FOO", lookup, where="services.web.image")
    assert str(caught.value) == (
        'invalid interpolation format for services.web.image: "${FOO".'
        " You may need to escape any $ with another $."
    )
    assert caught.value.where == "services.web.image"
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, OrchestrError)


def test_invalid_expression_message_without_location() -> None:
    with pytest.raises(InterpolationError) as caught:
        run('say "${}"')
    assert str(caught.value) == (
        'invalid interpolation format: "say \\"${}\\"".'
        " You may need to escape any $ with another $."
    )


@pytest.mark.parametrize(
    ("text", "template"),
    [
        # compose-go reports the inner text in which the bad expression sits
        ("${UNSET:-${B}", "${B"),
        ("${UNSET:-x ${}}", "x ${}"),
        ("${FOO:-x} ${B ${C}", " ${B ${C}"),
        # an unbalanced "{" in a default swallows what follows (compose-go's brace count)
        ("${A:-{}} ${B}", "{}} ${B"),
    ],
)
def test_invalid_inner_expressions(text: str, template: str) -> None:
    with pytest.raises(InterpolationError) as caught:
        run(text)
    assert caught.value.template == template


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "not ok ${UNSET:?Mandatory Variable Unset}",
            "required variable UNSET is missing a value: Mandatory Variable Unset",
        ),
        (
            "not ok ${BAR:?Mandatory Variable Empty}",
            "required variable BAR is missing a value: Mandatory Variable Empty",
        ),
        ("not ok ${UNSET:?}", "required variable UNSET is missing a value"),
        (
            "not ok ${UNSET?Mandatory Variable Unset}",
            "required variable UNSET is missing a value: Mandatory Variable Unset",
        ),
        ("not ok ${UNSET?}", "required variable UNSET is missing a value"),
        ("${UNSET?bar-baz}", "required variable UNSET is missing a value: bar-baz"),
        (
            "${UNSET:?Mandatory Variable ${FOO}}",
            "required variable UNSET is missing a value: Mandatory Variable first",
        ),
        ("${UNSET?need $FOO}", "required variable UNSET is missing a value: need first"),
        ("${UNSET:-${BAR:?inner}}", "required variable BAR is missing a value: inner"),
    ],
)
def test_required_variables(text: str, message: str) -> None:
    with pytest.raises(InterpolationError) as caught:
        run(text)
    assert str(caught.value) == message
    assert caught.value.template is None


def test_required_variable_message_names_the_location() -> None:
    with pytest.raises(InterpolationError) as caught:
        interpolate("${TAG:?set TAG first}", lookup, where="services.web.image")
    assert str(caught.value) == (
        "error while interpolating services.web.image: "
        "required variable TAG is missing a value: set TAG first"
    )
    assert caught.value.variable == "TAG"
    assert caught.value.where == "services.web.image"


def test_lookup_is_case_sensitive_and_exact() -> None:
    seen: list[str] = []

    def spy(name: str) -> str | None:
        seen.append(name)
        return None

    interpolate("$a ${B_1} ${c:-x} $\u212a", spy)
    assert seen == ["a", "B_1", "c", "\u212a"]


# Warnings


def warnings_of(text: str) -> list[str]:
    got: list[str] = []
    interpolate(text, lookup, warn=got.append)
    return got


def test_warning_wording() -> None:
    assert warnings_of("${UNSET}") == [
        'The "UNSET" variable is not set. Defaulting to a blank string.'
    ]


@pytest.mark.parametrize(
    ("text", "unset"),
    [
        ("$UNSET", ["UNSET"]),
        ("$UNSET ${UNSET} $UNSET", ["UNSET"]),
        ("$B $A $B", ["B", "A"]),
        ("$FOO $BAR", []),  # an empty value is a value
        ("${UNSET:-x} ${UNSET-x} ${UNSET:+x} ${UNSET+x}", []),
        ("${A:+${A},}B", []),  # an alternative is interpolated only when used
        ("${UNSET:-${B}}", ["B"]),  # a default is, when used
        ("${FOO:-${B}}", []),
        ("${FOO?${B}}", []),
        ("$$UNSET", []),
    ],
)
def test_warnings_once_per_unset_variable(text: str, unset: list[str]) -> None:
    expected = [
        f'The "{name}" variable is not set. Defaulting to a blank string.' for name in unset
    ]
    assert warnings_of(text) == expected


def test_no_warn_callback_is_fine() -> None:
    assert interpolate("$UNSET", lookup) == ""


# The tree walk


def test_tree_interpolates_values_not_keys() -> None:
    doc = {
        "services": {
            "web": {
                "image": "${IMAGE:-nginx}:$FOO",
                "ports": ["80:80", "${PORT:-8080}:80"],
                "labels": {"$FOO": "$FOO"},
                "environment": ["KEY=$FOO", "$FOO=x"],
                "replicas": 3,
                "read_only": True,
                "cpus": 0.5,
                "user": None,
            }
        },
        "x-common": {"tag": "$FOO", "$FOO": ["${BAR:-empty}"]},
    }
    out = interpolate_tree(doc, lookup)
    assert out == {
        "services": {
            "web": {
                "image": "nginx:first",
                "ports": ["80:80", "8080:80"],
                "labels": {"$FOO": "first"},
                "environment": ["KEY=first", "first=x"],
                "replicas": 3,
                "read_only": True,
                "cpus": 0.5,
                "user": None,
            }
        },
        "x-common": {"tag": "first", "$FOO": ["empty"]},
    }
    # a new tree; the input is left alone
    assert doc["x-common"] == {"tag": "$FOO", "$FOO": ["${BAR:-empty}"]}
    assert out is not doc


@pytest.mark.parametrize("scalar", [1, 2.5, True, False, None, b"$FOO"])
def test_tree_keeps_non_strings(scalar: object) -> None:
    assert interpolate_tree({"a": [scalar]}, lookup) == {"a": [scalar]}
    assert interpolate_tree(scalar, lookup) is scalar


def test_tree_top_level_string_and_list() -> None:
    assert interpolate_tree("$FOO", lookup) == "first"
    assert interpolate_tree(["$FOO", ["$FOO"]], lookup) == ["first", ["first"]]


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ({"services": {"web": {"image": "${IMG:?no image}"}}}, "services.web.image"),
        ({"services": {"web": {"ports": ["80", "${PORT?}"]}}}, "services.web.ports[1]"),
        ({"services": {"web": {"labels": {"com.x.y": "${L:?}"}}}}, "services.web.labels.com.x.y"),
        ({"x-a": [{"b": ["${Q?}"]}]}, "x-a[0].b[0]"),
        (["${Q?}"], "[0]"),
        ({1: "${Q?}"}, "1"),
    ],
)
def test_tree_errors_name_the_path(doc: object, where: str) -> None:
    with pytest.raises(InterpolationError) as caught:
        interpolate_tree(doc, lookup)
    assert caught.value.where == where
    assert str(caught.value).startswith(f"error while interpolating {where}: required variable ")


def test_tree_invalid_expression_names_the_path() -> None:
    with pytest.raises(InterpolationError) as caught:
        interpolate_tree({"services": {"db": {"command": ["run", "${"]}}}, lookup)
    assert str(caught.value) == (
        'invalid interpolation format for services.db.command[1]: "${".'
        " You may need to escape any $ with another $."
    )


def test_tree_warns_once_per_variable() -> None:
    got: list[str] = []
    doc = {"a": "$X", "b": ["$X", "${Y}"], "c": {"d": "$X$Y"}}
    assert interpolate_tree(doc, lookup, warn=got.append) == {
        "a": "",
        "b": ["", ""],
        "c": {"d": ""},
    }
    assert got == [
        'The "X" variable is not set. Defaulting to a blank string.',
        'The "Y" variable is not set. Defaulting to a blank string.',
    ]


# Properties

NAMES = st.from_regex(r"[_A-Za-z][_A-Za-z0-9]{0,8}", fullmatch=True)


def refuse(name: str) -> str | None:
    raise AssertionError(f"looked up {name}")


def no_warning(message: str) -> None:
    raise AssertionError(message)


@given(st.text().filter(lambda s: "$" not in s))
def test_text_without_dollar_is_unchanged(text: str) -> None:
    assert interpolate(text, refuse, warn=no_warning) == text


@given(st.text())
def test_doubled_dollars_give_the_text_back(text: str) -> None:
    assert interpolate(text.replace("$", "$$"), refuse) == text


# An expression ends at a "}" and does not span lines: words hold neither.
WORDS = st.text().map(lambda s: s.replace("}", "").replace("\n", "").replace("$", "$$"))


@given(NAMES, st.text().filter(lambda s: "$" not in s), WORDS)
def test_operators_on_a_set_non_empty_variable(name: str, value: str, word: str) -> None:
    env = {name: value or "v"}
    value = env[name]
    literal = word.replace("$$", "$")
    for text, expected in [
        (f"${name}", value),
        (f"${{{name}}}", value),
        (f"${{{name}:-{word}}}", value),
        (f"${{{name}-{word}}}", value),
        (f"${{{name}:?{word}}}", value),
        (f"${{{name}?{word}}}", value),
        (f"${{{name}:+{word}}}", literal),
        (f"${{{name}+{word}}}", literal),
    ]:
        assert interpolate(text, env.get) == expected, text
