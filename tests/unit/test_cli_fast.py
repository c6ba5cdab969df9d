"""The lean `run` path: it reads arguments exactly as the click command does, or
hands them back; it parses Docker's multiplexed frames; it starts nothing heavy."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from orchestr.__main__ import _host_flag
from orchestr.cli.containers import run as click_run
from orchestr.cli.fast import FrameSplitter, parse_run
from orchestr.cli.runspec import create_body

pytestmark = pytest.mark.unit

SAME_AS_CLICK = [
    ["busybox"],
    ["busybox", "echo", "hi", "-n"],
    ["--rm", "busybox", "true"],
    ["-d", "--name", "web", "busybox", "httpd", "-f"],
    ["-e", "A=1", "-eB=2", "--env=C=3", "--env", "D=4", "busybox"],
    ["-dit", "busybox"],
    ["--rm", "-v", "/a:/b:ro", "--mount", "type=tmpfs,target=/t,tmpfs-size=1m", "busybox"],
    ["-m", "64m", "--cpus", "0.5", "--pids-limit", "20", "--read-only", "busybox", "sh"],
    ["--restart=on-failure:3", "-u", "1000:1000", "-w", "/tmp", "--entrypoint", "", "busybox"],
    ["-l", "a=b", "--label", "c", "--cap-add", "NET_ADMIN", "--cap-drop=ALL", "busybox"],
    ["--network", "host", "-h", "box", "--tmpfs", "/run:size=1m", "busybox", "--rm"],
    ["-p", "8080:80", "-p127.0.0.1::53/udp", "-P", "--expose", "90-91", "busybox"],
    ["--net=n1", "--network-alias", "web", "--ip", "10.0.0.9", "--dns", "10.0.0.2", "busybox"],
    ["--add-host", "db:10.0.0.3", "-dP", "busybox"],
]


def test_network_options_make_docker_shapes() -> None:
    parsed = parse_run(
        ["-p", "8080:80", "--expose", "90/udp", "--network", "n1", "--network-alias", "a",
         "--ip", "10.1.0.5", "busybox"]
    )  # fmt: skip
    assert parsed is not None
    options, image, command = parsed
    body = create_body(image, command, options)
    assert body["ExposedPorts"] == {"80/tcp": {}, "90/udp": {}}
    assert body["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert body["NetworkingConfig"] == {
        "EndpointsConfig": {"n1": {"Aliases": ["a"], "IPAMConfig": {"IPv4Address": "10.1.0.5"}}}
    }


def click_params(argv: list[str]) -> dict[str, Any]:
    ctx = click_run.make_context("run", list(argv))
    return dict(ctx.params)


@pytest.mark.parametrize("argv", SAME_AS_CLICK, ids=" ".join)
def test_reads_arguments_as_click_does(argv: list[str]) -> None:
    parsed = parse_run(argv)
    assert parsed is not None
    options, image, command = parsed
    params = click_params(argv)
    assert image == params.pop("image")
    assert tuple(command) == params.pop("command")
    assert options == params
    assert create_body(image, command, options) == create_body(image, tuple(command), params)


@pytest.mark.parametrize(
    "argv",
    [
        [],  # no image: click says so
        ["--rm"],
        ["--help", "busybox"],
        ["--no-such-flag", "busybox"],
        ["-X", "busybox"],
        ["--rm=yes", "busybox"],  # a flag with a value
        ["--cpus", "lots", "busybox"],  # click names the bad value
        ["--pids-limit", "1.5", "busybox"],
        ["--name"],  # a value missing
        ["-e"],
    ],
)
def test_hands_back_what_it_does_not_read(argv: list[str]) -> None:
    assert parse_run(argv) is None


def test_frames_split_across_reads() -> None:
    seen: list[tuple[int, bytes]] = []
    frames = FrameSplitter(lambda stream, data: seen.append((stream, data)))
    wire = b"\x01\x00\x00\x00\x00\x00\x00\x03out" + b"\x02\x00\x00\x00\x00\x00\x00\x04err\n"
    for i in range(len(wire)):
        frames.feed(wire[i : i + 1])
    assert seen == [(1, b"out"), (2, b"err\n")]
    assert frames.buffer == b""


def test_host_flag_is_the_last_global_one() -> None:
    assert _host_flag([]) is None
    assert _host_flag(["-H", "unix:///a"]) == "unix:///a"
    assert _host_flag(["--host=unix:///b", "--debug"]) == "unix:///b"
    assert _host_flag(["-Hunix:///c", "-H", "/d"]) == "/d"


def test_the_fast_path_loads_nothing_heavy() -> None:
    code = (
        "import sys; from orchestr.cli import fast; "
        "heavy = {'click', 'httpx', 'pydantic', 'rich', 'typing', 're', 'dataclasses'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {sys.path!r}; {code}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "[]"
