"""JSON in and out with the C accelerator `_json` alone (no `json`, no `re`).

`loads(text)` and `dumps(obj, indent=None)` behave like the standard library's
`json.loads` and `json.dumps` with their defaults, except that NaN and
±Infinity are refused both ways (they are not JSON; Go's encoding/json, and so
runc, refuses them too). Importing `json` costs ~3 ms because it pulls in `re`;
this module is on the `orchestr runtime` start-up path, so it does without.

Errors: `JSONDecodeError` (a ValueError) names the position like the standard
library's does: "Expecting value: line 1 column 5 (char 4)". `dumps` raises
TypeError for values JSON has no form for and ValueError for NaN, ±Infinity and
circular references.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False  # typing costs ~10 ms of start-up; mypy still sees the block

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["JSONDecodeError", "dumps", "loads"]

_WHITESPACE = " \t\n\r"  # what JSON allows between tokens


class JSONDecodeError(ValueError):
    """Invalid JSON; `msg`, `doc`, `pos`, `lineno` and `colno` as in the stdlib's."""

    def __init__(self, msg: str, doc: str, pos: int) -> None:
        lineno = doc.count("\n", 0, pos) + 1
        colno = pos - doc.rfind("\n", 0, pos)
        super().__init__(f"{msg}: line {lineno} column {colno} (char {pos})")
        self.msg = msg
        self.doc = doc
        self.pos = pos
        self.lineno = lineno
        self.colno = colno

    def __reduce__(self) -> tuple[type[JSONDecodeError], tuple[str, str, int]]:
        return self.__class__, (self.msg, self.doc, self.pos)


def _refuse_constant(name: str) -> float:
    # The scanner does not tell where it is; the caller's error handler adds that.
    raise _ConstantError(name)


class _ConstantError(ValueError):
    pass


class _Context:
    """What `_json.make_scanner` reads off a JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_refuse_constant)
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]


def loads(text: str | bytes | bytearray) -> object:
    """Parse one JSON document; raises JSONDecodeError (a ValueError) naming the position."""
    if not isinstance(text, str):
        if not isinstance(text, bytes | bytearray):
            raise TypeError(
                f"the JSON object must be str, bytes or bytearray, not {type(text).__name__}"
            )
        text = text.decode("utf-8-sig")
    elif text.startswith("\ufeff"):
        raise JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        try:
            value, end = _scan(text, start)
        except SystemError:
            # The C scanner builds its error from json.decoder, looked up in
            # sys.modules only: without it, it fails with no exception set.
            # Import it now, on the error path alone, and scan again.
            import json.decoder  # noqa: F401

            value, end = _scan(text, start)
    except StopIteration as e:
        raise JSONDecodeError("Expecting value", text, e.value) from None
    except RecursionError:
        raise JSONDecodeError("Nesting too deep", text, start) from None
    except _ConstantError as e:
        pos = _find_constant(text, str(e))
        raise JSONDecodeError(f"{e} is not valid JSON", text, pos) from None
    except ValueError as e:  # the scanner's own json.decoder.JSONDecodeError
        where = getattr(e, "pos", None)
        if not isinstance(where, int):
            raise
        raise JSONDecodeError(getattr(e, "msg", str(e)), text, where) from None
    end = len(text) - len(text[end:].lstrip(_WHITESPACE))
    if end != len(text):
        raise JSONDecodeError("Extra data", text, end)
    return value


def _find_constant(text: str, name: str) -> int:
    """Where a NaN/Infinity token outside any string starts (for the error message)."""
    i, n, in_string = 0, len(text), False
    while i < n:
        c = text[i]
        if in_string:
            if c == "\\":
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif text.startswith(name, i):
            return i
        i += 1
    return 0


def _unserializable(o: object) -> object:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


_escape: Callable[[str], str] = _json.encode_basestring_ascii
# For scalars only (no markers needed). A container encoder is made per call: the C
# encoder leaves its circular-reference markers behind when it fails half-way.
_scalar = _json.make_encoder(None, _unserializable, _escape, None, ":", ",", False, False, False)


def dumps(obj: object, indent: int | str | None = None) -> str:
    """JSON text of `obj`: one line like `json.dumps(obj)`, or like `json.dumps(obj, indent=...)`.

    Without indent the separators are the standard library's ", " and ": ".
    """
    if indent is None:
        if isinstance(obj, str):
            return _escape(obj)
        encode = _json.make_encoder(
            {}, _unserializable, _escape, None, ": ", ", ", False, False, False
        )
        return "".join(encode(obj, 0))
    step = " " * indent if isinstance(indent, int) else indent
    out: list[str] = []
    _pretty(obj, out, "\n", step, set())
    return "".join(out)


def _pretty(obj: object, out: list[str], newline: str, step: str, seen: set[int]) -> None:
    """Append obj, laid out with `step` per level, `newline` being "\\n" + the current indent."""
    if isinstance(obj, str):
        out.append(_escape(obj))
        return
    if isinstance(obj, dict):
        if not obj:
            out.append("{}")
            return
        _enter(obj, seen)
        inner = newline + step
        sep = "{" + inner
        for key, value in obj.items():
            out.append(sep)
            sep = "," + inner
            out.append(_escape(_key(key)))
            out.append(": ")
            _pretty(value, out, inner, step, seen)
        out.append(newline + "}")
        seen.discard(id(obj))
        return
    if isinstance(obj, list | tuple):
        if not obj:
            out.append("[]")
            return
        _enter(obj, seen)
        inner = newline + step
        sep = "[" + inner
        for value in obj:
            out.append(sep)
            sep = "," + inner
            _pretty(value, out, inner, step, seen)
        out.append(newline + "]")
        seen.discard(id(obj))
        return
    if obj is None or isinstance(obj, bool | int | float):
        out.append("".join(_scalar(obj, 0)))
        return
    _enter(obj, seen)
    _pretty(_unserializable(obj), out, newline, step, seen)  # raises TypeError


def _enter(obj: object, seen: set[int]) -> None:
    if id(obj) in seen:
        raise ValueError("Circular reference detected")
    seen.add(id(obj))


def _key(key: object) -> str:
    """A dict key as JSON has it: a string (the standard library's conversions)."""
    if isinstance(key, str):
        return key
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int | float):
        return "".join(_scalar(key, 0))
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
