"""Docker's log stream on the wire, shared by container logs (the node agent) and
service and task logs (the manager).

A line is sent as `[<timestamp> ][<details> ]<data>`, in a stdcopy frame unless the
container has a TTY. Details are the line's attributes as comma-separated `key=value`
pairs, each URL-query-escaped; for service and task logs they carry the line's context
(`com.docker.swarm.node.id`, `…service.id`, `…task.id`), which is what the docker CLI
reads to print `name.slot.task@node | …`.

`ContainerLogs` is what a node offers the manager: a container's past lines and the
lines it writes from now on.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from urllib.parse import quote_plus, unquote_plus

STDOUT, STDERR = 1, 2
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"


@dataclass(frozen=True)
class LogLine:
    stream: int  # STDOUT or STDERR
    time: str  # RFC 3339 with nanoseconds, as written
    data: bytes

    def timestamp(self) -> float:
        return parse_time(self.time)


def parse_time(text: str) -> float:
    """RFC 3339 (UTC, `Z`) with up to nanoseconds, as seconds since the epoch."""
    base, _, frac = text.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(base + "+00:00").timestamp()
    return seconds + (float("0." + frac) if frac else 0.0)


def parse_since(text: str | None) -> float:
    """Docker's `since`/`until` argument: UNIX seconds (with fractions) or RFC 3339;
    0 when unset. ValueError names a bad one."""
    if not text:
        return 0.0
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_time(text)
    except ValueError:
        raise ValueError(f"invalid time {text!r}") from None


def frame(stream: int, data: bytes) -> bytes:
    """Docker's stdcopy header: stream byte, three zero bytes, big-endian length."""
    return struct.pack(">BxxxI", stream, len(data)) + data


def details(attrs: Mapping[str, str]) -> str:
    """A line's attributes as the Engine API sends them (`details=1`)."""
    return ",".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in sorted(attrs.items()))


def parse_details(text: str) -> dict[str, str]:
    """`details` read back (as the docker CLI reads a line's context)."""
    out = {}
    for pair in text.split(",") if text else []:
        key, _, value = pair.partition("=")
        out[unquote_plus(key)] = unquote_plus(value)
    return out


def split_line(data: bytes, *, timestamps: bool) -> tuple[bytes, dict[str, str], bytes]:
    """A line sent with details: (its timestamp or b"", its attributes, the data)."""
    stamp = b""
    if timestamps:
        stamp, _, data = data.partition(b" ")
    attrs, _, message = data.partition(b" ")
    return stamp, parse_details(attrs.decode(errors="replace")), message


def render(line: LogLine, *, timestamps: bool, tty: bool, attrs: str | None = None) -> bytes:
    """One line on the wire; `attrs` (from `details`) when the client asked for details."""
    data = line.data
    if attrs is not None:
        data = attrs.encode() + b" " + data
    if timestamps:
        data = line.time.encode() + b" " + data
    return data if tty else frame(line.stream, data)


class ContainerLogs(Protocol):
    def history(
        self, container_id: str, *, since: float, until: float, tail: int | None
    ) -> list[LogLine]:
        """Both streams' lines, oldest first, within since/until (0: unbounded), the
        last `tail` of them (None: all). LookupError when there is no such container."""
        ...

    def follow(
        self, container_id: str, more: Callable[[], bool], *, from_start: bool = False
    ) -> Iterator[LogLine]:
        """The lines written from now on (or all its lines, `from_start`: a container
        that started after the client came), until the container stops or `more()` is
        false. LookupError when there is no such container."""
        ...
