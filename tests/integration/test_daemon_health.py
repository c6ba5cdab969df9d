"""Health checks, --init and --ulimit through a real daemon, judged by the docker CLI:
inspect's State.Health, ps's status, the event stream, the health filter, the
image's HEALTHCHECK, and orchestr's on-failure label."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, start_daemon
from tests.integration.test_daemon_images import docker_cli, orchestr

FAST = ("--health-interval", "200ms", "--health-timeout", "2s")


@pytest.fixture
def busybox(daemon: Daemon, busybox_rootfs: Path) -> Daemon:
    tar = daemon.state_dir / "busybox.tar"
    subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", str(tar), "."], check=True)
    docker_cli(daemon, "import", str(tar), "busybox:latest")
    return daemon


def state(d: Daemon, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(docker_cli(d, "inspect", name).stdout)[0]
    return doc


def wait_for(d: Daemon, name: str, status: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc = state(d, name)
        health = doc["State"].get("Health") or {}
        if health.get("Status") == status:
            return doc
        assert time.monotonic() < deadline, doc["State"]
        time.sleep(0.1)


def events(d: Daemon, since: float, name: str) -> list[str]:
    return docker_cli(
        d,
        "events",
        "--since",
        str(since),
        "--until",
        str(time.time() + 0.2),
        "--filter",
        f"container={name}",
        "--format",
        "{{.Action}}",
    ).stdout.splitlines()


def test_healthy_then_unhealthy(busybox: Daemon) -> None:
    since = time.time() - 1
    docker_cli(
        busybox,
        "run",
        "-d",
        "--name",
        "web",
        "--health-cmd",
        "cat /ok && echo fine",
        "--health-retries",
        "2",
        *FAST,
        "busybox",
        "sh",
        "-c",
        "touch /ok; exec sleep 1000",
    )
    listing = docker_cli(busybox, "ps", "--format", "{{.Status}}").stdout
    assert listing.strip().endswith("(health: starting)"), listing
    doc = wait_for(busybox, "web", "healthy")
    health = doc["State"]["Health"]
    assert health["FailingStreak"] == 0
    assert health["Log"][-1]["ExitCode"] == 0 and health["Log"][-1]["Output"] == "fine\n"
    assert doc["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "cat /ok && echo fine"]
    assert docker_cli(busybox, "ps", "--format", "{{.Status}}").stdout.strip().endswith("(healthy)")
    filtered = docker_cli(busybox, "ps", "-q", "--filter", "health=healthy").stdout.split()
    assert len(filtered) == 1
    assert docker_cli(busybox, "ps", "-q", "--filter", "health=unhealthy").stdout == ""

    docker_cli(busybox, "exec", "web", "rm", "/ok")
    doc = wait_for(busybox, "web", "unhealthy")
    health = doc["State"]["Health"]
    assert health["FailingStreak"] >= 2 and 1 <= len(health["Log"]) <= 5
    assert health["Log"][-1]["ExitCode"] == 1
    assert "No such file or directory" in health["Log"][-1]["Output"]
    assert (
        docker_cli(busybox, "ps", "--format", "{{.Status}}").stdout.strip().endswith("(unhealthy)")
    )
    assert orchestr(busybox, "ps").stdout.splitlines()[1].count("(unhealthy)") == 1
    actions = events(busybox, since, "web")
    assert "health_status: healthy" in actions and "health_status: unhealthy" in actions
    assert actions.index("health_status: healthy") < actions.index("health_status: unhealthy")
    assert any(a.startswith("exec_create: /bin/sh -c cat /ok") for a in actions)
    assert "exec_die" in actions

    docker_cli(busybox, "stop", "-t", "0", "web")
    stopped = state(busybox, "web")["State"]
    assert stopped["Health"]["Status"] == "unhealthy"  # dockerd's rule once probes stop
    log_length = len(stopped["Health"]["Log"])
    time.sleep(0.5)
    assert len(state(busybox, "web")["State"]["Health"]["Log"]) == log_length  # no probes
    docker_cli(busybox, "start", "web")
    assert state(busybox, "web")["State"]["Health"]["Status"] == "starting"
    docker_cli(busybox, "rm", "-f", "web")


def test_start_period_and_timeout(busybox: Daemon) -> None:
    # the docker CLI sends --health-start-interval only to API 1.44+; orchestr's run does
    orchestr(
        busybox,
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "test -f /ready",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "--health-start-period",
        "2s",
        "--health-start-interval",
        "100ms",
        "busybox",
        "sh",
        "-c",
        "sleep 1; touch /ready; exec sleep 1000",
    )
    time.sleep(0.7)
    early = state(busybox, "slow")["State"]["Health"]
    assert early["Status"] == "starting" and early["FailingStreak"] == 0  # failures not counted
    assert len(early["Log"]) >= 3  # every start interval (100ms) meanwhile
    wait_for(busybox, "slow", "healthy")
    docker_cli(busybox, "rm", "-f", "slow")

    docker_cli(
        busybox,
        "run",
        "-d",
        "--name",
        "stuck",
        "--health-cmd",
        "echo begun; sleep 5",
        "--health-interval",
        "100ms",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "1000",
    )
    doc = wait_for(busybox, "stuck", "unhealthy")
    last = doc["State"]["Health"]["Log"][-1]
    assert last["ExitCode"] == -1
    assert last["Output"] == "Health check exceeded timeout (300ms): begun\n"
    # Probes go on every 100 ms, each killed at 300 ms: after 1.5 s, killed probes would
    # have piled up; at most the one under way may be there (it was: a flaky check).
    time.sleep(1.5)
    top = docker_cli(busybox, "top", "stuck").stdout
    assert top.count("sleep 5") <= 1, top  # the probes were killed
    docker_cli(busybox, "rm", "-f", "stuck")


def test_image_healthcheck_inherited_and_disabled(busybox: Daemon) -> None:
    context = busybox.state_dir / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM busybox\n"
        "HEALTHCHECK --interval=200ms --timeout=2s --retries=1 CMD echo from-image\n"
        'CMD ["sleep", "1000"]\n'
    )
    docker_cli(busybox, "build", "-q", "-t", "checked", str(context))
    docker_cli(busybox, "run", "-d", "--name", "inherits", "checked")
    doc = wait_for(busybox, "inherits", "healthy")
    assert doc["State"]["Health"]["Log"][-1]["Output"] == "from-image\n"
    assert doc["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "echo from-image"]

    # the run's own fields win, the rest comes from the image
    docker_cli(busybox, "run", "-d", "--name", "mine", "--health-cmd", "echo mine", "checked")
    doc = wait_for(busybox, "mine", "healthy")
    assert doc["State"]["Health"]["Log"][-1]["Output"] == "mine\n"
    assert doc["Config"]["Healthcheck"]["Interval"] == 200_000_000

    docker_cli(busybox, "run", "-d", "--name", "unchecked", "--no-healthcheck", "checked")
    doc = state(busybox, "unchecked")
    assert "Health" not in doc["State"] and doc["Config"]["Healthcheck"]["Test"] == ["NONE"]
    status = docker_cli(
        busybox, "ps", "--filter", "name=unchecked", "--format", "{{.Status}}"
    ).stdout
    assert status.startswith("Up") and "health" not in status
    none = docker_cli(busybox, "ps", "-q", "--filter", "health=none").stdout.split()
    assert len(none) == 1

    bad = docker_cli(busybox, "run", "--rm", "--health-interval", "1us", "checked", check=False)
    assert bad.returncode != 0
    assert "Interval in Healthcheck cannot be less than 1ms" in bad.stderr
    docker_cli(busybox, "rm", "-f", "inherits", "mine", "unchecked")


def test_on_failure_restart_label(busybox: Daemon) -> None:
    since = time.time() - 1
    docker_cli(
        busybox,
        "run",
        "-d",
        "--name",
        "phoenix",
        "--label",
        "org.orchestr.health.on-failure=restart",
        "--health-cmd",
        "test -f /ok",
        *FAST,
        "--health-retries",
        "1",
        "--stop-timeout",
        "1",  # the restart stops it as `docker stop` would: sleep ignores SIGTERM
        "busybox",
        "sh",
        "-c",
        "echo run; exec sleep 1000",  # no /ok: unhealthy at the first probe
    )
    deadline = time.monotonic() + 20
    while True:
        doc = state(busybox, "phoenix")
        if doc["RestartCount"] >= 2:
            break
        assert time.monotonic() < deadline, doc["State"]
        time.sleep(0.1)
    assert doc["HostConfig"]["RestartPolicy"]["Name"] == "no"  # the label alone did it
    actions = events(busybox, since, "phoenix")
    assert "health_status: unhealthy" in actions and actions.count("start") >= 3
    docker_cli(busybox, "rm", "-f", "phoenix")

    bad = docker_cli(
        busybox,
        "run",
        "--rm",
        "--label",
        "org.orchestr.health.on-failure=reboot",
        "busybox",
        "true",
        check=False,
    )
    assert bad.returncode != 0 and "must be one of none, restart, stop, kill" in bad.stderr


def test_probes_resume_after_a_daemon_restart(busybox: Daemon, state_dir: Path) -> None:
    docker_cli(
        busybox,
        "run",
        "-d",
        "--name",
        "lasting",
        "--health-cmd",
        "true",
        *FAST,
        "busybox",
        "sleep",
        "1000",
    )
    wait_for(busybox, "lasting", "healthy")
    busybox.proc.terminate()  # a clean stop stops its containers (no --live-restore)...
    busybox.proc.wait(timeout=30)
    with start_daemon(state_dir, busybox.socket, args=["--live-restore"]) as again:
        docker_cli(again, "start", "lasting")
        wait_for(again, "lasting", "healthy")
        again.proc.kill()  # ...a crash leaves them running
        again.proc.wait()
    with start_daemon(state_dir, busybox.socket) as third:
        doc = state(third, "lasting")
        assert doc["State"]["Running"]
        assert doc["State"]["Health"]["Status"] in ("starting", "healthy")
        before = doc["State"]["Health"]["Log"][-1]["End"]
        doc = wait_for(third, "lasting", "healthy")
        deadline = time.monotonic() + 10
        while state(third, "lasting")["State"]["Health"]["Log"][-1]["End"] == before:
            assert time.monotonic() < deadline  # probes run again
            time.sleep(0.1)
        docker_cli(third, "rm", "-f", "lasting")


def test_init_runs_tini_as_pid_1(busybox: Daemon) -> None:
    out = docker_cli(busybox, "run", "--rm", "--init", "busybox", "ps", "-o", "pid,args").stdout
    lines = out.splitlines()
    assert lines[1].split(None, 1) == ["1", "/sbin/docker-init -- ps -o pid,args"], out
    code = docker_cli(
        busybox, "run", "--rm", "--init", "busybox", "sh", "-c", "exit 7", check=False
    )
    assert code.returncode == 7  # tini passes the exit code on
    ro = docker_cli(
        busybox,
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "echo x > /sbin/docker-init 2>&1 || echo refused",
    ).stdout
    assert "refused" in ro or "Read-only" in ro
    assert orchestr(busybox, "run", "--rm", "--init", "busybox", "cat", "/proc/1/cmdline").stdout


def test_ulimits(busybox: Daemon) -> None:
    out = docker_cli(
        busybox,
        "run",
        "--rm",
        "--ulimit",
        "nofile=1024:2048",
        "busybox",
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn",
    ).stdout
    assert out.split() == ["1024", "2048"]
    mine = orchestr(
        busybox, "run", "--rm", "--ulimit", "nproc=100", "busybox", "sh", "-c", "ulimit -u"
    ).stdout
    assert mine.strip() == "100"
    bad = subprocess.run(
        [
            "curl",
            "-s",
            "--unix-socket",
            str(busybox.socket),
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps(
                {
                    "Image": "busybox",
                    "HostConfig": {"Ulimits": [{"Name": "x", "Soft": 1, "Hard": 1}]},
                }
            ),
            "http://d/v1.41/containers/create",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(bad.stdout)["message"] == "invalid ulimit type: x"
