"""`orchestr up/down` and `orchestr compose …` against a daemon in a test host:
converging (scale, force-recreate, orphans, secrets' content), exec/run/logs/stop/start,
and the orchestr extension that restarts a container turning unhealthy."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import Daemon
from tests.integration.test_daemon_images import docker_cli
from tests.integration.test_daemon_networks import host_of, net

__all__ = ["net"]  # the fixture, imported for this module's tests

pytestmark = [pytest.mark.root, pytest.mark.netns]

ORCHESTR = str(Path(sys.executable).with_name("orchestr"))


def compose(
    d: Daemon, stack: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = host_of(d).run(ORCHESTR, "compose", "-f", str(stack), *args, env=d.env(), timeout=120)
    if check:
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


def containers(d: Daemon, project: str) -> dict[str, dict[str, object]]:
    """name → {id, state, hash} of the project's containers."""
    out = docker_cli(
        d, "ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
        "--format", "{{json .}}",
    ).stdout  # fmt: skip
    found = {}
    for line in out.splitlines():
        row = json.loads(line)
        found[row["Names"]] = {"id": row["ID"], "state": row["State"], "labels": row["Labels"]}
    return found


def write_stack(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "compose.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_converging_scale_recreate_orphans_and_secrets(net: Daemon, tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text("one")
    stack = write_stack(
        tmp_path,
        """\
        name: conv
        services:
          app:
            image: busybox:latest
            command: ["sleep", "300"]
            stop_grace_period: 1s
            secrets: [token]
          other:
            image: busybox:latest
            command: ["sleep", "300"]
            stop_grace_period: 1s
        secrets:
          token: {file: ./token.txt}
        """,
    )
    compose(net, stack, "up", "-d", "--scale", "app=3")
    first = containers(net, "conv")
    assert sorted(first) == ["conv-app-1", "conv-app-2", "conv-app-3", "conv-other-1"]
    secret = compose(net, stack, "exec", "-T", "app", "cat", "/run/secrets/token").stdout
    assert secret == "one"

    compose(net, stack, "up", "-d", "--scale", "app=1")  # scale down keeps number 1
    assert sorted(containers(net, "conv")) == ["conv-app-1", "conv-other-1"]
    assert containers(net, "conv")["conv-app-1"]["id"] == first["conv-app-1"]["id"]

    (tmp_path / "token.txt").write_text("two")  # the secret's content is in the hash
    compose(net, stack, "up", "-d")
    now = containers(net, "conv")
    assert now["conv-app-1"]["id"] != first["conv-app-1"]["id"]
    assert now["conv-other-1"]["id"] == first["conv-other-1"]["id"]
    assert compose(net, stack, "exec", "-T", "app", "cat", "/run/secrets/token").stdout == "two"

    compose(net, stack, "up", "-d", "--force-recreate", "other")
    assert containers(net, "conv")["conv-other-1"]["id"] != first["conv-other-1"]["id"]

    # `other` leaves the file: its container is an orphan until --remove-orphans
    write_stack(
        tmp_path,
        """\
        name: conv
        services:
          app:
            image: busybox:latest
            command: ["sleep", "300"]
            stop_grace_period: 1s
            secrets: [token]
        secrets:
          token: {file: ./token.txt}
        """,
    )
    done = compose(net, stack, "up", "-d")
    assert "orphan" in done.stderr
    assert "conv-other-1" in containers(net, "conv")
    compose(net, stack, "up", "-d", "--remove-orphans")
    assert sorted(containers(net, "conv")) == ["conv-app-1"]

    compose(net, stack, "down", "-t", "1")
    assert containers(net, "conv") == {}
    assert "conv_default" not in docker_cli(net, "network", "ls").stdout


def test_run_logs_stop_start_and_ls(net: Daemon, tmp_path: Path) -> None:
    stack = write_stack(
        tmp_path,
        """\
        name: ops
        services:
          web:
            image: busybox:latest
            command: ["sh", "-c", "echo web says hi; exec httpd -f -p 80 -h /etc"]
            stop_grace_period: 1s
          job:
            image: busybox:latest
            command: ["echo", "job done"]
            depends_on: [web]
        """,
    )
    compose(net, stack, "up", "-d", "--wait")
    logs = compose(net, stack, "logs").stdout
    assert "ops-web-1  | web says hi" in logs
    assert "ops-job-1  | job done" in logs
    ran = compose(net, stack, "run", "--rm", "job", "sh", "-c", "wget -qO- http://web/hostname")
    assert ran.stdout.strip()  # the web container's hostname, reached by service name
    assert not [n for n in containers(net, "ops") if "run" in n]  # --rm removed it
    assert "ops" in host_of(net).run(ORCHESTR, "compose", "ls", env=net.env()).stdout
    compose(net, stack, "stop", "web")
    assert containers(net, "ops")["ops-web-1"]["state"] == "exited"
    compose(net, stack, "start", "web")
    assert containers(net, "ops")["ops-web-1"]["state"] == "running"
    ps = compose(net, stack, "ps").stdout
    assert "ops-web-1" in ps and "web" in ps
    compose(net, stack, "down", "-t", "1")
    assert containers(net, "ops") == {}


def test_unhealthy_container_is_restarted_by_the_extension(net: Daemon, tmp_path: Path) -> None:
    stack = write_stack(
        tmp_path,
        """\
        name: heal
        services:
          flaky:
            image: busybox:latest
            command: ["sh", "-c", "touch /tmp/ok; exec sleep 300"]
            stop_grace_period: 1s
            healthcheck:
              test: ["CMD", "test", "-f", "/tmp/ok"]
              interval: 200ms
              retries: 2
            x-orchestr:
              health_on_failure: restart
        """,
    )
    compose(net, stack, "up", "-d", "--wait", "--wait-timeout", "30")
    compose(net, stack, "exec", "-T", "flaky", "rm", "/tmp/ok")
    deadline = time.monotonic() + 30
    while True:
        info = json.loads(docker_cli(net, "inspect", "heal-flaky-1").stdout)[0]
        if info["RestartCount"] >= 1 and info["State"]["Health"]["Status"] == "healthy":
            break
        assert time.monotonic() < deadline, info["State"]
        time.sleep(0.2)
    compose(net, stack, "down", "-t", "1")


def test_service_attributes_reach_the_container(net: Daemon, tmp_path: Path) -> None:
    (tmp_path / "app.conf").write_text("conf\n")
    stack = write_stack(
        tmp_path,
        """\
        name: attrs
        services:
          box:
            image: busybox:latest
            container_name: attrs-box
            hostname: boxhost
            entrypoint: ["sh", "-c"]
            command: ["echo started; exec sleep 300"]
            working_dir: /tmp
            user: "1000:1000"
            environment: {GREETING: hello}
            labels: {team: core}
            extra_hosts: ["db.local:10.9.9.9"]
            init: true
            read_only: true
            tmpfs: [/scratch]
            cap_drop: [NET_RAW]
            ulimits: {nofile: {soft: 512, hard: 1024}}
            mem_limit: 64m
            stop_signal: SIGUSR1
            stop_grace_period: 2s
            restart: on-failure:2
            expose: ["9000"]
            ports: ["127.0.0.1:8181:80"]
            volumes: [data:/data]
            configs: [{source: conf, target: /etc/app.conf}]
        volumes:
          data: {}
        configs:
          conf: {file: ./app.conf}
        """,
    )
    compose(net, stack, "up", "-d")
    info = json.loads(docker_cli(net, "inspect", "attrs-box").stdout)[0]
    config, host = info["Config"], info["HostConfig"]
    assert config["Hostname"] == "boxhost"
    assert config["Entrypoint"] == ["sh", "-c"] and config["Cmd"] == [
        "echo started; exec sleep 300"
    ]
    assert config["WorkingDir"] == "/tmp" and config["User"] == "1000:1000"
    assert "GREETING=hello" in config["Env"]
    assert config["Labels"]["team"] == "core"
    assert config["Labels"]["com.docker.compose.service"] == "box"
    assert config["StopSignal"] == "SIGUSR1" and config["StopTimeout"] == 2
    assert "9000/tcp" in config["ExposedPorts"] and "80/tcp" in config["ExposedPorts"]
    assert host["ExtraHosts"] == ["db.local:10.9.9.9"]
    assert host["Init"] is True and host["ReadonlyRootfs"] is True
    assert host["Memory"] == 64 << 20
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8181"}]}
    run = compose(net, stack, "exec", "-T", "box", "sh", "-c",
                  "id -u; grep 'open files' /proc/1/limits | tr -s ' ' | cut -d' ' -f4;"
                  " cat /etc/app.conf; grep db.local /etc/hosts; "
                  "touch /scratch/x && echo tmpfs-ok;"
                  " touch /rootfile 2>/dev/null || echo ro-ok")  # fmt: skip
    lines = run.stdout.split()
    assert lines[:3] == ["1000", "512", "conf"]
    assert "10.9.9.9" in run.stdout and "tmpfs-ok" in run.stdout and "ro-ok" in run.stdout
    assert "attrs_data" in docker_cli(net, "volume", "ls").stdout
    compose(net, stack, "down", "-v", "-t", "1")
    assert "attrs_data" not in docker_cli(net, "volume", "ls").stdout
