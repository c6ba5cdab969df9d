"""Containers through the daemon, judged by real clients: the docker CLI, docker-py and
orchestr's CLI; and the daemon's crash: containers outlive `kill -9` of the daemon
and a new daemon adopts them."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import docker
import httpx
import pytest

from tests.conftest import Daemon, start_daemon
from tests.integration.test_daemon_images import docker_cli, orchestr, run


@pytest.fixture
def busybox(daemon: Daemon, busybox_rootfs: Path) -> Daemon:
    """The daemon, with busybox:latest imported."""
    tar = daemon.state_dir / "busybox.tar"
    subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", str(tar), "."], check=True)
    docker_cli(daemon, "import", str(tar), "busybox:latest")
    return daemon


def test_docker_run_prints_and_carries_the_exit_code(busybox: Daemon) -> None:
    out = docker_cli(busybox, "run", "--rm", "busybox", "echo", "hello")
    assert out.stdout == "hello\n"
    failed = docker_cli(
        busybox, "run", "--rm", "busybox", "sh", "-c", "echo oops >&2; exit 3", check=False
    )
    assert failed.returncode == 3 and failed.stderr.endswith("oops\n")
    assert docker_cli(busybox, "ps", "-aq").stdout == ""  # --rm removed them

    piped = run(busybox, "sh", "-c", "echo through stdin | docker run -i --rm busybox cat")
    assert piped.stdout == "through stdin\n"


def test_detached_container_lifecycle(busybox: Daemon) -> None:
    cid = docker_cli(
        busybox,
        "run",
        "-d",
        "--name",
        "w",
        "busybox",
        "sh",
        "-c",
        "echo started; echo to-stderr >&2; exec sleep 1000",
    ).stdout.strip()
    assert len(cid) == 64
    listing = docker_cli(busybox, "ps", "--format", "{{.Names}} {{.Status}}").stdout
    assert listing.startswith("w Up ")
    deadline = time.monotonic() + 10
    while "started" not in docker_cli(busybox, "logs", "w").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    logs = docker_cli(busybox, "logs", "w")
    assert logs.stdout == "started\n" and logs.stderr == "to-stderr\n"
    inspect = json.loads(docker_cli(busybox, "inspect", "w").stdout)[0]
    assert inspect["State"]["Running"] and inspect["Name"] == "/w"
    clash = docker_cli(busybox, "run", "-d", "--name", "w", "busybox", "true", check=False)
    assert clash.returncode != 0 and "already in use" in clash.stderr
    refused = docker_cli(busybox, "rm", "w", check=False)
    assert refused.returncode != 0 and "Stop the container" in refused.stderr

    started = time.monotonic()
    docker_cli(busybox, "stop", "-t", "1", "w")
    assert time.monotonic() - started < 5  # sleep ignores SIGTERM as pid 1: killed after 1 s
    state = json.loads(docker_cli(busybox, "inspect", "w").stdout)[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 137
    docker_cli(busybox, "rm", "w")
    assert docker_cli(busybox, "ps", "-aq").stdout == ""


def test_restart_policy_on_failure(busybox: Daemon) -> None:
    docker_cli(
        busybox,
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 1",
    )
    deadline = time.monotonic() + 15
    while True:
        state = json.loads(docker_cli(busybox, "inspect", "flaky").stdout)[0]
        if state["RestartCount"] == 2 and state["State"]["Status"] == "exited":
            break
        assert time.monotonic() < deadline, state["State"]
        time.sleep(0.1)
    assert docker_cli(busybox, "logs", "flaky").stdout == "run\nrun\nrun\n"
    docker_cli(busybox, "rm", "flaky")


def test_docker_py_runs_containers(busybox: Daemon) -> None:
    client = docker.DockerClient(base_url=busybox.host, version="1.41")
    try:
        assert client.containers.run("busybox", ["echo", "from docker-py"], remove=True) == (
            b"from docker-py\n"
        )
        c = client.containers.run("busybox", ["sleep", "100"], detach=True, name="py")
        assert client.containers.get("py").status == "running"
        c.kill()
        assert c.wait()["StatusCode"] == 137
        c.remove()
    finally:
        client.close()


def test_orchestr_cli_runs_containers(busybox: Daemon) -> None:
    out = orchestr(
        busybox, "run", "--rm", "busybox", "sh", "-c", "echo hi; echo oops >&2; exit 4", check=False
    )
    assert (out.returncode, out.stdout) == (4, "hi\n") and out.stderr.endswith("oops\n")
    cid = orchestr(
        busybox,
        "run",
        "-d",
        "--name",
        "bg",
        "-e",
        "A=1",
        "busybox",
        "sh",
        "-c",
        "echo $A; exec sleep 100",
    ).stdout.strip()
    table = orchestr(busybox, "ps").stdout.splitlines()
    assert table[1].startswith(cid[:12]) and table[1].endswith("bg")
    clash = orchestr(busybox, "run", "--rm", "--name", "bg", "busybox", "true", check=False)
    assert clash.returncode == 1
    assert clash.stderr.startswith("orchestr: ") and '"/bg" is already in use' in clash.stderr
    deadline = time.monotonic() + 10
    while orchestr(busybox, "logs", "bg").stdout != "1\n":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    orchestr(busybox, "stop", "-t", "0", "bg")
    assert orchestr(busybox, "wait", "bg").stdout.strip() == "137"
    orchestr(busybox, "rm", "bg")


def test_containers_outlive_a_killed_daemon(busybox: Daemon, state_dir: Path) -> None:
    cid = docker_cli(
        busybox,
        "run",
        "-d",
        "--name",
        "survivor",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
    ).stdout.strip()
    time.sleep(0.3)
    busybox.proc.send_signal(signal.SIGKILL)
    busybox.proc.wait()
    time.sleep(0.5)  # the container keeps writing while no daemon runs
    with start_daemon(state_dir, busybox.socket) as again:
        inspect = json.loads(docker_cli(again, "inspect", "survivor").stdout)[0]
        assert inspect["State"]["Running"] and inspect["Id"] == cid
        lines = docker_cli(again, "logs", "survivor").stdout.splitlines()
        assert lines[:3] == ["tick 0", "tick 1", "tick 2"]
        assert len(lines) >= 6  # written while the daemon was down, too
        follower = subprocess.Popen(
            ["docker", "logs", "-f", "--tail", "0", "survivor"],
            stdout=subprocess.PIPE,
            text=True,
            env=again.env(),
        )
        time.sleep(0.5)
        docker_cli(again, "stop", "-t", "0", "survivor")
        followed, _ = follower.communicate(timeout=15)  # ends when the container does
        assert followed.startswith("tick ") and follower.returncode == 0
        assert (
            json.loads(docker_cli(again, "inspect", "survivor").stdout)[0]["State"]["ExitCode"]
            == 137
        )
        docker_cli(again, "rm", "survivor")


def test_a_clean_daemon_stop_gives_each_its_grace_and_brings_unless_stopped_back(
    busybox: Daemon, state_dir: Path
) -> None:
    # Docker's rules: the daemon's own stop is not the user's, so an `unless-stopped`
    # container starts again with the daemon; a `no` one does not; each is stopped with
    # its own grace period (1 s here, not the default 10 s).
    for name, policy in (("back", "unless-stopped"), ("stays", "no"), ("user", "unless-stopped")):
        docker_cli(
            busybox, "run", "-d", "--name", name, "--restart", policy, "--stop-timeout", "1",
            "busybox", "sleep", "600",
        )  # fmt: skip
    docker_cli(busybox, "stop", "-t", "0", "user")  # the user's stop: it stays stopped
    started = time.monotonic()
    busybox.proc.send_signal(signal.SIGTERM)
    busybox.proc.wait(timeout=30)
    assert time.monotonic() - started < 8  # not 10 s per container that ignores SIGTERM
    with start_daemon(state_dir, busybox.socket) as again:

        def state(name: str) -> bool:
            doc = json.loads(docker_cli(again, "inspect", name).stdout)[0]
            return bool(doc["State"]["Running"])

        deadline = time.monotonic() + 15
        while not state("back"):
            assert time.monotonic() < deadline, "the unless-stopped container did not come back"
            time.sleep(0.2)
        assert not state("stays") and not state("user")
        docker_cli(again, "rm", "-f", "back", "stays", "user")


def test_many_followers_each_get_their_lines_and_the_api_still_answers(busybox: Daemon) -> None:
    # Each `logs -f` holds a thread for as long as it follows: ten of them once took
    # every thread of the API's pool, and the rest (and every other request) waited.
    names = [f"ticker{i}" for i in range(10)]
    for name in names:
        docker_cli(
            busybox, "run", "-d", "--name", name, "busybox", "sh", "-c",
            f"while true; do echo {name}; sleep 0.2; done",
        )  # fmt: skip
    followers = [
        subprocess.Popen(
            ["docker", "logs", "-f", "--tail", "0", name],
            stdout=subprocess.PIPE,
            text=True,
            env=busybox.env(),
        )
        for name in names
    ]
    try:
        started = time.monotonic()
        assert sorted(docker_cli(busybox, "ps", "--format", "{{.Names}}").stdout.split()) == (
            sorted(names)
        )
        assert time.monotonic() - started < 5
        first: dict[str, str] = {}

        def read_first(name: str, follower: subprocess.Popen[str]) -> None:
            assert follower.stdout is not None
            first[name] = follower.stdout.readline().strip()

        readers = [
            threading.Thread(target=read_first, args=pair, daemon=True)
            for pair in zip(names, followers, strict=True)
        ]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(max(0.1, started + 15 - time.monotonic()))
        assert first == {name: name for name in names}  # every follower got its lines
    finally:
        for follower in followers:
            follower.kill()
            follower.wait()
        docker_cli(busybox, "rm", "-f", *names)


def test_bad_container_requests_get_4xx(busybox: Daemon) -> None:
    transport = httpx.HTTPTransport(uds=str(busybox.socket))
    with httpx.Client(transport=transport, base_url="http://d/v1.41") as http:
        cases = [
            ("POST", "/containers/create", {"Image": "nosuch:1"}, 404, "No such image"),
            (
                "POST",
                "/containers/create",
                {"Image": "busybox", "HostConfig": {"Privileged": True}},
                400,
                "privileged",
            ),
            ("POST", "/containers/create", {"Cmd": ["x"]}, 400, "an image is required"),
            ("POST", "/containers/nosuch/start", None, 404, "No such container"),
            ("POST", "/containers/nosuch/wait?condition=sometime", None, 400, "invalid condition"),
            ("GET", '/containers/json?filters={"color":["x"]}', None, 400, "invalid filter"),
        ]
        for method, path, body, status, message in cases:
            response = http.request(method, path, json=body)
            assert response.status_code == status, (path, response.text)
            assert message in response.json()["message"], (path, response.text)
        bad_json = http.post("/containers/create", content=b"{not json")
        assert bad_json.status_code == 400
    assert busybox.proc.poll() is None


def test_pause_top_stats_and_events(busybox: Daemon) -> None:
    since = str(time.time() - 1)
    docker_cli(
        busybox,
        "run",
        "-d",
        "--name",
        "watched",
        "busybox",
        "sh",
        "-c",
        "while true; do sleep 0.2; done",
    )
    docker_cli(busybox, "pause", "watched")
    state = json.loads(docker_cli(busybox, "inspect", "watched").stdout)[0]["State"]
    assert state["Paused"] and state["Status"] == "paused"
    assert "(Paused)" in docker_cli(busybox, "ps", "--format", "{{.Status}}").stdout
    docker_cli(busybox, "unpause", "watched")
    top = docker_cli(busybox, "top", "watched").stdout.splitlines()
    assert top[0].split()[:2] == ["UID", "PID"] and any("while true" in line for line in top[1:])
    stats = docker_cli(busybox, "stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}").stdout
    assert stats.split()[0] == "watched" and int(stats.split()[1]) >= 1
    info = docker_cli(busybox, "info", "--format", "{{.ContainersRunning}}").stdout.strip()
    assert info == "1"
    assert "Containers" in orchestr(busybox, "system", "df").stdout
    docker_cli(busybox, "rm", "-f", "watched")
    events = docker_cli(
        busybox,
        "events",
        "--since",
        since,
        "--until",
        str(time.time() + 0.5),
        "--filter",
        "container=watched",
        "--format",
        "{{.Action}}",
    ).stdout.split()
    assert events == ["create", "start", "pause", "unpause", "kill", "die", "destroy"]


def test_limits_read_only_tmpfs_caps_and_log_rotation(busybox: Daemon) -> None:
    oom = docker_cli(
        busybox,
        "run",
        "--name",
        "hog",
        "-m",
        "16m",
        "busybox",
        "sh",
        "-c",
        'x=$(head -c 60000000 /dev/zero | tr "\\0" x); echo survived',
        check=False,
    )
    assert oom.returncode == 137 and "survived" not in oom.stdout
    state = json.loads(docker_cli(busybox, "inspect", "hog").stdout)[0]["State"]
    assert state["OOMKilled"] and state["ExitCode"] == 137
    docker_cli(busybox, "rm", "hog")

    ro = docker_cli(
        busybox,
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "touch /x 2>&1; touch /scratch/y && echo tmpfs-ok",
    )
    assert ro.stdout == "touch: /x: Read-only file system\ntmpfs-ok\n"

    def cap_eff(*flags: str) -> int:
        out = docker_cli(
            busybox, "run", "--rm", *flags, "busybox", "grep", "CapEff", "/proc/self/status"
        ).stdout
        return int(out.split()[1], 16)

    default = cap_eff()
    changed = cap_eff("--cap-drop", "NET_RAW", "--cap-add", "SYS_ADMIN")
    net_raw, sys_admin = 1 << 13, 1 << 21
    assert default & net_raw and not default & sys_admin
    assert changed & sys_admin and not changed & net_raw

    forks = docker_cli(
        busybox,
        "run",
        "--rm",
        "--pids-limit",
        "5",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7; do sleep 1 & done; wait",
        check=False,
    )
    assert "can't fork" in forks.stderr

    docker_cli(
        busybox,
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=2",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done",
    )
    kept = docker_cli(busybox, "logs", "chatty").stdout.splitlines()
    assert kept[-1] == "line 199" and 0 < len(kept) < 200  # older lines rotated away
    tail = docker_cli(busybox, "logs", "--tail", "2", "-t", "chatty").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in tail] == ["line 198", "line 199"]
    assert tail[0].split(" ")[0].endswith("Z")
    docker_cli(busybox, "rm", "chatty")


def test_named_volume_outlives_its_container(busybox: Daemon) -> None:
    docker_cli(busybox, "volume", "create", "keep")
    docker_cli(
        busybox,
        "run",
        "--rm",
        "-v",
        "keep:/data",
        "busybox",
        "sh",
        "-c",
        "echo persisted > /data/f",
    )
    out = docker_cli(busybox, "run", "--rm", "-v", "keep:/data", "busybox", "cat", "/data/f")
    assert out.stdout == "persisted\n"
    docker_cli(
        busybox, "run", "-d", "--name", "user", "-v", "keep:/data", "busybox", "sleep", "100"
    )
    busy = docker_cli(busybox, "volume", "rm", "keep", check=False)
    assert busy.returncode != 0 and "in use" in busy.stderr
    docker_cli(busybox, "rm", "-f", "user")
    docker_cli(busybox, "volume", "rm", "keep")


def test_exec_and_terminals(busybox: Daemon) -> None:
    docker_cli(busybox, "run", "-d", "--name", "host1", "busybox", "sleep", "100")
    assert (
        docker_cli(busybox, "exec", "host1", "cat", "/etc/hostname").stdout.strip()
        == (json.loads(docker_cli(busybox, "inspect", "host1").stdout)[0]["Id"][:12])
    )
    assert docker_cli(busybox, "exec", "host1", "sh", "-c", "exit 5", check=False).returncode == 5
    piped = run(busybox, "sh", "-c", "echo fed | docker exec -i host1 cat")
    assert piped.stdout == "fed\n"
    assert docker_cli(busybox, "exec", "-u", "daemon", "host1", "id", "-un").stdout == "daemon\n"
    assert orchestr(busybox, "exec", "host1", "sh", "-c", "echo $X", "-e", "X=1").stdout == "\n"
    assert orchestr(busybox, "exec", "-e", "X=1", "host1", "sh", "-c", "echo $X").stdout == "1\n"

    client = docker.DockerClient(base_url=busybox.host, version="1.41")
    try:
        result = client.containers.get("host1").exec_run(["sh", "-c", "echo py; exit 3"])
        assert result.exit_code == 3 and result.output == b"py\n"
    finally:
        client.close()

    # A real terminal: `script` gives the docker CLI one, as a user's shell would.
    inside = run(busybox, "script", "-qc", "docker exec -it host1 sh -c 'tty'", "/dev/null").stdout
    assert "/dev/pts/" in inside
    tty_run = run(
        busybox, "script", "-qc", "docker run -it --rm busybox sh -c 'tty; echo done'", "/dev/null"
    ).stdout
    assert "/dev/pts/" in tty_run and "done" in tty_run
    docker_cli(busybox, "rm", "-f", "host1")


def test_create_then_start_attached(busybox: Daemon) -> None:
    cid = docker_cli(busybox, "create", "--name", "later", "busybox", "echo", "started later")
    assert len(cid.stdout.strip()) == 64
    assert docker_cli(busybox, "start", "-a", "later").stdout == "started later\n"
    assert docker_cli(busybox, "start", "-a", "later").stdout == "started later\n"  # again
    assert docker_cli(busybox, "logs", "later").stdout == "started later\nstarted later\n"
    docker_cli(busybox, "rm", "later")
