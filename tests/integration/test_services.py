"""Services on a cluster of one, driven by the docker CLI: create, ls, ps, inspect,
scale, a rolling update with the CLI's own progress view, rollback, removal."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Daemon, start_daemon
from tests.integration.test_daemon_images import docker_cli, orchestr
from tests.integration.test_daemon_networks import host_of, net

__all__ = ["net"]  # the fixture, imported for this module's tests

pytestmark = [pytest.mark.root, pytest.mark.netns]


def until(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def running(d: Daemon, service: str, image: str | None = None) -> list[str]:
    """Names of the running containers of `service` (of `image`, if given)."""
    out = docker_cli(
        d, "ps", "--filter", f"label=com.docker.swarm.service.name={service}",
        "--format", "{{.Names}} {{.Image}}",
    ).stdout  # fmt: skip
    return sorted(
        line.split()[0] for line in out.splitlines() if image is None or line.split()[1] == image
    )


def replicas(d: Daemon, service: str = "web") -> str:
    """The REPLICAS column of `docker service ls` (running/desired)."""
    out = docker_cli(d, "service", "ls", "--filter", f"name={service}", "--format", "{{.Replicas}}")
    return out.stdout.strip()


def tasks(d: Daemon, service: str) -> list[dict[str, str]]:
    """`docker service ps` of the service, one JSON object per task."""
    out = docker_cli(d, "service", "ps", service, "--no-trunc", "--format", "{{json .}}").stdout
    return [json.loads(line) for line in out.splitlines()]


def test_a_service_runs_scales_updates_rolls_back_and_goes(net: Daemon) -> None:
    d = net
    docker_cli(d, "tag", "busybox:latest", "busybox:v2")
    created = docker_cli(
        d, "service", "create", "--detach", "--name", "web", "--replicas", "3",
        "--stop-grace-period", "1s", "--update-parallelism", "2", "--update-monitor", "1s",
        "--label", "tier=front", "busybox:latest", "sleep", "600",
    )  # fmt: skip
    service_id = created.stdout.strip()
    until("3 tasks running", lambda: replicas(d) == "3/3")
    assert len(running(d, "web")) == 3
    ls = docker_cli(d, "service", "ls", "--format", "{{.Name}} {{.Mode}}").stdout
    assert ls.split() == ["web", "replicated"]
    names = sorted(t["Name"] for t in tasks(d, "web"))
    assert names == ["web.1", "web.2", "web.3"]
    assert all(t["CurrentState"].startswith("Running") for t in tasks(d, "web"))
    assert all(name.startswith(f"web.{i}.") for i, name in enumerate(running(d, "web"), 1))
    inspect = json.loads(docker_cli(d, "service", "inspect", "web").stdout)[0]
    assert inspect["ID"] == service_id
    assert inspect["Spec"]["Labels"] == {"tier": "front"}
    assert inspect["Spec"]["Mode"] == {"Replicated": {"Replicas": 3}}

    docker_cli(d, "service", "scale", "--detach", "web=5")
    until("5 tasks running", lambda: replicas(d) == "5/5")
    docker_cli(d, "service", "scale", "--detach", "web=2")
    until("2 tasks running", lambda: len(running(d, "web")) == 2 and replicas(d) == "2/2")
    assert [t["Name"] for t in tasks(d, "web") if t["DesiredState"] == "Running"] == [
        "web.1",
        "web.2",
    ]

    # Not detached: the CLI follows the update with its own progress view until it
    # has converged (it polls tasks with its `_up-to-date` filter).
    update = docker_cli(d, "service", "update", "--image", "busybox:v2", "web")
    assert "converged" in update.stdout
    assert len(running(d, "web", "busybox:v2")) == 2 and running(d, "web", "busybox:latest") == []
    until(
        "the update completed",
        lambda: (
            json.loads(docker_cli(d, "service", "inspect", "web").stdout)[0]
            .get("UpdateStatus", {})
            .get("State")
            == "completed"
        ),
    )

    rollback = docker_cli(d, "service", "rollback", "web")
    assert "converged" in rollback.stdout
    assert len(running(d, "web", "busybox:latest")) == 2
    status = json.loads(docker_cli(d, "service", "inspect", "web").stdout)[0]["UpdateStatus"]
    assert status["State"] in ("rollback_started", "rollback_completed")
    assert "manually requested rollback" in status["Message"]

    docker_cli(d, "service", "rm", "web")
    until(
        "the containers gone",
        lambda: (
            docker_cli(
                d, "ps", "-aq", "--filter", "label=com.docker.swarm.service.name=web"
            ).stdout.strip()
            == ""
        ),
    )
    assert docker_cli(d, "service", "ls", "-q").stdout.strip() == ""


def test_bad_service_requests_get_clear_errors(net: Daemon) -> None:
    d = net
    docker_cli(
        d, "service", "create", "--detach", "--name", "one", "--replicas", "0", "busybox:latest"
    )
    again = docker_cli(
        d, "service", "create", "--detach", "--name", "one", "busybox:latest", check=False
    )
    assert again.returncode != 0 and "already exists" in again.stderr
    bad = docker_cli(
        d, "service", "create", "--detach", "--constraint", "node.labels.zone", "busybox:latest",
        check=False,
    )  # fmt: skip
    assert bad.returncode != 0 and "invalid constraint" in bad.stderr
    ports = docker_cli(
        d, "service", "create", "--detach", "-p", "8080:80/sctp", "busybox:latest", check=False
    )
    assert ports.returncode != 0 and "sctp is not supported" in ports.stderr
    for args in (("swarm", "update", "--task-history-limit", "3"), ("swarm", "leave")):
        unbuilt = docker_cli(d, *args, check=False)
        assert unbuilt.returncode != 0 and "not supported yet" in unbuilt.stderr, args
    missing = docker_cli(d, "service", "inspect", "nope", check=False)
    assert missing.returncode != 0 and "no such service: nope" in missing.stderr.lower()
    docker_cli(d, "service", "rm", "one")


def update_state(d: Daemon, service: str) -> str:
    doc = json.loads(docker_cli(d, "service", "inspect", service).stdout)[0]
    return str((doc.get("UpdateStatus") or {}).get("State", ""))


def test_a_broken_update_rolls_back_or_pauses(net: Daemon) -> None:
    """New tasks that never turn healthy: with failure_action rollback the old spec comes
    back and keeps serving; with pause the update stops after its first batch."""
    d = net
    health = 'test "$BROKEN" != 1'
    for name, action in (("rb", "rollback"), ("ps", "pause")):
        docker_cli(
            d, "service", "create", "--detach", "--name", name, "--replicas", "3", "--init",
            "--stop-grace-period", "1s", "--health-cmd", health, "--health-interval", "500ms",
            "--health-retries", "2", "--update-parallelism", "1", "--update-monitor", "2s",
            "--update-failure-action", action, "busybox:latest", "sleep", "600",
        )  # fmt: skip
    until("both services up", lambda: replicas(d, "rb") == "3/3" and replicas(d, "ps") == "3/3")
    before = {name: sorted(t["ID"] for t in tasks(d, name)) for name in ("rb", "ps")}
    for name in ("rb", "ps"):
        docker_cli(d, "service", "update", "--detach", "--env-add", "BROKEN=1", name)

    until("the rollback", lambda: update_state(d, "rb") == "rollback_completed", timeout=60)
    doc = json.loads(docker_cli(d, "service", "inspect", "rb").stdout)[0]
    assert (
        "update rolled back due to failure or early termination of task"
        in (doc["UpdateStatus"]["Message"])
    )
    assert "BROKEN=1" not in (doc["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env") or [])
    assert replicas(d, "rb") == "3/3"
    serving = sorted(t["ID"] for t in tasks(d, "rb") if t["DesiredState"] == "Running")
    assert len(set(serving) & set(before["rb"])) == 2  # the untouched tasks kept running

    until("the pause", lambda: update_state(d, "ps") == "paused", timeout=60)
    time.sleep(2)  # paused: no further batch
    broken = [t for t in tasks(d, "ps") if t["ID"] not in before["ps"]]
    assert {t["Name"] for t in broken} == {"ps.1"}  # the first batch's slot only
    old_running = [
        t for t in tasks(d, "ps") if t["ID"] in before["ps"] and t["DesiredState"] == "Running"
    ]
    assert len(old_running) == 2
    docker_cli(d, "service", "rm", "rb", "ps")
    until(
        "the containers gone",
        lambda: (
            docker_cli(
                d, "ps", "-aq", "--filter", "label=com.docker.swarm.service.id"
            ).stdout.strip()
            == ""
        ),
    )


def test_a_daemon_killed_mid_update_finishes_it_after_a_restart(
    net: Daemon, state_dir: Path
) -> None:
    """kill -9 of the daemon while a rolling update is under way: the next daemon
    carries it on from the store, with no task duplicated or lost."""
    d = net
    docker_cli(d, "tag", "busybox:latest", "busybox:v2")
    docker_cli(
        d, "service", "create", "--detach", "--name", "roll", "--replicas", "4", "--init",
        "--stop-grace-period", "1s", "--update-parallelism", "1", "--update-delay", "1s",
        "--update-monitor", "1s", "busybox:latest", "sleep", "600",
    )  # fmt: skip
    until("4 tasks", lambda: replicas(d, "roll") == "4/4")
    docker_cli(d, "service", "update", "--detach", "--image", "busybox:v2", "roll")
    until("one task updated", lambda: len(running(d, "roll", "busybox:v2")) >= 1)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    with start_daemon(state_dir, d.socket, host=host_of(d), args=["--dns", "127.0.0.1"]) as again:
        until("the update completed", lambda: update_state(again, "roll") == "completed", 90)
        wanted = [t for t in tasks(again, "roll") if t["DesiredState"] == "Running"]
        assert sorted(t["Name"] for t in wanted) == ["roll.1", "roll.2", "roll.3", "roll.4"]
        assert {t["Image"] for t in wanted} == {"busybox:v2"}
        until("4 containers on v2", lambda: len(running(again, "roll", "busybox:v2")) == 4)
        assert len(running(again, "roll")) == 4
        docker_cli(again, "service", "rm", "roll")
        until(
            "the containers gone",
            lambda: (
                docker_cli(
                    again, "ps", "-aq", "--filter", "label=com.docker.swarm.service.id"
                ).stdout.strip()
                == ""
            ),
        )


def test_a_global_service_runs_once_on_the_node(net: Daemon) -> None:
    d = net
    docker_cli(
        d, "service", "create", "--detach", "--name", "agent", "--mode", "global", "--init",
        "--stop-grace-period", "1s", "busybox:latest", "sleep", "600",
    )  # fmt: skip
    until("its task", lambda: replicas(d, "agent") == "1/1")
    nodes = docker_cli(
        d, "node", "ls", "--format", "{{.ID}} {{.Status}} {{.Availability}} {{.ManagerStatus}}"
    ).stdout.split()
    assert nodes[1:] == ["Ready", "Active", "Leader"]
    [task] = tasks(d, "agent")
    node_id = docker_cli(d, "node", "ls", "-q").stdout.strip()
    assert task["Name"] == f"agent.{node_id}"  # a global task is named by its node
    assert len(running(d, "agent")) == 1
    docker_cli(d, "service", "rm", "agent")
    until("its container gone", lambda: running(d, "agent") == [])


def test_docker_info_shows_a_cluster_of_one(net: Daemon) -> None:
    d = net
    swarm = json.loads(docker_cli(d, "info", "--format", "{{json .Swarm}}").stdout)
    assert swarm["LocalNodeState"] == "active" and swarm["ControlAvailable"] is True
    assert swarm["Nodes"] == 1 and swarm["Managers"] == 1
    assert (
        docker_cli(d, "node", "inspect", "self", "--format", "{{.ID}}").stdout.strip()
        == (swarm["NodeID"])
    )
    text = docker_cli(d, "info").stdout
    assert "Swarm: active" in text and "Is Manager: true" in text
    assert f"ClusterID: {swarm['Cluster']['ID']}" in text
    init = docker_cli(d, "swarm", "init", check=False)
    assert init.returncode != 0 and "already part of a swarm" in init.stderr


def test_node_labels_place_tasks_and_a_drained_node_lets_them_go(net: Daemon) -> None:
    d = net
    docker_cli(
        d, "service", "create", "--detach", "--name", "zoned", "--replicas", "2",
        "--constraint", "node.labels.zone==a", "--stop-grace-period", "1s",
        "busybox:latest", "sleep", "600",
    )  # fmt: skip

    def states() -> list[str]:
        return [
            t["CurrentState"].split()[0]
            for t in tasks(d, "zoned")
            if t["DesiredState"] == "Running"
        ]

    until("the tasks pending", lambda: states() == ["Pending", "Pending"])
    pending = docker_cli(d, "service", "ps", "--no-trunc", "--format", "{{.Error}}", "zoned")
    assert "no suitable node" in pending.stdout
    docker_cli(d, "node", "update", "--label-add", "zone=a", "self")
    until("the tasks running", lambda: replicas(d, "zoned") == "2/2")

    docker_cli(d, "node", "update", "--availability", "drain", "self")
    ls = docker_cli(d, "node", "ls", "--format", "{{.Availability}}").stdout.strip()
    assert ls == "Drain"
    until("the tasks gone from the drained node", lambda: running(d, "zoned") == [])
    assert states() == ["Pending", "Pending"]
    # orchestr's own node commands: the node back to active.
    ls = orchestr(d, "node", "ls").stdout
    assert "Drain" in ls and "Leader" in ls
    orchestr(d, "node", "update", "--availability", "active", "self")
    until("the tasks back", lambda: replicas(d, "zoned") == "2/2")
    node = json.loads(orchestr(d, "node", "inspect", "self").stdout)
    assert node[0]["Spec"]["Labels"] == {"zone": "a"}

    demote = docker_cli(d, "node", "demote", "self", check=False)
    assert demote.returncode != 0 and "last manager" in demote.stderr
    rm = docker_cli(d, "node", "rm", "self", check=False)
    assert rm.returncode != 0 and "cannot be removed" in rm.stderr
    docker_cli(d, "service", "rm", "zoned")
