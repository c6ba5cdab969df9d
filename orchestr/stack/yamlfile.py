"""YAML as Docker Compose v2 reads it (go-yaml v3), with where every value was written.

`load_yaml(text, file)` returns one `YamlDocument` per document of the text: the plain
data, the position (1-based line and column) of every mapping entry and sequence item
by its path, and the paths carrying Compose's merge tags (`!reset`, `!override`).

What differs from PyYAML's defaults, to match go-yaml v3 decoding into `interface{}`:

- Only YAML 1.2 core scalars are resolved: booleans are `true`/`True`/`TRUE` and the
  `false` forms — `yes`, `no`, `on`, `off`, `y`, `n` stay strings; null is `~`, `null`,
  `Null`, `NULL` or nothing; integers are decimal, `0x…`, `0o…`, `0b…` and Go's legacy
  octal `0777`, with `_` separators ignored (Go's ParseInt with base 0); floats as
  YAML 1.2 writes them, with `.inf`/`.nan`. There is no sexagesimal: `22:22` is the
  string a port mapping needs, not 1342. Timestamps stay strings.
- A key written twice in one mapping is an error naming both lines.
- Merge keys `<<` take a mapping or a list of mappings; keys written in the mapping win,
  then earlier mappings of the list over later ones.
- Scalar keys become strings (`1:` is the key "1"); a mapping or sequence as a key is an
  error. Tags other than the standard ones, `!reset` and `!override` are errors.

Positions: a mapping entry is located at its key (the line of `ports:`), a sequence item
at the item. `!reset` values are dropped from the data (their paths are in `tags`),
`!override` values are kept (their paths too), so the merge can honour both.

Errors are StackError with the file, line and column; malformed YAML reads like
`compose.yaml:4:9: mapping values are not allowed here`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from orchestr.stack.errors import StackError

__all__ = ["YamlDocument", "load_yaml"]

PathPart = str | int
Path = tuple[PathPart, ...]

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_INT = re.compile(r"^[-+]?(?:0[bB][01_]+|0[oO][0-7_]+|0[xX][0-9a-fA-F_]+|[0-9][0-9_]*)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_STR = "tag:yaml.org,2002:str"
_TAGS = {"!reset": "reset", "!override": "override"}
# go-yaml v3 stops decoding past 400 000 values when aliases make up much of them
# ("excessive aliasing"); a compose file has a few thousand.
MAX_VALUES = 400_000


class _Loader(_BaseLoader):  # type: ignore[misc]
    """PyYAML's parser and composer with YAML 1.2 core resolution."""

    yaml_implicit_resolvers: dict[str | None, list[tuple[str, re.Pattern[str]]]] = {}


def _resolver(tag: str, pattern: re.Pattern[str], first: str) -> None:
    for char in first:
        _Loader.yaml_implicit_resolvers.setdefault(char, []).append((tag, pattern))


_resolver("tag:yaml.org,2002:bool", _BOOL, "tTfF")
_resolver("tag:yaml.org,2002:null", _NULL, "~nN")
_Loader.yaml_implicit_resolvers.setdefault("", []).append(("tag:yaml.org,2002:null", _NULL))
_resolver("tag:yaml.org,2002:int", _INT, "-+0123456789")
_resolver("tag:yaml.org,2002:float", _FLOAT, "-+0123456789.")
_resolver("tag:yaml.org,2002:merge", re.compile(r"^<<$"), "<")


@dataclass(frozen=True)
class YamlDocument:
    data: object
    file: str
    positions: Mapping[Path, tuple[int, int]]
    tags: Mapping[Path, str]

    def locate(self, path: Path | list[PathPart]) -> tuple[int, int] | None:
        """Where `path` was written, else its nearest ancestor that was."""
        path = tuple(path)
        for depth in range(len(path), -1, -1):
            found = self.positions.get(path[:depth])
            if found is not None:
                return found
        return None


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _int(text: str) -> int:
    digits = text.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    lower = digits.lower()
    if lower.startswith(("0x", "0o", "0b")):
        return sign * int(lower[2:], {"x": 16, "o": 8, "b": 2}[lower[1]])
    if len(digits) > 1 and digits.startswith("0"):
        return sign * int(digits, 8)  # Go's legacy octal; 08 is not an int (a float then)
    return sign * int(digits)


def _float(text: str) -> float:
    lower = text.lower()
    if lower.endswith("inf"):
        return float("-inf") if lower.startswith("-") else float("inf")
    if lower.endswith("nan"):
        return float("nan")
    return float(text)


class _Builder:
    """Plain data from a composed node tree, recording positions and merge tags."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[Path, tuple[int, int]] = {}
        self.tags: dict[Path, str] = {}
        self.active: set[int] = set()
        self.built = 0  # values built, aliases expanded: bounded against alias bombs

    def error(self, node: Node, message: str, path: Path) -> StackError:
        line, column = _mark(node)
        return StackError(message, file=self.file, line=line, column=column, path=path)

    def value(self, node: Node, path: Path) -> Any:
        tag = node.tag
        if tag in _TAGS:
            self.tags[path] = _TAGS[tag]
            tag = ""  # the value itself as if untagged
        self.built += 1
        if self.built > MAX_VALUES:
            raise self.error(
                node,
                f"the document expands to more than {MAX_VALUES} values (aliases of aliases?)",
                path,
            )
        if isinstance(node, ScalarNode):
            return self.scalar(node, tag, path)
        if isinstance(node, SequenceNode):
            return self.inside(node, path, partial(self.sequence, node, tag, path))
        if isinstance(node, MappingNode):
            return self.inside(node, path, partial(self.mapping, node, tag, path))
        raise self.error(node, f"unexpected YAML node {type(node).__name__}", path)

    def inside(self, node: Node, path: Path, build: Callable[[], Any]) -> Any:
        """`build()` of a collection, refused when reached again from within itself
        (an alias to an enclosing node: the value would be infinite)."""
        if id(node) in self.active:
            raise self.error(node, "an alias refers to a value that contains it", path)
        self.active.add(id(node))
        try:
            return build()
        finally:
            self.active.discard(id(node))

    def scalar(self, node: ScalarNode, tag: str, path: Path) -> Any:
        text = node.value
        if tag == "" or tag == "!":
            tag = _STR if node.style else self.resolve(text)
        try:
            if tag == _STR:
                return text
            if tag == "tag:yaml.org,2002:null":
                return None
            if tag == "tag:yaml.org,2002:bool":
                return text.lower() == "true"
            if tag == "tag:yaml.org,2002:int":
                if not _INT.match(text):
                    raise ValueError(text)
                try:
                    return _int(text)
                except ValueError:
                    return _float(text)
            if tag == "tag:yaml.org,2002:float":
                return _float(text)
        except ValueError:
            raise self.error(
                node, f"{text!r} is not a valid {tag.rsplit(':', 1)[-1]}", path
            ) from None
        if tag == "tag:yaml.org,2002:timestamp":
            return text
        raise self.error(node, f"unknown tag {tag}", path)

    @staticmethod
    def resolve(text: str) -> str:
        for tag, pattern in _Loader.yaml_implicit_resolvers.get(text[:1] if text else "", []):
            if pattern.match(text):
                return tag
        return _STR

    def sequence(self, node: SequenceNode, tag: str, path: Path) -> list[Any]:
        if tag not in ("", "tag:yaml.org,2002:seq"):
            raise self.error(node, f"unknown tag {tag}", path)
        out: list[Any] = []
        for item in node.value:
            if item.tag == "!reset":
                self.tags[(*path, len(out))] = "reset"
                continue
            self.positions[(*path, len(out))] = _mark(item)
            out.append(self.value(item, (*path, len(out))))
        return out

    def key(self, node: Node, path: Path) -> str:
        if not isinstance(node, ScalarNode):
            raise self.error(node, "a mapping key must be a scalar, not a mapping or a list", path)
        if node.tag == "tag:yaml.org,2002:merge":
            return "<<"
        value = self.scalar(node, "" if node.tag in _TAGS else node.tag, path)
        if value is None:
            return "null" if node.value else ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else node.value

    def mapping(self, node: MappingNode, tag: str, path: Path) -> dict[str, Any]:
        if tag not in ("", "tag:yaml.org,2002:map"):
            raise self.error(node, f"unknown tag {tag}", path)
        out: dict[str, Any] = {}
        seen: dict[str, int] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            key = self.key(key_node, path)
            if key == "<<" and key_node.tag == "tag:yaml.org,2002:merge":
                merges.append(value_node)
                continue
            if key in seen:
                raise StackError(
                    f"mapping key {key!r} already defined at line {seen[key]}",
                    file=self.file,
                    line=_mark(key_node)[0],
                    column=_mark(key_node)[1],
                    path=path,
                )
            seen[key] = _mark(key_node)[0]
            child = (*path, key)
            if value_node.tag == "!reset":
                self.tags[child] = "reset"
                continue
            self.positions[child] = _mark(key_node)
            out[key] = self.value(value_node, child)
        for merge in merges:
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, MappingNode):
                    raise self.error(
                        source, "a merge key (<<) takes a mapping or a list of them", path
                    )
                merged = self.inside(source, path, partial(self.mapping, source, "", path))
                for key, value in merged.items():
                    out.setdefault(key, value)
        return out


def _problem(exc: yaml.YAMLError, file: str) -> StackError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
    line = mark.line + 1 if mark is not None else None
    column = mark.column + 1 if mark is not None else None
    return StackError(str(problem), file=file, line=line, column=column)


def load_yaml(text: str, file: str) -> list[YamlDocument]:
    """Every document of `text` (one, with data None, when it is empty)."""
    loader = _Loader(text)
    documents: list[YamlDocument] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            builder = _Builder(file)
            data = None if node is None else builder.value(node, ())
            positions = dict(builder.positions)
            positions[()] = _mark(node) if node is not None else (1, 1)
            documents.append(YamlDocument(data, file, positions, dict(builder.tags)))
    except yaml.YAMLError as exc:
        raise _problem(exc, file) from None
    finally:
        loader.dispose()
    return documents or [YamlDocument(None, file, {(): (1, 1)}, {})]
