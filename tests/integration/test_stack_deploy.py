"""`orchestr stack deploy` and `orchestr service …` on a cluster of one: a Compose file
as services, with depends_on honoured between them, then updated, listed and removed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Daemon
from tests.integration.test_daemon_images import docker_cli
from tests.integration.test_daemon_networks import host_of, net
from tests.integration.test_services import replicas, tasks, until

__all__ = ["net"]  # the fixture, imported for this module's tests

pytestmark = [pytest.mark.root, pytest.mark.netns]

ROOT = Path(__file__).resolve().parents[2]
ORCHESTR = str(Path(sys.executable).with_name("orchestr"))
STACK = ROOT / "examples" / "stacks" / "services" / "compose.yaml"


def orchestr(d: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = host_of(d).run(ORCHESTR, *args, env=d.env(), timeout=300)
    if check:
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


def service(d: Daemon, name: str) -> dict[str, object]:
    return json.loads(docker_cli(d, "service", "inspect", name).stdout)[0]  # type: ignore[no-any-return]


def times(d: Daemon, name: str, field: str = "StartedAt") -> list[str]:
    """A State time of the containers of a service (RFC 3339, UTC: they sort), oldest
    first."""
    ids = docker_cli(
        d, "ps", "-aq", "--filter", f"label=com.docker.swarm.service.name={name}"
    ).stdout.split()
    if not ids:
        return []
    out = docker_cli(d, "inspect", "--format", f"{{{{.State.{field}}}}}", *ids).stdout
    return sorted(out.split())


def test_a_stack_deploys_in_dependency_order_updates_and_goes(net: Daemon) -> None:
    d = net
    deployed = orchestr(d, "stack", "deploy", "-c", str(STACK), "shop")
    assert "Creating network shop_default" in deployed.stdout
    until("the stack running", lambda: replicas(d, "shop_web") == "2/2", timeout=90)
    assert replicas(d, "shop_api") == "3/3"

    # depends_on: the job completed before the API started; the API was healthy (its
    # tasks running) before the web's first task started.
    [job] = [t for t in tasks(d, "shop_migrate")]
    assert job["CurrentState"].startswith("Complete")
    api_up, web_up = times(d, "shop_api"), times(d, "shop_web")
    [job_done] = times(d, "shop_migrate", "FinishedAt")
    assert job_done < api_up[0]
    assert api_up[-1] < web_up[0]
    labels = service(d, "shop_web")["Spec"]["Labels"]  # type: ignore[index]
    assert labels["com.docker.stack.namespace"] == "shop"  # type: ignore[index]
    assert json.loads(labels["org.orchestr.depends-on"]) == {"shop_api": "service_healthy"}  # type: ignore[index]

    listed = orchestr(d, "stack", "ls").stdout.split()
    assert listed[-2:] == ["shop", "3"]
    ps = orchestr(d, "stack", "ps", "shop").stdout
    assert ps.count("shop_api.") == 3 and ps.count("shop_web.") == 2
    ls = orchestr(d, "service", "ls").stdout
    assert "shop_api" in ls and "3/3" in ls

    # An update through the orchestr CLI: start-first, one at a time, waits till done.
    docker_cli(d, "tag", "busybox:latest", "busybox:v2")
    update = orchestr(d, "service", "update", "--image", "busybox:v2", "shop_api")
    assert "shop_api: completed" in update.stderr
    images = {t["Image"] for t in tasks(d, "shop_api") if t["DesiredState"] == "Running"}
    assert images == {"busybox:v2"}

    orchestr(d, "service", "scale", "shop_web=1")
    assert replicas(d, "shop_web") == "1/1"

    orchestr(d, "stack", "rm", "shop")
    until(
        "the stack gone",
        lambda: (
            docker_cli(
                d, "ps", "-aq", "--filter", "label=com.docker.stack.namespace=shop"
            ).stdout.strip()
            == ""
        ),
    )
    assert docker_cli(d, "service", "ls", "-q").stdout.strip() == ""
    assert "shop_default" not in docker_cli(d, "network", "ls").stdout


def test_up_with_services_deploys_the_stack_and_down_removes_it(net: Daemon) -> None:
    """`orchestr up --services` is `stack deploy` under the project's name, returning once
    the services have converged (the one-shot job completed); `down` removes them."""
    d = net
    up = orchestr(d, "up", "--services", "-f", str(STACK), "-p", "shop2")
    assert "Creating service shop2_api" in up.stdout
    assert replicas(d, "shop2_api") == "3/3" and replicas(d, "shop2_web") == "2/2"
    [job] = tasks(d, "shop2_migrate")
    assert job["CurrentState"].startswith("Complete")
    again = orchestr(d, "up", "--services", "-d", "-f", str(STACK), "-p", "shop2")
    assert "Updating service shop2_api" in again.stdout
    orchestr(d, "down", "-f", str(STACK), "-p", "shop2")
    until(
        "the stack gone",
        lambda: (
            docker_cli(
                d, "ps", "-aq", "--filter", "label=com.docker.stack.namespace=shop2"
            ).stdout.strip()
            == ""
        ),
    )
    assert docker_cli(d, "service", "ls", "-q").stdout.strip() == ""
    assert "shop2_default" not in docker_cli(d, "network", "ls").stdout


# The docker CLI reads stack files with the old version-3 schema (depends_on a list).
DOCKER_STACK = """
version: "3.8"
services:
  api:
    image: busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo api > /www/index.html && httpd -f -h /www"]
    init: true
    stop_grace_period: 1s
    deploy: {replicas: 3}
  web:
    image: busybox:latest
    command: ["sleep", "600"]
    init: true
    stop_grace_period: 1s
    deploy: {replicas: 2}
    secrets: [pw]
    configs: [{source: conf, target: /etc/web.conf}]
secrets:
  pw: {file: ./pw.txt}
configs:
  conf: {file: ./web.conf}
"""


def test_docker_stack_deploy_works_against_a_cluster_of_one(net: Daemon) -> None:
    d = net
    stack = d.state_dir / "stack.yml"
    stack.write_text(DOCKER_STACK)
    (d.state_dir / "pw.txt").write_text("s3cret")
    (d.state_dir / "web.conf").write_text("mode=fast\n")
    deployed = docker_cli(d, "stack", "deploy", "-c", str(stack), "shop")
    assert "Creating network shop_default" in deployed.stdout, deployed.stderr
    assert "Creating secret shop_pw" in deployed.stdout
    until("the stack running", lambda: replicas(d, "shop_web") == "2/2", timeout=90)
    until("the api running", lambda: replicas(d, "shop_api") == "3/3", timeout=30)
    ls = docker_cli(d, "stack", "ls", "--format", "{{.Name}} {{.Services}}").stdout.split()
    assert ls == ["shop", "2"]
    services = docker_cli(d, "stack", "services", "shop", "--format", "{{.Name}}").stdout
    assert sorted(services.split()) == ["shop_api", "shop_web"]
    ps = docker_cli(d, "stack", "ps", "shop", "--format", "{{.Name}}").stdout.split()
    assert sorted(ps) == ["shop_api.1", "shop_api.2", "shop_api.3", "shop_web.1", "shop_web.2"]
    network = json.loads(docker_cli(d, "network", "inspect", "shop_default").stdout)[0]
    assert network["Labels"] == {"com.docker.stack.namespace": "shop"}
    # The web's tasks reach the API by its service name (the VIP) on the stack's network.
    web = docker_cli(
        d, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=shop_web"
    ).stdout.split()[0]
    ask = "echo 'GET / HTTP/1.0' | nc -w 2 api 80 | tail -1"
    assert docker_cli(d, "exec", web, "sh", "-c", ask).stdout.strip() == "api"
    files = "cat /run/secrets/pw /etc/web.conf"
    assert docker_cli(d, "exec", web, "sh", "-c", files).stdout == "s3cretmode=fast\n"
    removed = docker_cli(d, "stack", "rm", "shop")
    assert "Removing network shop_default" in removed.stdout
    assert "Removing secret shop_pw" in removed.stdout
    until("the stack gone", lambda: docker_cli(d, "ps", "-aq").stdout.strip() == "", timeout=60)
    until(
        "its network gone",
        lambda: "shop_default" not in docker_cli(d, "network", "ls").stdout,
        timeout=30,
    )
    assert docker_cli(d, "secret", "ls", "-q").stdout.strip() == ""

    # orchestr's own stack deploy of the same file: the same objects, and gone with rm.
    ours = orchestr(d, "stack", "deploy", "-c", str(stack), "ours")
    assert "Creating secret ours_pw" in ours.stdout and "Creating config ours_conf" in ours.stdout
    until("our stack running", lambda: replicas(d, "ours_web") == "2/2", timeout=90)
    web = docker_cli(
        d, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=ours_web"
    ).stdout.split()[0]
    assert docker_cli(d, "exec", web, "sh", "-c", files).stdout == "s3cretmode=fast\n"
    again = orchestr(d, "stack", "deploy", "-c", str(stack), "ours")  # labels only: fine
    assert "Creating secret" not in again.stdout
    (d.state_dir / "pw.txt").write_text("changed")
    changed = orchestr(d, "stack", "deploy", "-c", str(stack), "ours", check=False)
    assert changed.returncode != 0 and "only updates to Labels are allowed" in changed.stderr
    orchestr(d, "stack", "rm", "ours")
    assert docker_cli(d, "config", "ls", "-q").stdout.strip() == ""
