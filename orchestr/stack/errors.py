"""Errors of the stack loader: each names the file, the line and column, and the field.

OrchestrError, ValueError
 └─ StackError          a stack file (or the set of them) that cannot be loaded

str() is one line, most specific part first:

    compose.yaml:12:9: services.web.ports[1]: "80:80:80" is not a port mapping
        (hint: HOST:CONTAINER[/PROTOCOL], e.g. "8080:80")

Any part that is unknown is left out (a project-level error has no path; an error about
a value that came from an environment variable may have no line).
"""

from __future__ import annotations

from orchestr.errors import OrchestrError

__all__ = ["StackError", "format_path"]

PathPart = str | int


def format_path(path: tuple[PathPart, ...] | list[PathPart]) -> str:
    """`("services", "web", "ports", 1)` → `services.web.ports[1]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


class StackError(OrchestrError, ValueError):
    """A stack that cannot be loaded; the message names where and what."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        path: tuple[PathPart, ...] | list[PathPart] = (),
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line  # 1-based
        self.column = column  # 1-based
        self.path = tuple(path)
        self.hint = hint
        super().__init__(self._render())

    @property
    def where(self) -> str:
        """`compose.yaml:12:9` (as much of it as is known)."""
        if self.file is None:
            return "" if self.line is None else f"line {self.line}"
        text = self.file
        if self.line is not None:
            text += f":{self.line}"
            if self.column is not None:
                text += f":{self.column}"
        return text

    def _render(self) -> str:
        parts = [p for p in (self.where, format_path(self.path)) if p]
        text = ": ".join([*parts, self.message])
        if self.hint:
            text += f" (hint: {self.hint})"
        return text
