"""Dockerfiles, parsed the way BuildKit's dockerfile frontend does, and its word lexer.

`parse` turns the text into stages of instructions without expanding anything;
the builder expands words itself, stage by stage, with the helpers below.

Followed from BuildKit (`frontend/dockerfile/parser`):

- parser directives (`# escape=` with `\\` or a backtick, `# syntax=` ignored)
  count only at the very top, each at most once;
- a line whose first non-blank character is `#` is a comment, also inside a
  continuation; blank lines inside a continuation are skipped; the escape
  character at the end of a line (trailing blanks allowed) continues it; the
  first line of an instruction loses its leading blanks, continuation lines
  keep theirs; a `\\r` before the newline is dropped, and a UTF-8 BOM at the start;
- keywords are case-insensitive; leading `--name[=value]` words are flags
  (quotes in them removed, a lone `--` ends them);
- RUN, CMD, ENTRYPOINT, SHELL, COPY, ADD, VOLUME and HEALTHCHECK CMD take the
  JSON form when the rest of the line parses as a JSON array (an array holding
  anything but strings is an error, as in Docker), else the shell form;
- `FROM [--platform=P] image [AS name]`, stage names `^[a-z][a-z0-9-_.]*$`.

Not followed: heredocs (an error), and ONBUILD triggers are kept as raw text.

The lexer follows `frontend/dockerfile/shell/lex.go`: quotes, the escape
character, `$VAR`, `${VAR}` and the modifiers `-`, `+`, `?` with or without `:`.
Pattern modifiers (`#`, `%`, `/`) are refused as unsupported. One difference:
in `expand_words` a quoted empty word (`""`) is kept as an empty word.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "Dockerfile",
    "DockerfileError",
    "Instruction",
    "Stage",
    "expand_word",
    "expand_words",
    "parse",
    "parse_arg",
    "parse_duration",
    "parse_key_values",
]

KEYWORDS = frozenset(
    {
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "MAINTAINER",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
    }
)
JSON_KEYWORDS = frozenset({"RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"})
# An empty JSON array is meaningful only here: it clears the setting.
EMPTY_JSON_OK = frozenset({"CMD", "ENTRYPOINT"})
HEREDOC_KEYWORDS = frozenset({"RUN", "COPY", "ADD"})

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9_.-]*$")
_HEREDOC = re.compile(r"^[0-9]*<<-?(?:([\"'])[A-Za-z_][A-Za-z0-9_]*\1|[A-Za-z_][A-Za-z0-9_]*)")
_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BLANKS = re.compile(r"[\t\v\f\r ]+")
_INDEX = re.compile(r"^[0-9]+$")
_BOM = "\ufeff"


class DockerfileError(ValueError):
    """A Dockerfile that cannot be parsed; names the file and line."""

    def __init__(self, message: str, *, filename: str = "Dockerfile", line: int = 0) -> None:
        self.message = message
        self.filename = filename
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.line:
            return f"{self.filename}:{self.line}: {self.message}"
        return f"{self.filename}: {self.message}"


@dataclass(frozen=True)
class Instruction:
    """One instruction, its words not yet expanded."""

    keyword: str
    flags: tuple[tuple[str, str | None], ...]
    args: tuple[str, ...]
    json_form: bool
    line: int
    source: str

    def flag(self, name: str) -> str | None:
        """The value of the last `--name` flag, None if absent (or bare)."""
        value: str | None = None
        for key, val in self.flags:
            if key == name:
                value = val
        return value


@dataclass(frozen=True)
class Stage:
    """A FROM and the instructions after it, up to the next FROM."""

    index: int
    name: str | None
    base: str
    platform: str | None
    line: int
    instructions: tuple[Instruction, ...]


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile: global ARGs, then stages."""

    filename: str
    escape: str
    global_args: tuple[Instruction, ...]
    stages: tuple[Stage, ...]

    def stage(self, name_or_index: str) -> Stage:
        """The stage named so (case-insensitive) or at that decimal index."""
        key = name_or_index.lower()
        for stage in self.stages:
            if stage.name is not None and stage.name == key:
                return stage
        if _INDEX.match(name_or_index) and int(name_or_index) < len(self.stages):
            return self.stages[int(name_or_index)]
        raise DockerfileError(f"no build stage {name_or_index!r}", filename=self.filename)


# --- parsing ------------------------------------------------------------------


def parse(text: str, filename: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile's text into stages of unexpanded instructions."""
    escape, lines = _logical_lines(text, filename)
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    current: list[Instruction] = []
    pending: tuple[Instruction, str | None] | None = None  # the open stage's FROM
    names: set[str] = set()

    def close() -> None:
        if pending is not None:
            start, name = pending
            base = start.args[0].split()[0]
            platform = start.flag("platform")
            stage = Stage(len(stages), name, base, platform, start.line, tuple(current))
            stages.append(stage)

    for lineno, line in lines:
        inst = _instruction(line, lineno, filename, escape)
        if inst.keyword == "FROM":
            name = _stage_name(inst, filename)
            if name is not None:
                if name in names:
                    raise DockerfileError(
                        f"duplicate stage name {name!r}", filename=filename, line=lineno
                    )
                names.add(name)
            close()
            pending = (inst, name)
            current = []
        elif pending is None:
            if inst.keyword != "ARG":
                raise DockerfileError(
                    f"{inst.keyword} before the first FROM (only ARG may come first)",
                    filename=filename,
                    line=lineno,
                )
            global_args.append(inst)
        else:
            current.append(inst)
    close()
    if not stages:
        raise DockerfileError("no FROM instruction", filename=filename)
    return Dockerfile(filename, escape, tuple(global_args), tuple(stages))


def _logical_lines(text: str, filename: str) -> tuple[str, list[tuple[int, str]]]:
    """The escape character, and each instruction's joined text with its first line."""
    if text.startswith(_BOM):
        text = text[len(_BOM) :]
    raw = [line.removesuffix("\r") for line in text.split("\n")]
    escape = "\\"
    seen: set[str] = set()
    directives = True
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(raw):
        lineno = i + 1
        stripped = raw[i].lstrip()
        i += 1
        if directives:
            match = _DIRECTIVE.match(stripped)
            key = match.group(1).lower() if match else ""
            if match and key in ("escape", "syntax"):
                if key in seen:
                    raise DockerfileError(
                        f"only one {key} parser directive can be used",
                        filename=filename,
                        line=lineno,
                    )
                seen.add(key)
                if key == "escape":
                    value = match.group(2)
                    if value not in ("\\", "`"):
                        raise DockerfileError(
                            f"invalid escape token {value!r} does not match ` or \\",
                            filename=filename,
                            line=lineno,
                        )
                    escape = value
                continue
            directives = False
        if not stripped or stripped.startswith("#"):
            continue
        continuation = re.compile(re.escape(escape) + r"[ \t]*$")
        line, more = _trim_continuation(stripped, continuation)
        while more and i < len(raw):
            part = raw[i]
            i += 1
            if not part.strip() or part.lstrip().startswith("#"):
                continue
            part, more = _trim_continuation(part, continuation)
            line += part
        if line.strip():
            out.append((lineno, line))
    return escape, out


def _trim_continuation(line: str, continuation: re.Pattern[str]) -> tuple[str, bool]:
    match = continuation.search(line)
    if match is None:
        return line, False
    return line[: match.start()], True


def _instruction(line: str, lineno: int, filename: str, escape: str) -> Instruction:
    def fail(message: str) -> DockerfileError:
        return DockerfileError(message, filename=filename, line=lineno)

    source = line.strip()
    parts = _BLANKS.split(source, maxsplit=1)
    word = parts[0]
    rest = parts[1] if len(parts) > 1 else ""
    keyword = word.upper()
    if keyword not in KEYWORDS:
        raise fail(f"unknown instruction: {keyword}")
    try:
        flag_words, text = _extract_flags(rest)
    except ValueError as e:
        raise fail(f"{keyword}: {e}") from None
    flags = []
    for flag_word in flag_words:
        name, eq, value = flag_word[2:].partition("=")
        if not name:
            raise fail(f"{keyword}: invalid flag {flag_word!r}")
        flags.append((name, value if eq else None))
    text = text.strip()
    if not text:
        raise fail(f"{keyword} requires at least one argument")

    args: tuple[str, ...] = (text,)
    json_form = False
    if keyword == "HEALTHCHECK":
        kind_parts = _BLANKS.split(text, maxsplit=1)
        kind = kind_parts[0].upper()
        command = kind_parts[1].strip() if len(kind_parts) > 1 else ""
        if kind == "NONE":
            if command:
                raise fail(f"HEALTHCHECK NONE takes no arguments, got {command!r}")
            args = ("NONE",)
        elif kind == "CMD":
            if not command:
                raise fail("HEALTHCHECK CMD requires a command")
            items = _json_array(command, fail)
            if items is None:
                args = ("CMD", command)
            elif not items:
                raise fail("HEALTHCHECK CMD requires a command")
            else:
                args, json_form = ("CMD", *items), True
        else:
            raise fail(f"unknown type {kind_parts[0]!r} in HEALTHCHECK (try CMD or NONE)")
    elif keyword in JSON_KEYWORDS:
        items = _json_array(text, fail)
        if items is not None:
            if not items and keyword not in EMPTY_JSON_OK:
                raise fail(f"{keyword} requires at least one argument")
            args, json_form = tuple(items), True
    if keyword in HEREDOC_KEYWORDS and not json_form:
        for raw_word in _raw_words(text, escape):
            if _HEREDOC.match(raw_word):
                raise fail(f"{keyword}: heredocs are not supported yet ({raw_word!r})")
    if keyword == "FROM":
        for flag_name, flag_value in flags:
            if flag_name != "platform" or not flag_value:
                raise fail(f"FROM: unknown or malformed flag --{flag_name} (only --platform=P)")
    return Instruction(keyword, tuple(flags), args, json_form, lineno, source)


def _extract_flags(line: str) -> tuple[list[str], str]:
    """Leading `--flag` words (quotes and backslash escapes removed) and the rest."""
    words: list[str] = []
    pos = 0
    n = len(line)
    while True:
        while pos < n and line[pos].isspace():
            pos += 1
        if not line.startswith("--", pos):
            return words, line[pos:]
        word: list[str] = []
        while pos < n and not line[pos].isspace():
            ch = line[pos]
            if ch in "'\"":
                end = pos + 1
                while end < n and line[end] != ch:
                    if line[end] == "\\" and ch == '"' and end + 1 < n:
                        end += 1
                    word.append(line[end])
                    end += 1
                if end >= n:
                    raise ValueError(f"unterminated quote in flag {line[pos:]!r}")
                pos = end + 1
                continue
            if ch == "\\" and pos + 1 < n:
                pos += 1
                ch = line[pos]
            word.append(ch)
            pos += 1
        text = "".join(word)
        if text == "--":
            return words, line[pos:]
        words.append(text)


def _json_array(text: str, fail: Callable[[str], DockerfileError]) -> list[str] | None:
    """The strings of a JSON array, or None when the text is not one."""
    stripped = text.lstrip()
    if not stripped.startswith("["):
        return None
    try:
        value = json.loads(stripped, parse_constant=_no_constant)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise fail("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _stage_name(inst: Instruction, filename: str) -> str | None:
    words = inst.args[0].split()
    if len(words) == 1:
        return None
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
        if not _STAGE_NAME.match(name):
            raise DockerfileError(
                f"invalid stage name {words[2]!r}: must match ^[a-z][a-z0-9-_.]*$",
                filename=filename,
                line=inst.line,
            )
        return name
    raise DockerfileError(
        "FROM requires either one argument, or three: FROM <image> AS <name>"
        f" (got {inst.args[0]!r})",
        filename=filename,
        line=inst.line,
    )


def _raw_words(text: str, escape: str) -> list[str]:
    """Split on blanks outside quotes, keeping quotes and escapes (BuildKit's parseWords)."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    blank_ok = False
    in_word = False
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if not in_word and not quote:
            if ch.isspace():
                i += 1
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if i + 1 == n:
                    quote = ""
                    i += 1
                    continue
                word.append(ch)
                i += 1
                ch = text[i]
            word.append(ch)
            i += 1
            continue
        if ch.isspace():
            if blank_ok or word:
                words.append("".join(word))
            word, blank_ok, in_word = [], False, False
            i += 1
            continue
        if ch in "'\"":
            quote, blank_ok = ch, True
        elif ch == escape:
            if i + 1 == n:
                i += 1
                continue
            word.append(ch)
            i += 1
            ch = text[i]
        word.append(ch)
        i += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


# --- the word lexer -------------------------------------------------------------


class _Words:
    """Collects the words of `expand_words`: unquoted blanks split, quotes keep words."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.current: list[str] = []
        self.quoted = False

    def add_text(self, text: str) -> None:
        for ch in text:
            if ch.isspace():
                self.flush()
            else:
                self.current.append(ch)

    def add_raw(self, text: str, *, quoted: bool = False) -> None:
        self.current.append(text)
        self.quoted = self.quoted or quoted

    def flush(self) -> None:
        if self.current or self.quoted:
            self.words.append("".join(self.current))
        self.current = []
        self.quoted = False


class _Lexer:
    """One pass over a word, after moby's `shellWord`."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.env = env
        self.escape = escape
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += 1 if ch else 0
        return ch

    def run(self, stop: str = "") -> tuple[str, list[str]]:
        """Process up to `stop` (consumed) or the end: the result and its words."""
        result: list[str] = []
        words = _Words()
        while self.peek():
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                words.flush()
                return "".join(result), words.words
            if ch == "$":
                value = self.dollar()
                result.append(value)
                words.add_text(value)
            elif ch == "'":
                value = self.single_quote()
                result.append(value)
                words.add_raw(value, quoted=True)
            elif ch == '"':
                value = self.double_quote()
                result.append(value)
                words.add_raw(value, quoted=True)
            else:
                ch = self.next()
                if ch == self.escape:
                    ch = self.next()
                    if not ch:
                        break
                    words.add_raw(ch)
                else:
                    words.add_text(ch)
                result.append(ch)
        if stop:
            raise ValueError(f"unexpected end of statement while looking for matching {stop}")
        words.flush()
        return "".join(result), words.words

    def single_quote(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.next()
            if not ch:
                raise ValueError("unexpected end of statement while looking for matching '")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise ValueError('unexpected end of statement while looking for matching "')
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                following = self.peek()
                if not following:
                    continue
                if following in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            return self.env.get(name, "") if name else "$"
        self.next()
        ch = self.peek()
        if not ch:
            raise ValueError("syntax error: missing '}'")
        if ch in "{}:":
            raise ValueError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch == "}":
            return self.env.get(name, "")
        if not ch:
            raise ValueError("syntax error: missing '}'")
        modifier = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            modifier += ch
        if not ch:
            raise ValueError("syntax error: missing '}'")
        if ch not in ("-", "+", "?"):
            raise ValueError(f"unsupported modifier ({modifier}) in substitution")
        try:
            word, _ = self.run("}")
        except ValueError:
            if not self.peek():
                raise ValueError("syntax error: missing '}'") from None
            raise
        is_set = name in self.env
        value = self.env.get(name, "")
        unset = not is_set or (null_is_unset and value == "")
        if ch == "-":
            return word if unset else value
        if ch == "+":
            return "" if unset else word
        if not is_set:
            raise ValueError(f"{name}: {word or 'is not allowed to be unset'}")
        if unset:
            raise ValueError(f"{name}: {word or 'is not allowed to be empty'}")
        return value

    def name(self) -> str:
        """A variable name: letters, digits, `_`; or digits; or one special parameter."""
        start = self.pos
        ch = self.peek()
        if ch.isdecimal():
            while self.peek().isdecimal():
                self.next()
            return self.text[start : self.pos]
        if ch and ch in "@*#?-$!0":
            self.next()
            return ch
        while (ch := self.peek()) and (ch.isalpha() or ch.isdecimal() or ch == "_"):
            self.next()
        return self.text[start : self.pos]


def _lex(text: str, env: Mapping[str, str], escape: str) -> tuple[str, list[str]]:
    try:
        return _Lexer(text, env, escape).run()
    except ValueError as e:
        raise ValueError(f"failed to process {text!r}: {e}") from None


def expand_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand one word: quotes and escapes removed, variables substituted."""
    return _lex(word, env, escape)[0]


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Split on unquoted blanks (also those a variable expands to), expanding each word."""
    return _lex(text, env, escape)[1]


def parse_key_values(
    text: str, env: Mapping[str, str], escape: str = "\\", *, keyword: str
) -> list[tuple[str, str]]:
    """ENV/LABEL arguments: `k=v k2="v 2"`, or the legacy `k value with spaces`."""
    text = text.strip()
    words = _raw_words(text, escape)
    if not words:
        raise ValueError(f"{keyword} requires at least one argument")
    raw_pairs: list[tuple[str, str]] = []
    if "=" not in words[0]:
        parts = _BLANKS.split(text, maxsplit=1)
        if len(parts) < 2:
            raise ValueError(f"{keyword} must have two arguments (or use {keyword} name=value)")
        raw_pairs.append((parts[0], parts[1]))
    else:
        for word in words:
            if "=" not in word:
                raise ValueError(
                    f"{keyword}: syntax error - can't find = in {word!r}. "
                    "Must be of the form: name=value"
                )
            key, _, value = word.partition("=")
            raw_pairs.append((key, value))
    pairs: list[tuple[str, str]] = []
    for raw_key, raw_value in raw_pairs:
        key = expand_word(raw_key, env, escape)
        if not key:
            raise ValueError(f"{keyword} names can not be blank")
        pairs.append((key, expand_word(raw_value, env, escape)))
    return pairs


def parse_arg(
    text: str, env: Mapping[str, str], escape: str = "\\"
) -> list[tuple[str, str | None]]:
    """ARG arguments: `name`, `name=default`, several in one; defaults expanded."""
    words = _raw_words(text.strip(), escape)
    if not words:
        raise ValueError("ARG requires at least one argument")
    out: list[tuple[str, str | None]] = []
    for word in words:
        name, eq, value = word.partition("=")
        if not name:
            raise ValueError("ARG names can not be blank")
        if not _ARG_NAME.match(name):
            raise ValueError(
                f"ARG: invalid name {name!r} (letters, digits and _, not a digit first)"
            )
        out.append((name, expand_word(value, env, escape) if eq else None))
    return out


_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_MAX_DURATION = 2**63 - 1


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration, without negatives: nanoseconds."""
    s = text[1:] if text.startswith("+") else text
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = Fraction(0)
    pos = 0
    while pos < len(s):
        match = _DURATION_PART.match(s, pos)
        assert match is not None  # the pattern matches the empty string
        whole, frac, unit = match.groups()
        if not whole and not frac:
            raise ValueError(f"invalid duration {text!r}")
        if not unit:
            raise ValueError(f"missing unit in duration {text!r}")
        if unit not in _UNITS:
            raise ValueError(f"unknown unit {unit!r} in duration {text!r}")
        scale = _UNITS[unit]
        total += int(whole or "0") * scale
        if frac:
            total += Fraction(int(frac) * scale, 10 ** len(frac))
        pos = match.end()
    nanos = int(total)
    if nanos > _MAX_DURATION:
        raise ValueError(f"invalid duration {text!r}: too large")
    return nanos
