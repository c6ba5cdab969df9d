"""Validating config.json and state.json against the OCI runtime-spec JSON schemas.

A small draft-04 validator for the schemas bundled in `schemas/`, on the
`orchestr runtime create` start-up path, so it imports no `re`, `json` or
`typing`: the schema files are read with `fastjson`, and the regular
expressions they use are checked by hand-written functions (`NATIVE_PATTERNS`,
each agreeing with `re.search`; any other pattern imports `re` when first met).

It supports exactly the keywords these schemas use (`SUPPORTED_KEYWORDS`; a
unit test fails when a schema update brings another one). As in draft-04 (and
jsonschema's Draft4Validator), `$ref` replaces its siblings and "integer"
means an int: neither `true` nor `1.0` is one.

Schema files are read lazily, when a `$ref` into them is first followed, and
kept for the life of the process; a config without `windows` never reads
config-windows.json.

    validate_config(doc)      raises SchemaError on the first error
    validate_state(doc)       the same for a `state` document
    iter_errors(doc, name)    every error (one per failed anyOf/oneOf)

SchemaError (a ValueError) carries `path` ("linux.namespaces[2].type", "" for the
document itself) and `reason`; str() is one line:
`config.json: linux.namespaces[2].type: "foo" is not one of ["cgroup", "ipc", ...]`.
"""

from __future__ import annotations

import os

from agent.runtime import fastjson

TYPE_CHECKING = False  # typing costs ~10 ms of start-up; mypy still sees the block

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, TypeAlias

    Schema: TypeAlias = dict[str, Any]
    # A JSON path as a linked list, built only as deep as the walk goes and turned
    # into a string only for an error: (parent, key), None at the document.
    Path: TypeAlias = "tuple[Path, str | int] | None"
    Error: TypeAlias = "tuple[Path, str, str]"  # path, reason, keyword
    Check: TypeAlias = "Callable[[_Run, object, Any, Schema, str, Path], None]"

__all__ = [
    "CONFIG_SCHEMA",
    "STATE_SCHEMA",
    "SchemaError",
    "iter_errors",
    "validate_config",
    "validate_state",
]

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")
CONFIG_SCHEMA = "config-schema.json"
STATE_SCHEMA = "state-schema.json"


class SchemaError(ValueError):
    """A document does not match its schema: where (`path`) and why (`reason`)."""

    def __init__(self, path: str, reason: str, source: str = "config.json") -> None:
        super().__init__(f"{source}: {path}: {reason}" if path else f"{source}: {reason}")
        self.path = path
        self.reason = reason
        self.source = source

    def __reduce__(self) -> tuple[type[SchemaError], tuple[str, str, str]]:
        return self.__class__, (self.path, self.reason, self.source)


def validate_config(doc: object) -> None:
    """Raise SchemaError for the first way `doc` breaks the runtime-spec config schema."""
    _validate(doc, CONFIG_SCHEMA)


def validate_state(doc: object) -> None:
    """Raise SchemaError for the first way `doc` breaks the runtime-spec state schema."""
    _validate(doc, STATE_SCHEMA)


def iter_errors(doc: object, schema_name: str = CONFIG_SCHEMA) -> Iterator[SchemaError]:
    """Every error of `doc` against `schema_name` (a file in SCHEMA_DIR)."""
    run = _Run(first=False)
    _visit(run, doc, _load(schema_name), schema_name, None)
    source = _source(schema_name)
    for path, reason, _ in run.errors:
        yield SchemaError(_path_str(path), reason, source)


def _validate(doc: object, schema_name: str) -> None:
    run = _Run(first=True)
    _visit(run, doc, _load(schema_name), schema_name, None)
    if run.errors:
        path, reason, _ = run.errors[0]
        raise SchemaError(_path_str(path), reason, _source(schema_name))


def preload() -> None:
    """Read every schema file now (they are cached for the process and its forks);
    once: later calls cost nothing."""
    global _preloaded
    if _preloaded:
        return
    for name in sorted(os.listdir(SCHEMA_DIR)):
        if name.endswith(".json"):
            _load(name)
    _preloaded = True


_preloaded = False


def _source(schema_name: str) -> str:
    """The document a schema is for: config-schema.json -> config.json."""
    return schema_name.replace("-schema", "")


# -- schema files and $ref ----------------------------------------------------------

_files: dict[str, Schema] = {}
_refs: dict[tuple[str, str], tuple[str, Schema]] = {}


def _load(name: str) -> Schema:
    doc = _files.get(name)
    if doc is None:
        with open(os.path.join(SCHEMA_DIR, name), encoding="utf-8") as f:
            loaded = fastjson.loads(f.read())
        if not isinstance(loaded, dict):
            raise LookupError(f"{name}: a schema file must hold an object")
        doc = _files[name] = loaded
    return doc


def _resolve(base: str, ref: str) -> tuple[str, Schema]:
    """The file and schema a `$ref` in file `base` points at ("defs.json#/definitions/X")."""
    hit = _refs.get((base, ref))
    if hit is not None:
        return hit
    name, _, pointer = ref.partition("#")
    name = name or base
    node: object = _load(name)
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise LookupError(f"{base}: $ref {ref!r} points at nothing")
    if not isinstance(node, dict):
        raise LookupError(f"{base}: $ref {ref!r} is not a schema")
    hit = _refs[(base, ref)] = (name, node)
    return hit


# -- the walk -----------------------------------------------------------------------


class _Run:
    """The errors of one validation; `first` stops the walk at the first one."""

    __slots__ = ("errors", "first")

    def __init__(self, first: bool) -> None:
        self.first = first
        self.errors: list[Error] = []


def _visit(run: _Run, inst: object, schema: Schema, base: str, path: Path) -> None:
    ref = schema.get("$ref")
    while ref is not None:  # draft-04: $ref replaces the schema it is in
        base, schema = _resolve(base, ref)
        ref = schema.get("$ref")
    for key, arg in schema.items():
        check = _CHECKS.get(key)
        if check is not None:
            check(run, inst, arg, schema, base, path)
            if run.first and run.errors:
                return


# JSON type names by Python type; subclasses go through _type_of.
_TYPES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _type_of(inst: object) -> str | None:
    t = _TYPES.get(type(inst))
    if t is None:  # a subclass (bool has none, so an int subclass is an integer)
        for cls, name in _TYPES.items():
            if isinstance(inst, cls):
                return name
    return t


def _is_number(inst: object) -> bool:
    return isinstance(inst, int | float) and not isinstance(inst, bool)


def _type(run: _Run, inst: object, arg: Any, schema: Schema, base: str, path: Path) -> None:
    t = _type_of(inst)
    if isinstance(arg, str):
        if t == arg or (arg == "number" and t == "integer"):
            return
        wanted = arg
    else:
        if t in arg or ("number" in arg and t == "integer"):
            return
        wanted = " or ".join(arg)
    run.errors.append((path, f"{_show(inst)} is not of type {wanted}", "type"))


def _properties(run: _Run, inst: object, arg: Any, schema: Schema, base: str, path: Path) -> None:
    if not isinstance(inst, dict):
        return
    for key, value in inst.items():  # the document's order: the first error is the first one
        sub = arg.get(key)
        if sub is not None:
            _visit(run, value, sub, base, (path, key))
            if run.first and run.errors:
                return


def _pattern_properties(
    run: _Run, inst: object, arg: Any, schema: Schema, base: str, path: Path
) -> None:
    if not isinstance(inst, dict):
        return
    for pattern, sub in arg.items():
        matches = _matcher(pattern)
        for key, value in inst.items():
            if isinstance(key, str) and matches(key):
                _visit(run, value, sub, base, (path, key))
                if run.first and run.errors:
                    return


def _additional_properties(
    run: _Run, inst: object, arg: Any, schema: Schema, base: str, path: Path
) -> None:
    if not isinstance(inst, dict):
        return
    known = schema.get("properties", {})
    patterns = [_matcher(p) for p in schema.get("patternProperties", ())]
    for key, value in inst.items():
        if key in known or (isinstance(key, str) and any(m(key) for m in patterns)):
            continue
        if arg is False:
            reason = f"additional property {_show(key)} is not allowed"
            run.errors.append((path, reason, "additionalProperties"))
        elif isinstance(arg, dict):
            _visit(run, value, arg, base, (path, key))
        if run.first and run.errors:
            return


def _required(run: _Run, inst: object, arg: Any, schema: Schema, base: str, path: Path) -> None:
    if not isinstance(inst, dict):
        return
    for name in arg:
        if name not in inst:
            run.errors.append((path, f"{_show(name)} is a required property", "required"))
            if run.first:
                return


def _items(run: _Run, inst: object, arg: Any, schema: Schema, base: str, path: Path) -> None:
    if not isinstance(inst, list):
        return
    if isinstance(arg, dict):
        for i, item in enumerate(inst):
            _visit(run, item, arg, base, (path, i))
            if run.first and run.errors:
                return
    else:  # a list: one schema per position; further items are free (no additionalItems)
        for i, (item, sub) in enumerate(zip(inst, arg, strict=False)):
            _visit(run, item, sub, base, (path, i))
            if run.first and run.errors:
                return


def _min_items(run: _Run, inst: object, arg: Any, schema: Schema, base: str, path: Path) -> None:
    if isinstance(inst, list) and len(inst) < arg:
        noun = "item" if arg == 1 else "items"
        reason = f"{_show(inst)} is too short: at least {arg} {noun} needed"
        run.errors.append((path, reason, "minItems"))


def _enum(run: _Run, inst: object, arg: Any, schema: Schema, base: str, path: Path) -> None:
    if isinstance(inst, str):
        if inst in arg:  # a str equals only a str
            return
    elif any(_equal(inst, each) for each in arg):
        return
    shown = ", ".join(_show(each) for each in arg[:12]) + (", ..." if len(arg) > 12 else "")
    run.errors.append((path, f"{_show(inst)} is not one of [{shown}]", "enum"))


def _equal(a: object, b: object) -> bool:
    """JSON equality: true is not 1, 1 is 1.0 (jsonschema's `equal`)."""
    if a is b:
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return False  # `a is b` already caught true == true
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


def _minimum(run: _Run, inst: object, arg: Any, schema: Schema, base: str, path: Path) -> None:
    if _is_number(inst) and inst < arg:
        run.errors.append((path, f"{_show(inst)} is less than the minimum of {arg}", "minimum"))


def _maximum(run: _Run, inst: object, arg: Any, schema: Schema, base: str, path: Path) -> None:
    if _is_number(inst) and inst > arg:
        reason = f"{_show(inst)} is greater than the maximum of {arg}"
        run.errors.append((path, reason, "maximum"))


def _pattern(run: _Run, inst: object, arg: Any, schema: Schema, base: str, path: Path) -> None:
    if isinstance(inst, str) and not _matcher(arg)(inst):
        run.errors.append((path, f"{_show(inst)} does not match {_show(arg)}", "pattern"))


def _all_of(run: _Run, inst: object, arg: Any, schema: Schema, base: str, path: Path) -> None:
    for sub in arg:
        _visit(run, inst, sub, base, path)
        if run.first and run.errors:
            return


def _any_of(run: _Run, inst: object, arg: Any, schema: Schema, base: str, path: Path) -> None:
    failures: list[Error] = []
    for sub in arg:
        branch = _Run(first=True)
        _visit(branch, inst, sub, base, path)
        if not branch.errors:
            return
        failures.append(branch.errors[0])
    run.errors.append(_most_helpful(failures))


def _one_of(run: _Run, inst: object, arg: Any, schema: Schema, base: str, path: Path) -> None:
    failures: list[Error] = []
    for sub in arg:
        branch = _Run(first=True)
        _visit(branch, inst, sub, base, path)
        if branch.errors:
            failures.append(branch.errors[0])
    passed = len(arg) - len(failures)
    if passed == 0:
        run.errors.append(_most_helpful(failures))
    elif passed > 1:
        reason = f"{_show(inst)} is valid under more than one of the given schemas"
        run.errors.append((path, reason, "oneOf"))


def _most_helpful(failures: list[Error]) -> Error:
    """Of the branches that failed, the error of the one that got furthest: the deepest,
    and at equal depth one whose type matched (failing on `type` says least)."""
    return max(failures, key=lambda e: (_depth(e[0]), e[2] != "type"))


_CHECKS: dict[str, Check] = {
    "type": _type,
    "properties": _properties,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "required": _required,
    "items": _items,
    "minItems": _min_items,
    "enum": _enum,
    "minimum": _minimum,
    "maximum": _maximum,
    "pattern": _pattern,
    "allOf": _all_of,
    "anyOf": _any_of,
    "oneOf": _one_of,
}
# What the validator understands; a schema with any other keyword fails a unit test.
SUPPORTED_KEYWORDS = frozenset(_CHECKS) | {"$ref"}
IGNORED_KEYWORDS = frozenset({"description", "$schema", "id", "title", "definitions"})


# -- regular expressions without `re` -------------------------------------------------
# Each agrees with re.search(pattern, s). Note Python's `$` also matches before a
# final "\n", hence _chomp.

_DIGITS = "0123456789"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _chomp(s: str) -> str:
    return s[:-1] if s.endswith("\n") else s


def _cpu_list(s: str) -> bool:  # ^[0-9, -]*$
    return not _chomp(s).strip(_DIGITS + ", -")


def _page_size(s: str) -> bool:  # ^[1-9][0-9]*[KMG]B$
    s = _chomp(s)
    return (
        len(s) >= 3
        and s[0] in "123456789"
        and s[-2] in "KMG"
        and s[-1] == "B"
        and not s[1:-2].strip(_DIGITS)
    )


def _mb_schema(s: str) -> bool:  # ^MB:[^\n]*$
    s = _chomp(s)
    return s.startswith("MB:") and "\n" not in s


def _rlimit(s: str) -> bool:  # ^RLIMIT_[A-Z]+$
    s = _chomp(s)
    return len(s) > 7 and s.startswith("RLIMIT_") and not s[7:].strip(_UPPER)


def _file_type(s: str) -> bool:  # ^[cbup]$
    return _chomp(s) in ("c", "b", "u", "p")


def _non_empty(s: str) -> bool:  # .{1,}  (any character but "\n")
    return bool(s.strip("\n"))


def _capability(s: str) -> bool:  # ^CAP_[A-Z_]+$
    s = _chomp(s)
    return len(s) > 4 and s.startswith("CAP_") and not s[4:].strip(_UPPER + "_")


NATIVE_PATTERNS: dict[str, Callable[[str], bool]] = {
    "^[0-9, -]*$": _cpu_list,
    "^[1-9][0-9]*[KMG]B$": _page_size,
    "^MB:[^\\n]*$": _mb_schema,
    "^RLIMIT_[A-Z]+$": _rlimit,
    "^[cbup]$": _file_type,
    ".{1,}": _non_empty,
    "^CAP_[A-Z_]+$": _capability,
}
_compiled: dict[str, Callable[[str], object]] = {}


def _matcher(pattern: str) -> Callable[[str], object]:
    """A function telling whether re.search(pattern, s) would find something."""
    native = NATIVE_PATTERNS.get(pattern)
    if native is not None:
        return native
    search = _compiled.get(pattern)
    if search is None:
        import re  # only for a pattern the schemas did not have when this was written

        search = _compiled[pattern] = re.compile(pattern).search
    return search


# -- messages -------------------------------------------------------------------------


def _depth(path: Path) -> int:
    n = 0
    while path is not None:
        path, n = path[0], n + 1
    return n


def _path_str(path: Path) -> str:
    """(((None, "linux"), "namespaces"), 2) -> linux.namespaces[2]; odd keys quoted."""
    parts: list[str] = []
    while path is not None:
        path, key = path
        if isinstance(key, int):
            parts.append(f"[{key}]")
        elif key.isidentifier():
            parts.append("." + key)
        else:
            parts.append(f"[{fastjson.dumps(key)}]")
    return "".join(reversed(parts)).removeprefix(".")


def _show(value: object, limit: int = 60) -> str:
    """A value as JSON, cut short when long."""
    try:
        text = fastjson.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
