"""The Compose Specification's JSON schema, with errors a person can act on.

- `cast_types(data)`: after interpolation every value that came from a variable is a
  string; compose-go converts the strings at known paths back into numbers and
  booleans (loader/interpolate.go's type casts). Same paths, same rules here: booleans
  accept `y`, `yes`, `true`, `on` and `n`, `no`, `false`, `off` in any case; a string that
  does not convert is an error naming the path.
- `check(data, file=…, locate=…)`: validates with jsonschema (draft 7) against
  compose-spec.json and raises the most useful error as a StackError; `errors(…)`
  returns all of them, sorted by line. Messages say what is wrong in Compose's terms:
  `services.web: unknown key "imag" (hint: did you mean "image"?)`, `expected a string,
  got a list`, `"service_up" is not one of service_started, …`, `"condition" is
  required`. For a value that may take several forms (oneOf/anyOf), the error reported is
  the one of the form that matches the value's type.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jsonschema costs ~0.1 s to import: only when a document is checked
    from jsonschema import Draft7Validator
    from jsonschema.exceptions import ValidationError

from orchestr.stack.errors import StackError

__all__ = ["cast_types", "check", "errors"]

Path = tuple[str | int, ...]
Locate = Callable[[Path], "tuple[int, int] | None"]

_TRUE = {"y", "yes", "true", "on"}
_FALSE = {"n", "no", "false", "off"}
_ANY = "*"  # any mapping key
_ITEM = "[]"  # any sequence item


def _to_bool(text: str) -> bool:
    lower = text.lower()
    if lower in _TRUE:
        return True
    if lower in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (true or false)")


def _to_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None


def _to_float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


_S = ("services", _ANY)
_CASTS: dict[tuple[str, ...], Callable[[str], object]] = {
    (*_S, "cpu_count"): _to_int,
    (*_S, "cpu_percent"): _to_float,
    (*_S, "cpu_period"): _to_int,
    (*_S, "cpu_quota"): _to_int,
    (*_S, "cpu_rt_period"): _to_int,
    (*_S, "cpu_rt_runtime"): _to_int,
    (*_S, "cpus"): _to_float,
    (*_S, "cpu_shares"): _to_int,
    (*_S, "init"): _to_bool,
    (*_S, "deploy", "replicas"): _to_int,
    (*_S, "deploy", "update_config", "parallelism"): _to_int,
    (*_S, "deploy", "update_config", "max_failure_ratio"): _to_float,
    (*_S, "deploy", "rollback_config", "parallelism"): _to_int,
    (*_S, "deploy", "rollback_config", "max_failure_ratio"): _to_float,
    (*_S, "deploy", "restart_policy", "max_attempts"): _to_int,
    (*_S, "deploy", "placement", "max_replicas_per_node"): _to_int,
    (*_S, "healthcheck", "retries"): _to_int,
    (*_S, "healthcheck", "disable"): _to_bool,
    (*_S, "oom_kill_disable"): _to_bool,
    (*_S, "oom_score_adj"): _to_int,
    (*_S, "pids_limit"): _to_int,
    (*_S, "ports", _ITEM, "target"): _to_int,
    (*_S, "privileged"): _to_bool,
    (*_S, "read_only"): _to_bool,
    (*_S, "scale"): _to_int,
    (*_S, "stdin_open"): _to_bool,
    (*_S, "tty"): _to_bool,
    (*_S, "ulimits", _ANY): _to_int,
    (*_S, "ulimits", _ANY, "hard"): _to_int,
    (*_S, "ulimits", _ANY, "soft"): _to_int,
    (*_S, "volumes", _ITEM, "read_only"): _to_bool,
    (*_S, "volumes", _ITEM, "volume", "nocopy"): _to_bool,
    (*_S, "depends_on", _ANY, "required"): _to_bool,
    (*_S, "depends_on", _ANY, "restart"): _to_bool,
    ("networks", _ANY, "external"): _to_bool,
    ("networks", _ANY, "internal"): _to_bool,
    ("networks", _ANY, "attachable"): _to_bool,
    ("networks", _ANY, "enable_ipv6"): _to_bool,
    ("volumes", _ANY, "external"): _to_bool,
    ("secrets", _ANY, "external"): _to_bool,
    ("configs", _ANY, "external"): _to_bool,
}


def cast_types(data: object) -> object:
    """A copy of `data` with the strings at compose-go's typed paths converted."""

    def walk(value: object, pattern: tuple[str, ...], path: Path) -> object:
        if isinstance(value, str):
            cast = _CASTS.get(pattern)
            if cast is None:
                return value
            try:
                return cast(value)
            except ValueError as exc:
                raise StackError(str(exc), path=path) from None
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                step = key if (*pattern, key) in _PREFIXES else _ANY
                out[key] = walk(item, (*pattern, step), (*path, key))
            return out
        if isinstance(value, list):
            return [walk(item, (*pattern, _ITEM), (*path, i)) for i, item in enumerate(value)]
        return value

    return walk(data, (), ())


_PREFIXES = {key[:i] for key in _CASTS for i in range(1, len(key) + 1)}


@cache
def _validator() -> Draft7Validator:
    from jsonschema import Draft7Validator

    text = resources.files("orchestr.stack").joinpath("compose-spec.json").read_text()
    return Draft7Validator(json.loads(text))


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_TYPE_NAMES = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}


def _schema_types(schema: Any) -> set[str]:
    kinds = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kinds, str):
        return {kinds}
    if isinstance(kinds, list):
        return set(kinds)
    return set()


def _matches_type(value: object, kinds: set[str]) -> bool:
    checks = {
        "string": isinstance(value, str),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
        "null": value is None,
    }
    return any(checks.get(k, False) for k in kinds)


def _resolve(schema: Any) -> Any:
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = _validator().schema
        for part in ref[2:].split("/"):
            node = node[part]
        return node
    return schema


def _leaf(error: ValidationError) -> ValidationError:
    """For a oneOf/anyOf failure, the error of the branch that fits the value's type."""
    while error.validator in ("oneOf", "anyOf") and error.context:
        branches: dict[int, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.schema_path[0] if sub.schema_path else 0, []).append(sub)  # type: ignore[arg-type]
        options = error.validator_value if isinstance(error.validator_value, list) else []
        chosen: list[ValidationError] | None = None
        for index, subs in sorted(branches.items()):
            schema = _resolve(options[index]) if index < len(options) else {}
            if _matches_type(error.instance, _schema_types(schema)):
                chosen = subs
                break
        if chosen is None:
            return error
        error = max(chosen, key=lambda e: (len(e.absolute_path), e.validator != "type"))
    return error


def _options(error: ValidationError) -> set[str]:
    options: set[str] = set()
    branches = error.validator_value if isinstance(error.validator_value, list) else []
    for branch in branches:
        options |= _schema_types(_resolve(branch))
    return options


def _describe(error: ValidationError) -> tuple[str, Path, str | None]:
    """(message, path, hint) for one jsonschema error, in Compose's terms."""
    error = _leaf(error)
    path: Path = tuple(error.absolute_path)
    value: Any = error.instance
    rule: Any = error.validator_value
    kind = error.validator
    if kind == "additionalProperties" and isinstance(value, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = list(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        extra = [
            k for k in value if k not in allowed and not any(re.search(p, k) for p in patterns)
        ]
        key = extra[0] if extra else "?"
        if (
            path
            and path[-1] in ("services", "networks", "volumes", "secrets", "configs")
            and len(path) == 1
        ):
            what = str(path[-1])[:-1]
            return (
                f"{key!r} is not a valid {what} name",
                (*path, key),
                "letters, digits, '.', '_' and '-'",
            )
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else "keys starting with x- are free for extensions"
        )
        return f"unknown key {key!r}", (*path, key), hint
    if kind == "type":
        wanted = _schema_types(error.schema)
        names = " or ".join(sorted(_TYPE_NAMES.get(t, t) for t in wanted))
        return f"expected {names}, got {_kind(value)}", path, None
    if kind in ("oneOf", "anyOf"):
        names = " or ".join(sorted(_TYPE_NAMES.get(t, t) for t in _options(error)))
        if names:
            return f"expected {names}, got {_kind(value)}", path, None
        return f"{json.dumps(value)} is not valid here", path, None
    if kind == "enum":
        choices = ", ".join(str(c) for c in rule)
        return f"{json.dumps(value)} is not one of {choices}", path, None
    if kind == "required":
        missing = [k for k in rule if k not in value]
        return f"{missing[0] if missing else '?'!r} is required", path, None
    if kind == "uniqueItems":
        seen: list[object] = []
        for item in value:
            if item in seen:
                return f"duplicate item {json.dumps(item)}", path, None
            seen.append(item)
        return "duplicate items", path, None
    if kind == "pattern":
        return f"{json.dumps(value)} does not match {error.validator_value}", path, None
    if kind in ("minimum", "maximum", "minItems", "maxItems", "minLength", "minProperties"):
        return error.message, path, None
    return error.message, path, None


def _stack_error(error: ValidationError, file: str, locate: Locate | None) -> StackError:
    message, path, hint = _describe(error)
    position = locate(path) if locate is not None else None
    line, column = position if position is not None else (None, None)
    return StackError(message, file=file or None, line=line, column=column, path=path, hint=hint)


def _iter(data: object) -> Iterator[ValidationError]:
    return _validator().iter_errors(data)


def errors(data: object, *, file: str = "", locate: Locate | None = None) -> list[StackError]:
    """Every schema error of `data`, one per problem, sorted by where it is."""
    found = [_stack_error(e, file, locate) for e in _iter(data)]
    return sorted(found, key=lambda e: (e.line or 0, e.column or 0, str(e)))


def check(
    data: object,
    *,
    file: str = "",
    locate: Locate | None = None,
    cache_dir: str | None = None,
) -> None:
    """Raise the first (by line) schema error of `data` as a StackError.

    With `cache_dir`, a document found valid once is remembered there by the digest of
    its content and of the schema (an empty file per document), and not checked again:
    the next `up` of an unchanged stack does not even import jsonschema."""
    key = _cache_key(data) if cache_dir else None
    if key is not None and cache_dir is not None and os.path.exists(os.path.join(cache_dir, key)):
        return
    found = errors(data, file=file, locate=locate)
    if found:
        raise found[0]
    if key is not None and cache_dir is not None:
        _remember(cache_dir, key)


_CACHE_ENTRIES = 512  # valid documents remembered; the oldest go first


@cache
def _schema_digest() -> str:
    data = resources.files("orchestr.stack").joinpath("compose-spec.json").read_bytes()
    return hashlib.sha256(data).hexdigest()


def _cache_key(data: object) -> str | None:
    try:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256((_schema_digest() + text).encode()).hexdigest()


def _remember(directory: str, key: str) -> None:
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        with open(os.path.join(directory, key), "w"):
            pass
        entries = os.listdir(directory)
        if len(entries) > _CACHE_ENTRIES:
            paths = [os.path.join(directory, e) for e in entries]
            paths.sort(key=lambda p: os.stat(p).st_mtime)
            for path in paths[: len(paths) - _CACHE_ENTRIES]:
                os.unlink(path)
    except OSError:
        pass  # a cache that cannot be written is only slower
