"""Compose's env files: `.env` and `env_file`, parsed as Docker Compose v2 does it.

Two formats:

- the default one, compose-go's `dotenv` parser: `KEY=VALUE` (or YAML-like `KEY: VALUE`),
  an optional `export ` prefix, `#` comment lines, blank lines; values unquoted (trimmed,
  cut at ` #`, interpolated), single-quoted (literal; only `\\'` is unescaped) or
  double-quoted (`\\n \\t \\r \\a \\b \\f \\v \\\\ \\" \\$` and `\\0ooo` octal escapes, then
  interpolated); quoted values may span lines. A bare `KEY` takes its value from the
  lookup, or is left out. Interpolation (see `orchestr.stack.interpolate`) looks a name up
  in `lookup` first, then in the keys read so far from the same file.
- `format="raw"`, the docker CLI's `--env-file` parser that Compose registers as `raw`:
  `KEY=VALUE` per line, the value taken as is (quotes, `$`, trailing spaces and all);
  only leading whitespace, blank lines and `#` lines are dropped.

Where compose-go is surprising, it is kept: text after a closing quote starts a new
statement (`A="x" B=y` sets B); a key may hold letters, digits and `_ . - [ ]`, even
start with a digit; `=VALUE` sets the empty key; the environment wins over an earlier
key of the same file when interpolating; escapes are not expanded in unquoted values
(`A=\\$B` is a backslash then B's value). Two things are deliberately different: a bare
`KEY` on the last line without a newline is looked up like any other bare key
(compose-go stores its name under the empty key), and errors give the line where the
statement starts (compose-go gives the last line it read for an unterminated quote).

Exceptions:

ValueError, OrchestrError
 └─ DotenvError    a missing required file, a line that cannot be parsed, or a value that
                   cannot be interpolated; the message names the file and line
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path

from orchestr.errors import OrchestrError
from orchestr.stack.interpolate import (
    InterpolationError,
    Lookup,
    Warn,
    interpolate,
    warn_once,
)

__all__ = ["DotenvError", "parse_dotenv", "read_dotenv"]

_BOM = "\ufeff"
# Go's unicode.IsSpace for Latin-1, and the parser's isSpace (the same without "\n").
_LATIN1_SPACE = "\t\n\v\f\r \x85\xa0"
_BLANK = "\t\v\f\r \x85\xa0"
_KEY_PUNCTUATION = "_.-[]"
# Go's `^export\s+` (RE2's \s is [\t\n\f\r ]).
_EXPORT = re.compile(r"export[\t\n\f\r ]+")
_ESCAPE = re.compile(r"\\(?:[abcfnrtv$\"\\]|0[0-9]{0,3})")
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    '"': '"',
    "\\": "\\",
    "$": "$$",  # the interpolation step turns "$$" into a literal "$"
}


class DotenvError(OrchestrError, ValueError):
    """An env file that cannot be read or parsed; `filename` and `line` say where."""

    def __init__(self, message: str, *, filename: str, line: int | None = None) -> None:
        super().__init__(message)
        self.filename = filename
        self.line = line


def _no_lookup(name: str) -> str | None:
    return None


def read_dotenv(
    path: str | os.PathLike[str],
    *,
    lookup: Lookup = _no_lookup,
    required: bool = True,
    format: str | None = None,
    warn: Warn | None = None,
) -> dict[str, str]:
    """Parse the env file at `path`; a missing file is an error only when `required`."""
    filename = os.fspath(path)
    try:
        data = Path(filename).read_bytes()
    except FileNotFoundError:
        if required:
            raise DotenvError(f"env file {filename} not found", filename=filename) from None
        return {}
    except OSError as exc:
        raise DotenvError(
            f"failed to read {filename}: {exc.strerror or exc}", filename=filename
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DotenvError(
            f"failed to read {filename}: line {line}: invalid utf8 bytes",
            filename=filename,
            line=line,
        ) from None
    return parse_dotenv(text, lookup=lookup, filename=filename, format=format, warn=warn)


def parse_dotenv(
    text: str,
    *,
    lookup: Lookup = _no_lookup,
    filename: str = ".env",
    format: str | None = None,
    warn: Warn | None = None,
) -> dict[str, str]:
    """Parse env-file text; `filename` only names the file in errors.

    `lookup` resolves bare keys and (default format) interpolated names; `warn` hears
    once about each interpolated variable that is unset.
    """
    if format in (None, "", ".env"):
        return _Parser(text, lookup, filename, warn_once(warn)).parse()
    if format == "raw":
        return _parse_raw(text, lookup, filename)
    raise DotenvError(f"unsupported env_file format {json.dumps(format)}", filename=filename)


def _is_space(char: str) -> bool:
    """Go's unicode.IsSpace."""
    return char in _LATIN1_SPACE or (char > "\xff" and char.isspace())


def _rstrip_space(text: str) -> str:
    end = len(text)
    while end and _is_space(text[end - 1]):
        end -= 1
    return text[:end]


def _is_key_char(char: str) -> bool:
    return char in _KEY_PUNCTUATION or unicodedata.category(char)[0] in "LN"


def _expand_escape(match: re.Match[str]) -> str:
    escape = match.group(0)
    if escape[1] != "0":
        return _SIMPLE_ESCAPES.get(escape[1], escape)  # "\c" is matched but kept
    digits = escape[2:]
    # `\0ooo` is Go's `\ooo`: exactly three octal digits, at most 0o377; else kept.
    if len(digits) == 3 and all(d in "01234567" for d in digits) and int(digits, 8) <= 0o377:
        return chr(int(digits, 8))
    return escape


class _Parser:
    def __init__(self, text: str, lookup: Lookup, filename: str, warn: Warn | None) -> None:
        self._text = text.removeprefix(_BOM)
        self._lookup = lookup
        self._filename = filename
        self._warn = warn
        self._out: dict[str, str] = {}
        self._line = 1  # the line of `self._line_pos`
        self._line_pos = 0

    def parse(self) -> dict[str, str]:
        pos = 0
        while (pos := self._statement_start(pos)) < len(self._text):
            line = self._line_at(pos)
            key, pos, bare = self._key(pos, line)
            if bare:
                value = self._lookup(key) if key else None
                if value is not None:
                    self._out[key] = value
                continue
            self._out[key], pos = self._value(key, pos, line)
        return self._out

    def _error(self, line: int, message: str) -> DotenvError:
        return DotenvError(
            f"failed to read {self._filename}: line {line}: {message}",
            filename=self._filename,
            line=line,
        )

    def _line_at(self, pos: int) -> int:
        self._line += self._text.count("\n", self._line_pos, pos)
        self._line_pos = pos
        return self._line

    def _statement_start(self, pos: int) -> int:
        """Skip whitespace and comment lines; the end of the text when nothing is left."""
        text = self._text
        while pos < len(text):
            if _is_space(text[pos]):
                pos += 1
            elif text[pos] == "#":
                newline = text.find("\n", pos)
                pos = len(text) if newline < 0 else newline
            else:
                break
        return pos

    def _key(self, pos: int, line: int) -> tuple[str, int, bool]:
        """The key at `pos`, where its value starts, and whether it is a bare key."""
        text = self._text
        export = _EXPORT.match(text, pos)
        if export is not None:
            pos += len("export")
            while pos < len(text) and text[pos] in _BLANK:
                pos += 1
        start = end = pos
        while end < len(text):
            char = text[end]
            if char in "=:\n":
                break
            if not (char in _BLANK or _is_key_char(char)):
                name = text[start:].split("\n", 1)[0]
                raise self._error(
                    line,
                    f"unexpected character {json.dumps(char, ensure_ascii=False)}"
                    f" in variable name {json.dumps(name, ensure_ascii=False)}",
                )
            end += 1
        bare = end == len(text) or text[end] == "\n"
        key = _rstrip_space(text[start:end])
        if " " in key:
            raise self._error(line, "key cannot contain a space")
        pos = min(end + 1, len(text))
        while pos < len(text) and text[pos] in _BLANK:
            pos += 1
        return key, pos, bare

    def _value(self, key: str, pos: int, line: int) -> tuple[str, int]:
        """The value at `pos` and where the next statement may start."""
        text = self._text
        quote = text[pos] if pos < len(text) else ""
        if quote not in ("'", '"'):
            newline = text.find("\n", pos)
            end = len(text) if newline < 0 else newline
            raw = _rstrip_space(text[pos:end].split(" #", 1)[0])
            return self._interpolate(key, raw, line), min(end + 1, len(text))
        chars: list[str] = []
        escaped = False
        for i in range(pos + 1, len(text)):
            char = text[i]
            if char != quote:
                if not escaped and char == "\\":
                    escaped = True
                    continue
                if escaped:
                    chars.append("\\")
                    escaped = False
                chars.append(char)
            elif escaped:  # \' in single quotes, \" in double quotes
                chars.append(char)
                escaped = False
            else:
                value = "".join(chars)
                if quote == '"':
                    value = self._interpolate(key, _ESCAPE.sub(_expand_escape, value), line)
                return value, i + 1
        shown = text[pos:].split("\n", 1)[0]
        raise self._error(line, f"unterminated quoted value {shown}")

    def _interpolate(self, key: str, value: str, line: int) -> str:
        def resolve(name: str) -> str | None:
            found = self._lookup(name)
            return found if found is not None else self._out.get(name)

        try:
            return interpolate(value, resolve, where=key, warn=self._warn)
        except InterpolationError as exc:
            raise self._error(line, str(exc)) from exc


def _parse_raw(text: str, lookup: Lookup, filename: str) -> dict[str, str]:
    """The docker CLI's env-file lines: `KEY=VALUE` verbatim, or a bare `KEY` looked up."""
    out: dict[str, str] = {}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, raw_line in enumerate(lines, start=1):
        line = raw_line.removesuffix("\r")
        if number == 1:
            line = line.removeprefix(_BOM)
        start = 0
        while start < len(line) and _is_space(line[start]):
            start += 1
        line = line[start:]
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        if not key:
            raise DotenvError(
                f"failed to read {filename}: line {number}: no variable name on line '{line}'",
                filename=filename,
                line=number,
            )
        if " " in key or "\t" in key:
            raise DotenvError(
                f"failed to read {filename}: line {number}: variable '{key}' contains whitespaces",
                filename=filename,
                line=number,
            )
        if equals:
            out[key] = value
        else:
            found = lookup(key)
            if found is not None:
                out[key] = found
    return out
