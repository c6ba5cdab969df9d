"""Durations and byte sizes as Compose files write them.

- Durations are Go's `time.ParseDuration` (what compose-go uses): a sequence of decimal
  numbers with units `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h` — `1m30s`, `1.5s`, `500ms`,
  `-1s`; a bare `0` is zero. compose-go also reads a bare number (YAML int) as seconds.
  `format_duration` writes them back as Go's `Duration.String()` does (`1m30s`, `500ms`).
- Byte sizes are go-units' `RAMInBytes`: a number with an optional binary unit `b`, `k`,
  `m`, `g`, `t`, `p` (optionally followed by `b`/`ib`), case-insensitive — `512m`, `1gb`,
  `1.5g`; a YAML int is a number of bytes.
"""

from __future__ import annotations

import re

__all__ = ["UnitError", "format_duration", "parse_bytes", "parse_duration"]


class UnitError(ValueError):
    """A duration or size that does not parse; the message says what was expected."""


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NANOS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_duration(value: object) -> int:
    """A Compose duration → nanoseconds (int); UnitError when it is not one."""
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a duration")
    if isinstance(value, int):
        return value * 1_000_000_000
    if isinstance(value, float):
        return round(value * 1_000_000_000)
    if not isinstance(value, str):
        raise UnitError(f"{value!r} is not a duration")
    text = value.strip()
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body == "0":
        return 0
    if not body:
        raise UnitError(f"{value!r} is not a duration (e.g. 30s, 1m30s, 500ms)")
    total = 0.0
    pos = 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _NANOS[match.group(2)]
        pos = match.end()
    if pos != len(body):
        raise UnitError(f"{value!r} is not a duration (e.g. 30s, 1m30s, 500ms)")
    return sign * round(total)


def format_duration(nanos: int) -> str:
    """Nanoseconds → Go's Duration.String(): `1h2m3.5s`, `500ms`, `0s`."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    n = abs(nanos)
    if n < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if n >= size:
                return sign + _decimal(n, size) + unit
    hours, rest = divmod(n, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = sign
    if hours:
        text += f"{hours}h"
    if hours or minutes:
        text += f"{minutes}m"
    return text + _decimal(rest, 1_000_000_000) + "s"


def _decimal(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?", re.IGNORECASE)
_SCALE = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_bytes(value: object) -> int:
    """A Compose byte size → bytes; UnitError when it is not one."""
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a size")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if not isinstance(value, str):
        raise UnitError(f"{value!r} is not a size")
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise UnitError(f"{value!r} is not a size (e.g. 512m, 1g, 1024)")
    return int(float(match.group(1)) * _SCALE[match.group(2).lower()])
