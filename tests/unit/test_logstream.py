"""The Engine API's log lines: framing, timestamps, details (a line's context) and
reading them back as the docker CLI does."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from orchestr.api.logstream import (
    STDERR,
    STDOUT,
    LogLine,
    details,
    parse_details,
    parse_since,
    render,
    split_line,
)

LINE = LogLine(STDOUT, "2026-11-29T01:02:03.123456789Z", b"hello world\n")


def test_a_plain_line_is_one_stdcopy_frame() -> None:
    data = render(LINE, timestamps=False, tty=False)
    assert data == struct.pack(">BxxxI", 1, 12) + b"hello world\n"
    assert render(LogLine(STDERR, LINE.time, b"x"), timestamps=False, tty=False)[0] == 2


def test_timestamps_then_details_then_the_data() -> None:
    attrs = details({"com.docker.swarm.task.id": "t1", "com.docker.swarm.node.id": "n 1"})
    assert attrs == "com.docker.swarm.node.id=n+1,com.docker.swarm.task.id=t1"
    data = render(LINE, timestamps=True, tty=True, attrs=attrs)
    assert data == (
        b"2026-11-29T01:02:03.123456789Z com.docker.swarm.node.id=n+1,"
        b"com.docker.swarm.task.id=t1 hello world\n"
    )
    stamp, parsed, message = split_line(data, timestamps=True)
    assert stamp == b"2026-11-29T01:02:03.123456789Z"
    assert parsed == {"com.docker.swarm.node.id": "n 1", "com.docker.swarm.task.id": "t1"}
    assert message == b"hello world\n"


def test_details_without_attributes_leave_a_leading_space_as_dockerd_does() -> None:
    assert render(LINE, timestamps=False, tty=True, attrs="") == b" hello world\n"
    assert split_line(b" hello", timestamps=False) == (b"", {}, b"hello")


@given(
    st.dictionaries(
        st.text(min_size=1).filter(lambda k: "=" not in k),
        st.text(),
        max_size=4,
    )
)
def test_details_read_back_as_written(attrs: dict[str, str]) -> None:
    text = details(attrs)
    assert " " not in text
    assert parse_details(text) == attrs


def test_since_takes_unix_seconds_or_rfc3339() -> None:
    assert parse_since(None) == 0.0
    assert parse_since("1700000000.5") == 1700000000.5
    assert parse_since("1970-01-01T00:00:10.25Z") == 10.25
    try:
        parse_since("yesterday")
    except ValueError as e:
        assert "yesterday" in str(e)
    else:
        raise AssertionError("a bad time was taken")
