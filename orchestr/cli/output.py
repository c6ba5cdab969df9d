"""How the CLI shows things: tables (rich), sizes and ages as docker shows them,
JSON on request, and progress streams (pull, push, load, build) rendered live."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import click

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(size: float) -> str:
    """Decimal units with three significant digits, as `docker images` prints them."""
    unit = 0
    while size >= 1000 and unit < len(_UNITS) - 1:
        size /= 1000
        unit += 1
    if unit == 0:
        return f"{int(size)}{_UNITS[0]}"
    return f"{size:.3g}{_UNITS[unit]}"


def stamp_age(stamp: str) -> str:
    """An Engine API time (RFC 3339, UTC) as '3 minutes ago'; '' when it is not one."""
    import datetime as dt

    try:
        then = dt.datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return ""
    return human_age(then.timestamp()).lower()


def human_age(then: float, now: float | None = None) -> str:
    """'3 minutes ago', as docker's units.HumanDuration."""
    seconds = max(0.0, (time.time() if now is None else now) - then)
    if seconds < 1:
        return "Less than a second ago"
    if seconds < 60:
        return f"{int(seconds)} second{'s' if int(seconds) != 1 else ''} ago"
    minutes = seconds / 60
    if minutes < 60:
        n = round(minutes)
        return "About a minute ago" if n == 1 else f"{n} minutes ago"
    hours = minutes / 60
    if hours < 48:
        n = round(hours)
        return "About an hour ago" if n == 1 else f"{n} hours ago"
    days = hours / 24
    if days < 14:
        return f"{int(days)} days ago"
    if days < 60:
        return f"{int(days / 7)} weeks ago"
    if days < 365 * 2:
        return f"{int(days / 30)} months ago"
    return f"{int(days / 365)} years ago"


def short_id(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def print_json(doc: object) -> None:
    click.echo(json.dumps(doc, indent=4))


def print_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A plain table like docker's: upper-case headers, columns three spaces apart."""
    lines = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    for line in lines:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(line)]
        click.echo("   ".join(cells).rstrip())


class ProgressView:
    """Docker's JSON progress messages (status, id, progressDetail, stream, aux) shown
    live: a bar per layer on a terminal, one line per finished step otherwise."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.console import Console  # rich only where progress is shown
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        self.quiet = quiet
        self.console = Console(stderr=False)
        self.live = self.console.is_terminal and not quiet
        self.progress = Progress(
            TextColumn("{task.fields[id]}: {task.description}"),
            BarColumn(),
            DownloadColumn(),
            console=self.console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}
        self.aux: list[dict[str, Any]] = []

    def __enter__(self) -> ProgressView:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        if self.live:
            self.progress.console.print(text, markup=False, highlight=False, end="")
        else:
            sys.stdout.write(text)
            sys.stdout.flush()

    def show(self, messages: Iterator[dict[str, Any]]) -> None:
        for m in messages:
            if "aux" in m and isinstance(m["aux"], dict):
                self.aux.append(m["aux"])
                continue
            if "stream" in m:
                self._line(str(m["stream"]))
                continue
            status = str(m.get("status", ""))
            layer = m.get("id")
            detail = m.get("progressDetail") or {}
            if layer and detail.get("total"):
                if self.live:
                    task = self.tasks.get(layer)
                    if task is None:
                        task = self.progress.add_task(status, id=layer, total=detail["total"])
                        self.tasks[layer] = task
                    self.progress.update(
                        task, description=status, completed=detail.get("current", 0)
                    )
                continue
            if layer:
                task = self.tasks.get(layer)
                if self.live and task is not None:
                    total = self.progress.tasks[task].total
                    self.progress.update(task, description=status, completed=total)
                else:
                    self._line(f"{layer}: {status}\n")
                continue
            if status:
                self._line(status + "\n")
