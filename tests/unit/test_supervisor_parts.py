"""The supervisor's pure parts: json-file lines, 16 KiB splitting, rotation, frames, records."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from agent.supervisor.__main__ import parse_args
from agent.supervisor.frames import FrameDecoder, encode_frame
from agent.supervisor.logs import (
    MAX_LINE,
    JsonFileLog,
    LineSplitter,
    encode_entry,
    rfc3339_nano,
    rotation_plan,
    should_rotate,
)
from agent.supervisor.records import Record, TransitionError, load, save

# -- log lines --------------------------------------------------------------------------


def test_entry_is_dockers_json_file_line() -> None:
    line = encode_entry(b'say "hi"\n', 1, "2024-01-02T03:04:05.000000006Z")
    assert line.endswith(b"\n")
    assert json.loads(line) == {
        "log": 'say "hi"\n',
        "stream": "stdout",
        "time": "2024-01-02T03:04:05.000000006Z",
    }
    assert json.loads(encode_entry(b"\xff\xfe", 2, "t")) == {
        "log": "\ufffd\ufffd",
        "stream": "stderr",
        "time": "t",
    }


def test_rfc3339_nano() -> None:
    assert rfc3339_nano(1_700_000_000_000_000_042) == "2023-11-14T22:13:20.000000042Z"
    now = rfc3339_nano()
    assert len(now) == 30 and now.endswith("Z")
    time.strptime(now[:19], "%Y-%m-%dT%H:%M:%S")


def test_splitter_gives_whole_lines_and_keeps_the_rest() -> None:
    s = LineSplitter()
    assert s.feed(b"a\nb") == [b"a\n"]
    assert s.feed(b"c\n\nd") == [b"bc\n", b"\n"]
    assert s.flush() == [b"d"]
    assert s.flush() == []


def test_splitter_cuts_at_16k() -> None:
    s = LineSplitter()
    assert s.feed(b"x" * (MAX_LINE - 1)) == []
    assert s.feed(b"xx") == [b"x" * MAX_LINE]
    assert s.feed(b"\n") == [b"x\n"]
    long_line = b"y" * (2 * MAX_LINE + 5) + b"\n"
    assert [len(p) for p in s.feed(long_line)] == [MAX_LINE, MAX_LINE, 6]
    # a line of exactly 16 KiB with its newline is one piece
    assert s.feed(b"z" * (MAX_LINE - 1) + b"\n") == [b"z" * (MAX_LINE - 1) + b"\n"]


# -- rotation ---------------------------------------------------------------------------


def test_rotation_decision() -> None:
    assert not should_rotate(0, 500, None)
    assert not should_rotate(900, 100, 1000)
    assert should_rotate(901, 100, 1000)
    assert not should_rotate(0, 5000, 1000)  # an empty file takes one entry, however big


def test_rotation_plan() -> None:
    assert rotation_plan("/l", 1) == [("/l", None)]
    assert rotation_plan("/l", 2) == [("/l", "/l.1")]
    assert rotation_plan("/l", 4) == [("/l.2", "/l.3"), ("/l.1", "/l.2"), ("/l", "/l.1")]


def test_json_file_log_rotates(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = JsonFileLog(str(path), max_size=300, max_files=2)
    for i in range(20):
        log.write([f"line {i}\n".encode()], 1, "2024-01-01T00:00:00.000000000Z")
    log.close()
    assert sorted(os.listdir(tmp_path)) == ["c.log", "c.log.1"]
    for p in (path, tmp_path / "c.log.1"):
        assert 0 < p.stat().st_size <= 300
    assert json.loads(path.read_text().splitlines()[-1])["log"] == "line 19\n"


def test_json_file_log_with_one_file_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = JsonFileLog(str(path), max_size=200, max_files=1)
    for i in range(10):
        log.write([f"line {i}\n".encode()], 2)
    log.close()
    assert os.listdir(tmp_path) == ["c.log"]
    assert path.stat().st_size <= 200


# -- frames -----------------------------------------------------------------------------


def test_frame_encoding() -> None:
    assert encode_frame(1, b"hi") == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"
    assert encode_frame(2, b"") == b"\x02" + b"\x00" * 7
    big = encode_frame(2, b"x" * 70000)
    assert big[:8] == b"\x02\x00\x00\x00\x00\x01\x11\x70"


def test_frame_decoder_takes_bytes_as_they_come() -> None:
    stream = encode_frame(1, b"abc") + encode_frame(2, b"de")
    d = FrameDecoder()
    out = []
    for i in range(len(stream)):
        out.extend(d.feed(stream[i : i + 1]))
    assert out == [(1, b"abc"), (2, b"de")]
    assert d.buffer == b""


# -- records ----------------------------------------------------------------------------


def test_record_moves_forward_only() -> None:
    r = Record("c", 42, 1000, "/log", "t0")
    assert r.status == "created"
    r.mark_started("t1")
    with pytest.raises(TransitionError):
        r.mark_started("t2")
    r.mark_exited(3, False, "t3")
    assert (r.status, r.exit_code, r.finished_at, r.lost) == ("exited", 3, "t3", False)
    with pytest.raises(TransitionError):
        r.mark_exited(0, False, "t4")
    with pytest.raises(TransitionError):
        r.mark_lost("t4")


def test_created_container_may_exit_before_start() -> None:
    r = Record("c", 42, 1000, "/log", "t0")
    r.mark_exited(137, True, "t1")
    assert (r.status, r.exit_code, r.oom_killed, r.started_at) == ("exited", 137, True, "")


def test_adopted_record_ends_lost() -> None:
    r = Record("c", 42, 1000, "/log", "t0")
    r.mark_started("t1")
    r.adopt()
    r.mark_lost("t2")
    doc = r.to_json()
    assert doc["status"] == "exited" and doc["exit_code"] is None
    assert doc["adopted"] is True and doc["lost"] is True


def test_record_round_trips_through_its_file(tmp_path: Path) -> None:
    r = Record("c", 42, 1000, "/log", "t0", stdin=True)
    r.mark_started("t1")
    path = str(tmp_path / "state.json")
    save(path, r.to_json())
    assert not os.path.exists(path + ".tmp")
    again = load(path)
    assert again.to_json() == r.to_json()
    doc = json.loads(Path(path).read_text())
    for key in ("id", "pid", "status", "exit_code", "oom_killed", "created_at", "started_at",
                "finished_at", "log_path"):  # fmt: skip
        assert key in doc
    with pytest.raises(ValueError):
        Record.from_json({**doc, "status": "weird"})


# -- command line -----------------------------------------------------------------------


def test_parse_args() -> None:
    assert parse_args(["--root", "/r", "--socket=/s", "--runtime-root", "/rt"]) == {
        "root": "/r",
        "socket": "/s",
        "runtime-root": "/rt",
    }
    with pytest.raises(ValueError, match="--socket is required"):
        parse_args(["--root", "/r"])
    with pytest.raises(ValueError, match="unknown argument"):
        parse_args(["--root", "/r", "--socket", "/s", "--debug"])
    with pytest.raises(ValueError, match="needs a value"):
        parse_args(["--root"])


# -- exec and tty helpers -----------------------------------------------------------------


def test_check_process_copies_and_sets_terminal() -> None:
    from agent.supervisor.execs import check_process

    given: dict[str, object] = {"args": ["sh"], "env": ["A=1"], "user": {"uid": 1, "gid": 2}}
    out = check_process(given, tty=True)
    assert out == {**given, "terminal": True, "cwd": "/"}
    assert "terminal" not in given
    assert check_process({"args": ["ls"], "terminal": True}, tty=False)["terminal"] is False


@pytest.mark.parametrize(
    ("process", "message"),
    [
        (None, "process: an object"),
        ({}, "process.args"),
        ({"args": []}, "process.args"),
        ({"args": ["sh", 1]}, "process.args"),
        ({"args": [""]}, "command is empty"),
        ({"args": ["sh"], "env": "A=1"}, "process.env"),
        ({"args": ["sh"], "cwd": "tmp"}, "process.cwd"),
        ({"args": ["sh"], "user": {"uid": -1}}, "process.user.uid"),
        ({"args": ["sh"], "user": {"gid": True}}, "process.user.gid"),
    ],
)
def test_check_process_refuses(process: object, message: str) -> None:
    from agent.supervisor.execs import InvalidRequest, check_process

    with pytest.raises(InvalidRequest, match=message):
        check_process(process, tty=False)


def test_window_size_and_winsize() -> None:
    import struct

    from agent.supervisor.execs import InvalidRequest, window_size, winsize

    assert window_size({"height": 30, "width": 100}) == (30, 100)
    for bad in ({"height": 30}, {"height": -1, "width": 1}, {"height": 1, "width": 65536}):
        with pytest.raises(InvalidRequest):
            window_size(bad)
    with pytest.raises(InvalidRequest, match="height"):
        window_size({"height": True, "width": 1})
    assert struct.unpack("HHHH", winsize(30, 100)) == (30, 100, 0, 0)


def test_bundle_terminal(tmp_path: Path) -> None:
    from agent.supervisor.execs import bundle_config, bundle_terminal

    def terminal() -> bool:
        return bundle_terminal(bundle_config(str(tmp_path)))

    assert bundle_config(str(tmp_path)) == {}  # no config.json
    assert terminal() is False
    (tmp_path / "config.json").write_text('{"process": {"terminal": true}}')
    assert terminal() is True
    (tmp_path / "config.json").write_text('{"process": {"terminal": false}}')
    assert terminal() is False
    (tmp_path / "config.json").write_text("not json")
    assert terminal() is False
    (tmp_path / "config.json").write_text("[1]")
    assert bundle_config(str(tmp_path)) == {}


def test_record_keeps_tty(tmp_path: Path) -> None:
    rec = Record("c1", 42, 7, "/l", "2024-01-01T00:00:00.000000000Z", stdin=True, tty=True)
    save(str(tmp_path / "s.json"), rec.to_json())
    again = load(str(tmp_path / "s.json"))
    assert (again.stdin, again.tty) == (True, True)
    assert Record.from_json({"id": "c2", "status": "created"}).tty is False
