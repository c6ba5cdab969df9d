"""Docker's json-file log format: line splitting, entry encoding, rotation.

Pure parts (`LineSplitter`, `encode_entry`, `rfc3339_nano`, `should_rotate`,
`rotation_plan`) are unit-tested; `JsonFileLog` applies them to a file.
"""

from __future__ import annotations

import _json
import os
import time

MAX_LINE = 16 * 1024  # Docker splits longer lines (and flushes partial ones) at 16 KiB

_escape = _json.encode_basestring_ascii
_STREAM_NAMES = {1: "stdout", 2: "stderr"}
_last_second: tuple[int, str] = (-1, "")


def rfc3339_nano(ns: int | None = None) -> str:
    """UTC time with nanoseconds, Docker's way: 2024-05-01T12:00:00.123456789Z."""
    global _last_second
    if ns is None:
        ns = time.time_ns()
    seconds, frac = divmod(ns, 1_000_000_000)
    if _last_second[0] != seconds:  # strftime once per second, not once per line
        _last_second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{_last_second[1]}.{frac:09d}Z"


def encode_entry(data: bytes, stream: int, when: str) -> bytes:
    """One json-file line: {"log": ..., "stream": ..., "time": ...}\\n.

    Bytes that are not UTF-8 become U+FFFD, as Docker's (Go's) encoder does.
    """
    text = _escape(data.decode("utf-8", errors="replace"))
    name = _STREAM_NAMES[stream]
    return f'{{"log":{text},"stream":"{name}","time":"{when}"}}\n'.encode()


class LineSplitter:
    """Cuts a byte stream into log messages: whole lines (with their newline),
    and pieces of MAX_LINE bytes of a longer line. `flush` gives what is left."""

    __slots__ = ("buffer", "limit")

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.buffer = b""
        self.limit = limit

    def feed(self, data: bytes) -> list[bytes]:
        buf = self.buffer + data if self.buffer else data
        out: list[bytes] = []
        start = 0
        limit = self.limit
        while True:
            nl = buf.find(b"\n", start, start + limit)
            if nl >= 0:
                out.append(buf[start : nl + 1])
                start = nl + 1
            elif len(buf) - start >= limit:
                out.append(buf[start : start + limit])
                start += limit
            else:
                break
        self.buffer = buf[start:]
        return out

    def flush(self) -> list[bytes]:
        rest, self.buffer = self.buffer, b""
        return [rest] if rest else []


def should_rotate(current_size: int, entry_size: int, max_size: int | None) -> bool:
    """Rotate before writing an entry that would take a non-empty file past max_size."""
    return max_size is not None and current_size > 0 and current_size + entry_size > max_size


def rotation_plan(path: str, max_files: int) -> list[tuple[str, str | None]]:
    """The renames that rotate `path`, keeping `max_files` files in all.

    (src, dst) pairs in order; dst None means remove src. With max_files 1 the
    log is removed (a fresh one starts); with 3: log.1 → log.2, log → log.1
    (the old log.2 is overwritten by the rename).
    """
    if max_files <= 1:
        return [(path, None)]
    plan: list[tuple[str, str | None]] = [
        (f"{path}.{i - 1}", f"{path}.{i}") for i in range(max_files - 1, 1, -1)
    ]
    plan.append((path, f"{path}.1"))
    return plan


class JsonFileLog:
    """A container's json-file log: appends entries, rotates by size."""

    __slots__ = ("fd", "max_files", "max_size", "path", "size")

    def __init__(self, path: str, max_size: int | None = None, max_files: int = 1) -> None:
        self.path = path
        self.max_size = max_size
        self.max_files = max(1, max_files)
        self.fd = -1
        self.size = 0
        self._open()

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self.fd = os.open(self.path, flags, 0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, messages: list[bytes], stream: int, when: str | None = None) -> None:
        if not messages or self.fd < 0:
            return
        when = when or rfc3339_nano()
        pending = bytearray()
        for message in messages:
            entry = encode_entry(message, stream, when)
            if should_rotate(self.size + len(pending), len(entry), self.max_size):
                self._append(pending)
                pending.clear()
                self._rotate()
            pending += entry
        self._append(pending)

    def _append(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.size += n

    def _rotate(self) -> None:
        os.close(self.fd)
        self.fd = -1
        for src, dst in rotation_plan(self.path, self.max_files):
            try:
                if dst is None:
                    os.unlink(src)
                else:
                    os.rename(src, dst)
            except FileNotFoundError:
                pass
        self._open()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
