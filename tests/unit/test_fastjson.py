"""agent.runtime.fastjson: the same text and values as the standard library's json."""

from __future__ import annotations

import json
import math
import pickle
import random
from typing import Any

import pytest

from agent.runtime import fastjson
from agent.runtime.fastjson import JSONDecodeError, dumps, loads

VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, 2**63 - 1, -(2**63), 2**64, 10**40, -(10**40),
    0.0, -0.0, 0.1, 1.5, -2.25, 1e16, 1e-7, 1e308, 5e-324, 2.0**53 + 1, 123456789.123456789,
    "", "a", "é", "日本語", "\U0001f600", "\ud800", "\x00\x01\x1f", "\"'\\/", "\b\f\n\r\t",
    "\u2028\u2029", "x" * 1000,
    [], {}, [[]], [{}], {"": ""}, {"a": []}, {"a": {}},
    [1, "two", 3.0, None, True, [False, {"x": [None]}]],
    {"ociVersion": "1.0.2", "process": {"args": ["sh"], "env": [], "user": {"uid": 0}}},
    {"b": 1, "a": 2, "c": {"z": [1, 2, {"y": None}], "é": "\u00fc"}},
]  # fmt: skip


def _random_value(rnd: random.Random, depth: int = 0) -> Any:
    kind = rnd.randrange(9 if depth < 4 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rnd.random() < 0.5
    if kind == 2:
        return rnd.randint(-(2**70), 2**70) if rnd.random() < 0.2 else rnd.randint(-1000, 1000)
    if kind == 3:
        return rnd.choice([rnd.uniform(-1e6, 1e6), rnd.random(), rnd.uniform(-1, 1) * 1e300])
    if kind in (4, 5, 6):
        alphabet = 'ab "\\/\n\t\x00\x7fé日\U0001f600\ud83d'
        return "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(8)))
    if kind == 7:
        return [_random_value(rnd, depth + 1) for _ in range(rnd.randrange(5))]
    return {
        str(_random_value(rnd, 4)): _random_value(rnd, depth + 1) for _ in range(rnd.randrange(5))
    }


RANDOM = [_random_value(random.Random(i)) for i in range(400)]


@pytest.mark.parametrize("value", VALUES + RANDOM)
def test_same_text_and_values_as_the_stdlib(value: Any) -> None:
    assert dumps(value) == json.dumps(value)
    for indent in (2, 4, 0, "\t", "  "):
        assert dumps(value, indent=indent) == json.dumps(value, indent=indent)
    for text in (json.dumps(value), json.dumps(value, indent=2), " " + json.dumps(value) + " \n"):
        assert loads(text) == json.loads(text) == value
        assert _same_types(loads(text), value)


def _same_types(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same_types(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return math.copysign(1, a) == math.copysign(1, b)
    return True


def test_whitespace_and_ascii_escapes_like_the_stdlib() -> None:
    for text in ['  {"a" :\t[ 1 ,2 ]\r\n}  ', "\n\n[]\n", '"\\u00e9\\ud83d\\ude00"', "1E3", "-0"]:
        assert loads(text) == json.loads(text)
    assert dumps("é\U0001f600") == '"\\u00e9\\ud83d\\ude00"'


def test_bytes_are_read_as_utf8() -> None:
    assert loads('{"a": "é"}'.encode()) == {"a": "é"}
    assert loads(bytearray(b"[1]")) == [1]
    assert loads("\ufeff[1]".encode()) == [1]  # a BOM is fine in bytes (the stdlib's too)
    with pytest.raises(TypeError):
        loads(1)  # type: ignore[arg-type]


INVALID = [
    "", " ", "\n", "{", "}", "[", "]", "[1,]", "[1 2]", '{"a" 1}', '{"a":1,}', '{1:2}', "{'a':1}",
    '"abc', '"\\x"', '"\\u12"', '"a\x01"', '"tab\there"', "tru", "nul", "01", "1.", "-", ".5",
    "+1", "[] []", '{"a":1} x', "1 2", "\ufeff[]", "[1,\n2,\n", '{"a": [1, {"b": }]}', "//",
    "[1]\x00", "\x00",
]  # fmt: skip


@pytest.mark.parametrize("text", INVALID)
def test_invalid_json_raises_value_error_with_the_position(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    with pytest.raises(ValueError) as ours:
        loads(text)
    assert isinstance(ours.value, JSONDecodeError)
    assert str(ours.value) == str(theirs.value)
    e, t = ours.value, theirs.value
    assert (e.msg, e.pos, e.lineno, e.colno) == (t.msg, t.pos, t.lineno, t.colno)


@pytest.mark.parametrize(
    ("text", "pos"),
    [("NaN", 0), ("[1, Infinity]", 4), ('{"a": -Infinity}', 6), ('["NaN", NaN]', 8)],
)
def test_nan_and_infinity_are_not_json(text: str, pos: int) -> None:
    with pytest.raises(JSONDecodeError, match="is not valid JSON") as info:
        loads(text)
    assert info.value.pos == pos
    for value in (math.nan, math.inf, -math.inf, [1.0, math.nan], {"a": math.inf}):
        with pytest.raises(ValueError):
            dumps(value)
        with pytest.raises(ValueError):
            dumps(value, indent=2)


def test_deep_nesting_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        loads("[" * 100_000 + "]" * 100_000)


def test_decode_error_pickles() -> None:
    with pytest.raises(JSONDecodeError) as info:
        loads("[1,")
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.msg, again.pos, str(again)) == (info.value.msg, info.value.pos, str(info.value))


def test_keys_are_converted_like_the_stdlib() -> None:
    value = {5: "a", 2.5: "b", True: "c", None: "d", False: "e", -3: [1]}
    assert dumps(value) == json.dumps(value)
    assert dumps(value, indent=2) == json.dumps(value, indent=2)
    for bad in ({(1, 2): 1}, {b"x": 1}):
        with pytest.raises(TypeError):
            dumps(bad)
        with pytest.raises(TypeError):
            dumps(bad, indent=2)


def test_tuples_and_subclasses_like_the_stdlib() -> None:
    class Count(int):
        def __repr__(self) -> str:
            return "Count()"

    class Ratio(float):
        def __repr__(self) -> str:
            return "Ratio()"

    class Name(str):
        pass

    class Tree(dict):  # type: ignore[type-arg]
        pass

    value = {"t": (1, (2, 3)), "c": Count(7), "r": Ratio(0.5), Name("n"): Name("v"),
             "d": Tree(a=[Count(1)])}  # fmt: skip
    assert dumps(value) == json.dumps(value)
    assert dumps(value, indent=2) == json.dumps(value, indent=2)


def test_what_json_cannot_hold_is_a_type_error() -> None:
    for value in (object(), {"a": {1, 2}}, [b"x"], {"a": 1j}):
        with pytest.raises(TypeError, match="is not JSON serializable"):
            dumps(value)
        with pytest.raises(TypeError, match="is not JSON serializable"):
            dumps(value, indent=2)


def test_circular_references_are_a_value_error() -> None:
    a: list[Any] = []
    a.append(a)
    d: dict[str, Any] = {}
    d["d"] = [d]
    for value in (a, d):
        with pytest.raises(ValueError, match="Circular reference"):
            dumps(value)
        with pytest.raises(ValueError, match="Circular reference"):
            dumps(value, indent=2)


def test_a_failed_dump_leaves_nothing_behind() -> None:
    shared = {"x": [1]}
    value: dict[str, Any] = {"shared": shared, "bad": object()}
    with pytest.raises(TypeError):
        dumps(value)
    del value["bad"]
    assert dumps(value) == json.dumps(value)
    value["twice"] = shared  # the same object twice is not a cycle
    assert dumps(value) == json.dumps(value)
    assert dumps(value, indent=2) == json.dumps(value, indent=2)


def test_runc_state_and_spec_shapes_round_trip() -> None:
    from agent.runtime.specopts import default_spec

    spec = default_spec()
    assert dumps(spec, indent=2) == json.dumps(spec, indent=2)
    assert loads(dumps(spec, indent=2)) == spec
    state = {"ociVersion": "1.0.2", "id": "c1", "pid": 42, "status": "running", "bundle": "/b"}
    assert loads(dumps(state)) == state


def test_public_api() -> None:
    assert sorted(fastjson.__all__) == ["JSONDecodeError", "dumps", "loads"]
    assert issubclass(JSONDecodeError, ValueError)


def test_errors_are_the_same_in_a_process_without_json() -> None:
    """The C scanner reports errors through json.decoder; fastjson works without it loaded."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from agent.runtime import fastjson\n"
        "texts = fastjson.loads(sys.stdin.read())\n"
        "assert 'json' not in sys.modules\n"
        "for text in texts:\n"
        "    try:\n        fastjson.loads(text)\n"
        "    except ValueError as e:\n        print(type(e).__name__, e)\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(root)],
        input=json.dumps(INVALID),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    expected = []
    for text in INVALID:
        with pytest.raises(json.JSONDecodeError) as info:
            json.loads(text)
        expected.append(f"JSONDecodeError {info.value}")
    assert out == expected
