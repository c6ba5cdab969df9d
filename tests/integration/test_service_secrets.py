"""Secrets and configs of services, driven by the docker CLI: created, listed and
inspected (a secret's data never shown), mounted as files into the tasks' containers
with their modes and owners, refused for removal while a service uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Daemon
from tests.integration.test_daemon_images import docker_cli, orchestr
from tests.integration.test_daemon_networks import net
from tests.integration.test_services import replicas, until

__all__ = ["net"]

pytestmark = [pytest.mark.root, pytest.mark.netns]


def in_task(d: Daemon, service: str, script: str) -> str:
    ids = docker_cli(
        d, "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}"
    ).stdout.split()
    return docker_cli(d, "exec", ids[0], "sh", "-c", script).stdout


def test_secrets_and_configs_reach_the_tasks_as_files(net: Daemon) -> None:
    d = net
    work = d.state_dir
    (work / "pw").write_text("s3cret")
    (work / "app.conf").write_text("port=80\n")
    secret_id = docker_cli(d, "secret", "create", "--label", "tier=db", "db_pass", str(work / "pw"))
    docker_cli(d, "config", "create", "app_conf", str(work / "app.conf"))
    listed = docker_cli(d, "secret", "ls", "--format", "{{.Name}}").stdout.split()
    assert listed == ["db_pass"]
    inspected = json.loads(docker_cli(d, "secret", "inspect", "db_pass").stdout)[0]
    assert inspected["ID"] == secret_id.stdout.strip()
    assert inspected["Spec"]["Labels"] == {"tier": "db"} and "Data" not in inspected["Spec"]
    pretty = docker_cli(d, "config", "inspect", "--pretty", "app_conf").stdout
    assert "port=80" in pretty  # a config's data is shown
    taken = docker_cli(d, "secret", "create", "db_pass", str(work / "pw"), check=False)
    assert taken.returncode != 0 and "already exists" in taken.stderr

    docker_cli(
        d, "service", "create", "--detach", "--name", "app", "--stop-grace-period", "1s",
        "--secret", "db_pass",
        "--secret", "source=db_pass,target=/etc/pw,mode=0400,uid=100,gid=101",
        "--config", "source=app_conf,target=/etc/app.conf",
        "busybox:latest", "sleep", "600",
    )  # fmt: skip
    until("the task running", lambda: replicas(d, "app") == "1/1")
    assert in_task(d, "app", "cat /run/secrets/db_pass") == "s3cret"
    assert in_task(d, "app", "stat -c '%a %u %g' /etc/pw").strip() == "400 100 101"
    assert in_task(d, "app", "cat /etc/app.conf") == "port=80\n"
    assert in_task(d, "app", "stat -c %a /run/secrets/db_pass").strip() == "444"
    denied = docker_cli(d, "exec", "-u", "1", *running_ids(d, "app"), "cat", "/etc/pw", check=False)
    assert denied.returncode != 0  # mode 0400, owner 100

    in_use = docker_cli(d, "secret", "rm", "db_pass", check=False)
    assert in_use.returncode != 0 and "in use by the following service: app" in in_use.stderr
    missing = docker_cli(
        d, "service", "create", "--detach", "--name", "nope", "--secret", "no_such",
        "busybox:latest", "sleep", "1",
    check=False)  # fmt: skip
    assert missing.returncode != 0 and "no_such" in missing.stderr

    docker_cli(d, "service", "rm", "app")
    until("the containers gone", lambda: docker_cli(d, "ps", "-aq").stdout.strip() == "")
    docker_cli(d, "secret", "rm", "db_pass")
    docker_cli(d, "config", "rm", "app_conf")
    assert docker_cli(d, "secret", "ls", "-q").stdout.strip() == ""

    # orchestr's own commands for them.
    made = orchestr(d, "secret", "create", "--label", "a=b", "api_key", str(work / "pw"))
    listed = orchestr(d, "secret", "ls").stdout
    assert "api_key" in listed and made.stdout.strip()[:12] in listed
    shown = json.loads(orchestr(d, "secret", "inspect", "api_key").stdout)[0]
    assert shown["Spec"]["Labels"] == {"a": "b"} and "Data" not in shown["Spec"]
    orchestr(d, "secret", "rm", "api_key")
    assert orchestr(d, "secret", "ls", "-q").stdout.strip() == ""
    files = Path(str(d.exec_root)) / "tasks"  # type: ignore[attr-defined]
    until("the task's files gone", lambda: not files.exists() or not any(files.iterdir()))


def running_ids(d: Daemon, service: str) -> list[str]:
    return docker_cli(
        d, "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}"
    ).stdout.split()[:1]
