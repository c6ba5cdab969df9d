"""Durations (Go's time.ParseDuration) and byte sizes (go-units RAMInBytes)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestr.stack.units import UnitError, format_duration, parse_bytes, parse_duration


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("30s", 30_000_000_000),
        ("1m30s", 90_000_000_000),
        ("1.5s", 1_500_000_000),
        ("500ms", 500_000_000),
        ("1h2m3s", 3_723_000_000_000),
        ("0", 0),
        ("-1s", -1_000_000_000),
        ("10us", 10_000),
        ("10µs", 10_000),
        ("3ns", 3),
        (".5s", 500_000_000),
        (10, 10_000_000_000),
    ],
)
def test_durations(text: object, nanos: int) -> None:
    assert parse_duration(text) == nanos


@pytest.mark.parametrize("text", ["", "10", "1x", "s", "1s2", "1 s", "abc", True, None, [1]])
def test_bad_durations(text: object) -> None:
    with pytest.raises(UnitError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("nanos", "text"),
    [
        (0, "0s"),
        (90_000_000_000, "1m30s"),
        (1_500_000_000, "1.5s"),
        (500_000_000, "500ms"),
        (3_600_000_000_000, "1h0m0s"),
        (1_000, "1µs"),
        (-2_000_000_000, "-2s"),
    ],
)
def test_format_is_gos(nanos: int, text: str) -> None:
    assert format_duration(nanos) == text


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_format_round_trips(nanos: int) -> None:
    assert parse_duration(format_duration(nanos)) == nanos


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512m", 512 << 20),
        ("1g", 1 << 30),
        ("1GB", 1 << 30),
        ("1.5g", 3 << 29),
        ("100", 100),
        ("64k", 65536),
        ("2mib", 2 << 20),
        (1024, 1024),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize("text", ["", "m", "12q", "-1m", True])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(UnitError):
        parse_bytes(text)
