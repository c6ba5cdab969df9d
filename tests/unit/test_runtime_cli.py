"""The runc-compatible command line: parsing, signals, ids, exec's process."""

from __future__ import annotations

import pytest

from agent.runtime.cli import _FLAGS, _GLOBAL, UsageError, build_exec_process, parse
from agent.runtime.runtime import parse_signal, valid_id
from orchestr.__main__ import _command_index


def test_parse_runc_shapes() -> None:
    opts, rest = parse(["--bundle", "/b", "--pid-file=/p", "c1"], _FLAGS["create"])
    assert opts == {"bundle": "/b", "pid_file": "/p"}
    assert rest == ["c1"]
    opts, rest = parse(["-b", "/b", "-d", "c1"], _FLAGS["run"])
    assert opts == {"bundle": "/b", "detach": True} and rest == ["c1"]


def test_exec_stops_at_the_first_positional() -> None:
    opts, rest = parse(["-e", "A=1", "--env", "B=2", "-t", "c1", "sh", "-c", "x"], _FLAGS["exec"])
    assert opts == {"env": ["A=1", "B=2"], "tty": True}
    assert rest == ["c1", "sh", "-c", "x"]


def test_global_single_dash_long_flag() -> None:
    opts, rest = parse(["-root", "/r", "state", "c"], _GLOBAL)
    assert opts == {"root": "/r"} and rest == ["state", "c"]


def test_unknown_flag_and_missing_value() -> None:
    with pytest.raises(UsageError, match="flag provided but not defined: --nope"):
        parse(["--nope", "c1"], _FLAGS["create"])
    with pytest.raises(UsageError, match="needs an argument"):
        parse(["--bundle"], _FLAGS["create"])


@pytest.mark.parametrize(
    ("text", "number"),
    [("KILL", 9), ("SIGKILL", 9), ("9", 9), ("term", 15), ("SIGRTMIN+3", 37), ("WINCH", 28)],
)
def test_parse_signal(text: str, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["NOPE", "0", "65", "RTMIN+40", ""])
def test_parse_signal_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="unknown signal"):
        parse_signal(text)


@pytest.mark.parametrize(
    ("cid", "ok"),
    [
        ("a", True),
        ("web_1.x-y+z", True),
        ("..", False),
        ("a/b", False),
        ("", False),
        ("a b", False),
    ],
)
def test_valid_id(cid: str, ok: bool) -> None:
    assert valid_id(cid) is ok


def test_exec_process_is_the_containers_with_overrides() -> None:
    config = {
        "process": {
            "args": ["sh"],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
            "terminal": True,
        }
    }
    opts = {"env": ["A=1"], "cwd": "/tmp", "user": "1000:1001", "cap": ["CAP_NET_RAW"]}
    p = build_exec_process(config, opts, ["id"])
    assert p["args"] == ["id"]
    assert p["env"] == ["PATH=/bin", "A=1"]
    assert p["cwd"] == "/tmp"
    assert p["user"] == {"uid": 1000, "gid": 1001}
    assert p["terminal"] is False
    assert p["capabilities"]["bounding"] == ["CAP_KILL", "CAP_NET_RAW"]  # type: ignore[index]
    assert config["process"]["env"] == ["PATH=/bin"]  # the container's config is untouched


def test_exec_user_must_be_numeric() -> None:
    with pytest.raises(UsageError, match="UID"):
        build_exec_process({"process": {}}, {"user": "root"}, ["id"])


@pytest.mark.parametrize(
    ("argv", "index"),
    [
        (["runtime", "list"], 0),
        (["-H", "unix:///x", "runtime"], 2),
        (["--debug", "up"], 1),
        (["--host=tcp://h:1", "-Hx", "ps"], 2),
    ],
)
def test_command_index_skips_global_options(argv: list[str], index: int) -> None:
    assert _command_index(argv) == index


def test_os_errors_read_as_one_line() -> None:
    from agent.runtime.cli import describe_os_error

    e = PermissionError(13, "Permission denied", "/run/orchestr")
    text = describe_os_error(e)
    assert text.startswith("/run/orchestr: Permission denied")
    assert "[Errno" not in text
    assert describe_os_error(OSError(5, "Input/output error")) == "Input/output error"
