""".dockerignore rules, matched the way moby/patternmatcher does it.

Reading (patternmatcher/ignorefile): a UTF-8 BOM is dropped; a line that
starts with `#` in its first column is a comment; other lines are trimmed and
blank ones skipped; a leading `!` (blanks after it allowed) makes an exception;
the pattern is cleaned like Go's filepath.Clean and a leading `/` dropped.

Matching (MatchesOrParentMatches): Go filepath.Match syntax (`*` and `?` never
match `/`, `[...]` classes with `^` negation and ranges, `\\` escapes the next
character) plus `**`, any number of directories including none (`**/x`, `a/**/b`;
a trailing `**` matches any rest). A pattern matches a path if it matches the path
or one of its parent directories; the last matching pattern wins. A malformed
pattern (unclosed class, trailing `\\`, a lone `!`) is a ValueError naming it.

Where moby's regex translation has accidents (inside `[...]` it passes `*`
through as a wildcard; `\\d` after a backslash means a digit) this follows Go
filepath.Match: class contents and escaped characters are literal.

Which file (BuildKit): `<Dockerfile>.dockerignore` next to the Dockerfile wins,
else `<context>/.dockerignore`.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

__all__ = ["IgnoreRules"]

_BOM = "\ufeff"


class _Kind(Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    REGEX = "regex"


@dataclass(frozen=True)
class _Pattern:
    text: str  # cleaned, without the `!`
    exclusion: bool
    kind: _Kind
    regex: re.Pattern[str] | None
    dirs: tuple[str, ...]

    def match(self, path: str) -> bool:
        if self.kind is _Kind.EXACT:
            return path == self.text
        if self.kind is _Kind.PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind is _Kind.SUFFIX:
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regex is not None
        return self.regex.fullmatch(path) is not None

    def may_match_beneath(self, dir_parts: Sequence[str]) -> bool:
        """Whether this pattern could match some path strictly inside the directory."""
        for i, part in enumerate(dir_parts):
            if i >= len(self.dirs):
                return False
            component = self.dirs[i]
            if "**" in component:
                return True
            try:
                regex = _translate(component, self.text)[0]
            except ValueError:  # a class split by "/": cannot rule anything out
                return True
            if re.fullmatch(regex, part) is None:
                return False
        return len(self.dirs) > len(dir_parts)


class IgnoreRules:
    """The rules of one .dockerignore file."""

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        """Compile already-read patterns (`!` marks an exception)."""
        self._patterns = tuple(_compile(p) for p in patterns)

    @property
    def patterns(self) -> tuple[str, ...]:
        """The cleaned patterns, exceptions with their `!`."""
        return tuple(("!" if p.exclusion else "") + p.text for p in self._patterns)

    @classmethod
    def parse(cls, text: str) -> IgnoreRules:
        """Rules from the text of a .dockerignore file."""
        return cls(_read(text))

    @classmethod
    def for_context(cls, context_dir: str, dockerfile: str | None = None) -> IgnoreRules:
        """The rules that apply to a build context.

        `dockerfile` is the Dockerfile's path, relative to the context unless
        absolute; `<dockerfile>.dockerignore` wins if it exists, else
        `<context>/.dockerignore`, else there are no rules.
        """
        candidates = []
        if dockerfile is not None:
            candidates.append(os.path.join(context_dir, dockerfile) + ".dockerignore")
        candidates.append(os.path.join(context_dir, ".dockerignore"))
        for candidate in candidates:
            if os.path.isfile(candidate):
                with open(candidate, encoding="utf-8") as f:
                    return cls.parse(f.read())
        return cls()

    def excluded(self, path: str) -> bool:
        """Whether the context-relative, `/`-separated path is excluded."""
        path = posixpath.normpath(path.strip("/"))
        if path in ("", "."):
            return False
        parent = posixpath.dirname(path)
        parents = parent.split("/") if parent else []
        matched = False
        for pattern in self._patterns:
            # Only a pattern that could flip the answer needs evaluating.
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path) or any(
                pattern.match("/".join(parents[: i + 1])) for i in range(len(parents))
            )
            if hit:
                matched = not pattern.exclusion
        return matched

    def walk(self, context_dir: str) -> list[str]:
        """Every included entry under the context, sorted; symlinks are not followed."""
        out: list[str] = []

        def visit(directory: str, rel_dir: str) -> None:
            with os.scandir(directory) as entries:
                listing = sorted(entries, key=lambda e: e.name)
            for entry in listing:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                excluded = self.excluded(rel)
                if not excluded:
                    out.append(rel)
                if entry.is_dir(follow_symlinks=False) and (
                    not excluded or self._may_include_beneath(rel)
                ):
                    visit(entry.path, rel)

        visit(context_dir, "")
        return sorted(out)

    def _may_include_beneath(self, rel_dir: str) -> bool:
        parts = rel_dir.split("/")
        return any(p.exclusion and p.may_match_beneath(parts) for p in self._patterns)


def _read(text: str) -> list[str]:
    """Patterns from a .dockerignore file's text (patternmatcher/ignorefile.ReadAll)."""
    if text.startswith(_BOM):
        text = text[len(_BOM) :]
    patterns = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = _clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


def _clean(path: str) -> str:
    """Go's path.Clean: like posixpath.normpath, but `//x` is `/x`."""
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def _compile(raw: str) -> _Pattern:
    text = raw.strip()
    exclusion = text.startswith("!")
    if exclusion:
        if len(text) == 1:
            raise ValueError('illegal exclusion pattern: "!"')
        text = text[1:]
    text = _clean(text)
    regex, kind = _translate(text, raw)
    compiled = re.compile(regex) if kind is _Kind.REGEX else None
    return _Pattern(text, exclusion, kind, compiled, tuple(text.split("/")))


def _translate(pattern: str, raw: str) -> tuple[str, _Kind]:
    """The regex for a cleaned pattern, and how moby would match it."""
    out: list[str] = []
    kind = _Kind.EXACT
    i = 0
    n = len(pattern)
    step = 0
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                if i >= n:
                    if kind is _Kind.EXACT:
                        kind = _Kind.PREFIX
                    else:
                        out.append(".*")
                        kind = _Kind.REGEX
                else:
                    out.append("(?:.*/)?")
                    kind = _Kind.REGEX
                if step == 0:
                    kind = _Kind.SUFFIX
            else:
                out.append("[^/]*")
                kind = _Kind.REGEX
        elif ch == "?":
            out.append("[^/]")
            kind = _Kind.REGEX
        elif ch == "\\":
            if i >= n:
                raise ValueError(f"invalid .dockerignore pattern {raw!r}: trailing backslash")
            out.append(re.escape(pattern[i]))
            i += 1
            kind = _Kind.REGEX
        elif ch == "[":
            cls, i = _char_class(pattern, i, raw)
            out.append(cls)
            kind = _Kind.REGEX
        else:
            out.append(re.escape(ch))
        step += 1
    # For PREFIX and SUFFIX the text itself is matched and the regex is unused.
    return "".join(out), kind


def _char_class(pattern: str, i: int, raw: str) -> tuple[str, int]:
    """Translate a `[...]` class whose `[` is just before `i`, checked as Go's Match does."""

    def bad(why: str) -> ValueError:
        return ValueError(f"invalid .dockerignore pattern {raw!r}: {why}")

    def char(j: int) -> tuple[str, int]:
        if j >= len(pattern) or pattern[j] in "-]":
            raise bad("syntax error in character class")
        if pattern[j] == "\\":
            j += 1
            if j >= len(pattern):
                raise bad("syntax error in character class")
        if j + 1 >= len(pattern):
            raise bad("unclosed character class")
        return pattern[j], j + 1

    negate = i < len(pattern) and pattern[i] == "^"
    if negate:
        i += 1
    items: list[str] = []
    count = 0
    while True:
        if i < len(pattern) and pattern[i] == "]" and count > 0:
            i += 1
            break
        lo, i = char(i)
        hi = lo
        if pattern[i] == "-":
            hi, i = char(i + 1)
        count += 1
        if lo == hi:
            items.append(re.escape(lo))
        elif lo < hi:
            items.append(f"{re.escape(lo)}-{re.escape(hi)}")
        # lo > hi: a range that matches nothing, as in Go
    if not items:
        return ("[\\s\\S]" if negate else "(?!)"), i
    return "[" + ("^" if negate else "") + "".join(items) + "]", i
