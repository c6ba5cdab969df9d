"""Service and task logs, read with the docker CLI and with orchestr: each line after
the task that wrote it, per-task tail, a task's own logs, and following a service while
it scales up (the new task's lines join the stream)."""

from __future__ import annotations

import re
import socket
import subprocess
import time

import pytest

from tests.conftest import Daemon
from tests.integration.test_daemon_images import docker_cli, orchestr
from tests.integration.test_daemon_networks import net
from tests.integration.test_services import replicas, tasks, until

__all__ = ["net"]

pytestmark = [pytest.mark.root, pytest.mark.netns]

SCRIPT = 'echo "hello"; echo "oops" >&2; while true; do sleep 0.3; echo tick; done'


def talk(d: Daemon, n: int) -> None:
    """A service `talk` of `n` tasks, each saying hello (and oops on stderr), then tick."""
    docker_cli(
        d, "service", "create", "--detach", "--name", "talk", "--replicas", str(n),
        "--stop-grace-period", "1s", "busybox:latest", "sh", "-c", SCRIPT,
    )  # fmt: skip
    until(f"{n} tasks running", lambda: replicas(d, "talk") == f"{n}/{n}")


def test_service_logs_name_each_line_after_its_task(net: Daemon) -> None:
    d = net
    talk(d, 2)
    host = socket.gethostname()  # the daemon's netns shares the machine's UTS namespace
    ids = {t["Name"]: t["ID"] for t in tasks(d, "talk")}
    assert sorted(ids) == ["talk.1", "talk.2"]

    out = docker_cli(d, "service", "logs", "talk")
    for name, task_id in ids.items():
        prefix = rf"^{re.escape(name)}\.{task_id[:12]}@{re.escape(host)}\s+\| "
        assert re.search(prefix + "hello$", out.stdout, re.M), out.stdout
        assert re.search(prefix + "oops$", out.stderr, re.M), out.stderr
    # Past lines in time order: each task's "hello" comes before its ticks.
    assert out.stdout.splitlines()[0].endswith("| hello")

    # Raw: the lines alone; --tail counts per task; a task's ID gives its logs alone.
    raw = docker_cli(d, "service", "logs", "--raw", "talk").stdout.splitlines()
    assert raw.count("hello") == 2 and "oops" not in raw
    more = docker_cli(d, "service", "logs", "--tail", "1000", "--raw", "talk").stdout
    assert more.splitlines().count("hello") == 2  # a tail longer than the log: all of it
    tail = docker_cli(d, "service", "logs", "--tail", "1", "-t", "talk")
    last = (tail.stdout + tail.stderr).splitlines()  # the last line may be "oops" (stderr)
    assert len(last) == 2 and all(re.match(r"^\d{4}-\d\d-\d\dT\S+Z talk\.\d", x) for x in last)
    one = docker_cli(d, "service", "logs", "--no-trunc", ids["talk.2"]).stdout
    assert f"talk.2.{ids['talk.2']}@" in one and "talk.1." not in one

    # orchestr shows them the same way.
    ours = orchestr(d, "service", "logs", "talk")
    assert re.search(rf"^talk\.1\.{ids['talk.1'][:12]}@\S+\s+\| hello$", ours.stdout, re.M)
    assert "| oops" in ours.stderr
    gone = orchestr(d, "service", "logs", "nope", check=False)
    assert gone.returncode != 0 and "no such service or task: nope" in gone.stderr


def test_following_a_service_shows_tasks_that_start_later(net: Daemon) -> None:
    d = net
    talk(d, 1)
    follow = subprocess.Popen(
        ["docker", "service", "logs", "-f", "--tail", "0", "talk"],
        env=d.env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        docker_cli(d, "service", "scale", "--detach", "talk=2")
        seen: list[str] = []
        deadline = time.monotonic() + 30
        assert follow.stdout is not None
        while time.monotonic() < deadline:
            line = follow.stdout.readline().decode()
            seen.append(line)
            if line.startswith("talk.2.") and line.rstrip().endswith("| hello"):
                break
        else:
            raise AssertionError(f"no line of the new task in {seen[-5:]}")
        assert any(x.startswith("talk.1.") and x.rstrip().endswith("| tick") for x in seen)
    finally:
        follow.kill()
        follow.wait()
