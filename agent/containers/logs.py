"""Reading a container's json-file log (written by the supervisor) as `docker logs`
does: both streams or one, `--since`/`--until`, `--tail N`, `--timestamps`, and
`--follow` (new lines as they are written, across rotation, until the container
stops). Output is Docker's multiplexed framing for containers without a TTY."""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterator

from orchestr.api.logstream import STDERR, STDOUT, parse_time
from orchestr.api.logstream import LogLine as Entry

__all__ = ["STDERR", "STDOUT", "Entry", "follow", "parse_time", "read", "select"]


def _files(path: str) -> list[str]:
    """The log and its rotated siblings, oldest first."""
    rotated = []
    n = 1
    while os.path.exists(f"{path}.{n}"):
        rotated.append(f"{path}.{n}")
        n += 1
    return [*reversed(rotated), *([path] if os.path.exists(path) else [])]


def _parse(line: bytes) -> Entry | None:
    try:
        doc = json.loads(line)
        stream = STDERR if doc.get("stream") == "stderr" else STDOUT
        return Entry(stream, str(doc.get("time", "")), str(doc.get("log", "")).encode())
    except (ValueError, AttributeError):
        return None  # a torn last line (the writer is mid-write) or garbage


def read(path: str) -> Iterator[Entry]:
    for name in _files(path):
        try:
            with open(name, "rb") as f:
                for line in f:
                    if line.endswith(b"\n"):
                        entry = _parse(line)
                        if entry is not None:
                            yield entry
        except FileNotFoundError:
            continue  # rotated away while reading


def select(
    entries: Iterator[Entry],
    *,
    stdout: bool,
    stderr: bool,
    since: float = 0.0,
    until: float = 0.0,
    tail: int | None = None,
) -> Iterator[Entry]:
    wanted = {s for s, on in ((STDOUT, stdout), (STDERR, stderr)) if on}
    chosen = (
        e
        for e in entries
        if e.stream in wanted
        and (not since or e.timestamp() > since)
        and (not until or e.timestamp() <= until)
    )
    if tail is not None:
        return iter(deque(chosen, maxlen=tail)) if tail > 0 else iter(())
    return chosen


def follow(
    path: str, running: Callable[[], bool], poll: float = 0.1, *, from_start: bool = False
) -> Iterator[Entry]:
    """Entries written after now (all of the current file's, `from_start`), until
    `running()` is false and the file is drained."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - reopened on rotation
        if not from_start:
            f.seek(0, os.SEEK_END)
    except FileNotFoundError:
        f = None
    pending = b""
    try:
        while True:
            chunk = f.read() if f is not None else b""
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    entry = _parse(line)
                    if entry is not None:
                        yield entry
                continue
            rotated = f is None or _replaced(f, path)
            if rotated:
                if f is not None:
                    f.close()
                try:
                    f = open(path, "rb")  # noqa: SIM115
                    pending = b""
                    continue
                except FileNotFoundError:
                    f = None
            if not running():
                return
            time.sleep(poll)
    finally:
        if f is not None:
            f.close()


def _replaced(f: object, path: str) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino  # type: ignore[attr-defined]
    except FileNotFoundError:
        return False
