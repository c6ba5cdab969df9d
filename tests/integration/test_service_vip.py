"""A service's virtual IP on a cluster of one: the name resolves to one address that
nftables balances over the running tasks, `tasks.<name>` to the tasks; a client asking
without a pause sees no failed request while the service rolls start-first."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import Daemon
from tests.integration.test_daemon_images import docker_cli
from tests.integration.test_daemon_networks import net
from tests.integration.test_services import replicas, until

__all__ = ["net"]  # the fixture, imported for this module's tests

pytestmark = [pytest.mark.root, pytest.mark.netns]

# busybox httpd serving the container's hostname; healthy once it answers (busybox wget
# crashes on this kernel: nc asks instead).
SERVE = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"
ASK = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 80"
HEALTH = f"{ASK.format(host='127.0.0.1')} | grep -q '200 OK'"


def in_client(d: Daemon, script: str) -> str:
    return docker_cli(d, "exec", "client", "sh", "-c", script).stdout


def test_the_vip_balances_and_a_start_first_update_drops_nothing(net: Daemon) -> None:
    d = net
    docker_cli(d, "network", "create", "app")
    docker_cli(d, "tag", "busybox:latest", "busybox:v2")
    docker_cli(
        d, "service", "create", "--detach", "--name", "web", "--replicas", "3",
        "--network", "app", "--init", "--stop-grace-period", "2s",
        "--health-cmd", HEALTH, "--health-interval", "1s", "--health-retries", "10",
        "--update-order", "start-first", "--update-parallelism", "1",
        "--update-monitor", "1s",
        "busybox:latest", "sh", "-c", SERVE,
    )  # fmt: skip
    docker_cli(
        d, "run", "-d", "--name", "client", "--network", "app", "busybox:latest",
        "sleep", "600",
    )  # fmt: skip
    until("3 healthy tasks", lambda: replicas(d, "web") == "3/3")

    # The name is one virtual IP; tasks.web are the three tasks.
    vip = in_client(d, "nslookup web 127.0.0.11 | awk '/^Address/ {a=$NF} END {print a}'")
    tasks = in_client(d, "nslookup tasks.web 127.0.0.11 | awk '/^Address/ {print $NF}'")
    task_ips = sorted(set(tasks.split()) - {"127.0.0.11", "127.0.0.11:53"})
    assert len(task_ips) == 3 and vip.strip() not in task_ips, (vip, tasks)
    endpoint = json.loads(docker_cli(d, "service", "inspect", "web").stdout)[0]["Endpoint"]
    network_id = json.loads(docker_cli(d, "network", "inspect", "app").stdout)[0]["Id"]
    [shown] = endpoint["VirtualIPs"]
    assert shown["NetworkID"] == network_id and shown["Addr"].split("/")[0] == vip.strip()

    # Balanced: thirty requests to the name reach all three tasks.
    answers = in_client(
        d, "for i in $(seq 30); do " + ASK.format(host="web") + " | tail -n 1; done"
    ).split()
    assert len(answers) == 30 and len(set(answers)) == 3, answers

    # A task asking its own service by name is answered every time (itself included).
    task = docker_cli(
        d, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=web"
    ).stdout.split()[0]
    own = docker_cli(
        d, "exec", task, "sh", "-c",
        "for i in $(seq 20); do " + ASK.format(host="web") + " | tail -n 1; done",
    ).stdout.split()  # fmt: skip
    assert len(own) == 20, own

    # A client asks without a pause while every task is replaced, start-first.
    in_client(d, "rm -f /tmp/stop /tmp/log")
    docker_cli(
        d, "exec", "-d", "client", "sh", "-c",
        "while [ ! -e /tmp/stop ]; do "
        + ASK.format(host="web")
        + " | grep -q '200 OK' && echo ok >> /tmp/log || echo FAIL >> /tmp/log; done",
    )  # fmt: skip
    time.sleep(1)
    update = docker_cli(d, "service", "update", "--image", "busybox:v2", "web")
    assert "converged" in update.stdout
    time.sleep(1)
    in_client(d, "touch /tmp/stop")
    time.sleep(2.5)
    log = in_client(d, "cat /tmp/log").split()
    assert log.count("ok") > 20, log[-10:]
    assert "FAIL" not in log, f"{log.count('FAIL')} of {len(log)} requests failed"
    running = docker_cli(
        d, "service", "ps", "web", "--filter", "desired-state=running", "--format", "{{.Image}}"
    ).stdout.split()
    assert running == ["busybox:v2"] * 3

    docker_cli(d, "rm", "-f", "client")
    docker_cli(d, "service", "rm", "web")
    until(
        "the tasks gone",
        lambda: (
            docker_cli(
                d, "ps", "-aq", "--filter", "label=com.docker.swarm.service.name=web"
            ).stdout.strip()
            == ""
        ),
    )
    docker_cli(d, "network", "rm", "app")
