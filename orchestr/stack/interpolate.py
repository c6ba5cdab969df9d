"""Variable interpolation in Compose files, as Docker Compose v2 (compose-go) does it.

`interpolate` substitutes one string; `interpolate_tree` walks a loaded YAML document and
substitutes every string value (never a key), naming the dotted path in its errors.

Syntax (compose-go's `template` package, restated):

- `$$` is a literal `$`; `$NAME` and `${NAME}` substitute (an unset variable gives "" and
  one warning); NAME is `[_a-zA-Z][_a-zA-Z0-9]*`.
- `${NAME:-word}` / `${NAME-word}`: `word` when NAME is unset or empty / only when unset.
- `${NAME:+word}` / `${NAME+word}`: `word` when NAME is set and not empty / set at all,
  else NAME's value (which is "" then).
- `${NAME:?msg}` / `${NAME?msg}`: an error carrying `msg` when NAME is unset or empty /
  only when unset.
- `word` and `msg` are themselves interpolated, only when used (so `${A:-${B}}` warns
  about B only when A has no value).
- A `$` not followed by `$`, a name or `{` is kept as is (`a $ sign`, `^x$`, `$1`).
  `${` followed by anything but a name and an optional operator then `}` is an error.

Where compose-go's behaviour is surprising, it is kept, not fixed:

- A braced expression with an operator runs to the *last* `}` on its line, then is cut
  at the first `}` that balances the `{`s counted from the start, where compose-go skips
  the character right after each `{`. So `${A:-{"json":1}}` defaults to `{"json":1}`,
  and an unbalanced default like `${A:-{}} ${B}` reaches `${B` and fails.
- An invalid expression inside a default or after a braced expression is reported
  with that inner text, not the whole value.
- Names are matched case-insensitively as Go does it, which also admits U+017F and
  U+212A (Go folds them to "s" and "k").

Exceptions:

ValueError, OrchestrError
 └─ InterpolationError    invalid `${...}`, or a `?`/`:?` variable without a value
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from orchestr.errors import OrchestrError

__all__ = [
    "InterpolationError",
    "Lookup",
    "Warn",
    "interpolate",
    "interpolate_tree",
    "warn_once",
]

Lookup = Callable[[str], str | None]
"""A variable's value, or None when it is unset (an empty string is a value)."""

Warn = Callable[[str], None]
"""Receives one human-readable warning."""

# compose-go: delimiter "$", then (?i:) over "$" | name | "{" name [":"] op ... "}" | "{".
# Go's case folding of [_a-z] admits U+017F (folds to "s") and U+212A (folds to "k").
_NAME_CHARS = "_A-Za-z\u017f\u212a"
_NAME = rf"[{_NAME_CHARS}][{_NAME_CHARS}0-9]*"
_NAME_RE = re.compile(_NAME)
_PATTERN = re.compile(
    rf"\$(?:(?P<escaped>\$)|(?P<named>{_NAME})"
    rf"|\{{(?:(?P<braced>{_NAME}(?::?[-+?].*)?)\}}|(?P<invalid>)))"
)


class InterpolationError(OrchestrError, ValueError):
    """A value that cannot be interpolated; the message names where it is.

    `where` is the dotted path of the value ("" when not given), `variable` the variable
    that is required but has no value (None for an invalid expression), `template` the
    text that is not a valid expression (None for a missing variable).
    """

    def __init__(
        self,
        message: str,
        *,
        where: str = "",
        variable: str | None = None,
        template: str | None = None,
    ) -> None:
        super().__init__(message)
        self.where = where
        self.variable = variable
        self.template = template


class _InvalidTemplate(Exception):
    def __init__(self, template: str | None) -> None:
        self.template = template


class _MissingRequired(Exception):
    def __init__(self, variable: str, reason: str) -> None:
        self.variable = variable
        self.reason = reason


def warn_once(warn: Warn | None) -> Warn | None:
    """Wrap `warn` so that each distinct message is passed on only the first time."""
    if warn is None:
        return None
    seen: set[str] = set()

    def once(message: str) -> None:
        if message not in seen:
            seen.add(message)
            warn(message)

    return once


def interpolate(text: str, lookup: Lookup, *, where: str = "", warn: Warn | None = None) -> str:
    """Substitute the variables of one string; `where` names it in errors."""
    return _Substituter(lookup, warn_once(warn)).value(text, where)


def interpolate_tree(doc: object, lookup: Lookup, *, warn: Warn | None = None) -> object:
    """Return a copy of a loaded YAML tree with every string value interpolated.

    Mapping keys and non-string scalars are kept as they are; `x-` extensions are
    interpolated like everything else. Errors name the value's path, such as
    `services.web.ports[1]`; each unset variable is warned about once per call.
    """
    return _Substituter(lookup, warn_once(warn)).tree(doc, "")


def _first_closing_brace(text: str) -> int:
    """compose-go's brace balance: the index of the `}` that closes the first `{`."""
    depth = 0
    i = 0
    while i < len(text):
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        elif text[i] == "{":
            depth += 1
            i += 1  # compose-go does not look at the character after a `{`
        i += 1
    return -1


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


class _Substituter:
    def __init__(self, lookup: Lookup, warn: Warn | None) -> None:
        self._lookup = lookup
        self._warn = warn

    def tree(self, node: object, path: str) -> object:
        if isinstance(node, str):
            return self.value(node, path)
        if isinstance(node, dict):
            return {key: self.tree(item, _join(path, key)) for key, item in node.items()}
        if isinstance(node, list):
            return [self.tree(item, f"{path}[{i}]") for i, item in enumerate(node)]
        return node

    def value(self, text: str, where: str) -> str:
        try:
            return self._substitute(text)
        except _InvalidTemplate as exc:
            template = exc.template if exc.template is not None else text
            location = f" for {where}" if where else ""
            shown = json.dumps(template, ensure_ascii=False)
            raise InterpolationError(
                f"invalid interpolation format{location}: {shown}."
                " You may need to escape any $ with another $.",
                where=where,
                template=template,
            ) from None
        except _MissingRequired as exc:
            message = f"required variable {exc.variable} is missing a value"
            if exc.reason:
                message += f": {exc.reason}"
            if where:
                message = f"error while interpolating {where}: {message}"
            raise InterpolationError(message, where=where, variable=exc.variable) from None

    def _substitute(self, template: str) -> str:
        parts: list[str] = []
        pos = 0
        while (match := _PATTERN.search(template, pos)) is not None:
            parts.append(template[pos : match.start()])
            try:
                parts.append(self._replace(match.group(0)))
            except _InvalidTemplate as exc:
                if exc.template is None:
                    exc.template = template
                raise
            pos = match.end()
        parts.append(template[pos:])
        return "".join(parts)

    def _replace(self, expression: str) -> str:
        rest = ""
        closing = _first_closing_brace(expression)
        if closing > -1:
            expression, rest = expression[: closing + 1], expression[closing + 1 :]
        match = _PATTERN.match(expression)
        if match is None:  # cannot happen: the cut text still starts with "${" or "$name"
            raise _InvalidTemplate(None)
        if match.group("escaped"):
            return "$"
        name = match.group("named")
        if not name:
            braced = match.group("braced")
            if not braced:
                raise _InvalidTemplate(None)
            applied = self._operator(braced)
            if applied is not None:
                return applied + self._substitute(rest)
            name = braced
        value = self._lookup(name)
        if value is None:
            if self._warn is not None:
                self._warn(f'The "{name}" variable is not set. Defaulting to a blank string.')
            return ""
        return value

    def _operator(self, braced: str) -> str | None:
        """The value of `NAME<op>word`, or None when `braced` is a bare name."""
        name_match = _NAME_RE.match(braced)
        assert name_match is not None
        name = name_match.group(0)
        tail = braced[len(name) :]
        if not tail:
            return None
        cut = 2 if tail[0] == ":" else 1
        op, word = tail[:cut], tail[cut:]
        value = self._lookup(name)
        if op in (":-", "-"):
            if value is None or (op == ":-" and value == ""):
                return self._substitute(word)
            return value
        if op in (":+", "+"):
            if value is not None and (op == "+" or value != ""):
                return self._substitute(word)
            return value or ""
        # ":?" and "?"
        if value is None or (op == ":?" and value == ""):
            raise _MissingRequired(name, self._substitute(word))
        return value
