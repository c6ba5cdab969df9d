"""Published ports of services on a cluster of one, driven by the docker CLI: an ingress
port balances over the running tasks and follows scaling; one in host mode leads to its
one task; a port another service holds is refused; the rules go with the service."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.conftest import Daemon, start_daemon
from tests.integration.test_daemon_images import docker_cli
from tests.integration.test_daemon_networks import host_of, net
from tests.integration.test_service_vip import SERVE
from tests.integration.test_services import replicas, until

__all__ = ["net"]

pytestmark = [pytest.mark.root, pytest.mark.netns]


def ask(d: Daemon, port: int, times: int = 1) -> list[str]:
    """The last line of each of `times` answers from 127.0.0.1:port of the node."""
    script = (
        f"for i in $(seq {times}); do printf 'GET / HTTP/1.0\\r\\n\\r\\n'"
        f" | busybox nc -w 2 127.0.0.1 {port} | tail -n 1; done"
    )
    return host_of(d).run("sh", "-c", script).stdout.split()


def test_an_ingress_port_balances_over_the_tasks_and_follows_them(net: Daemon) -> None:
    d = net
    docker_cli(
        d, "service", "create", "--detach", "--name", "web", "--replicas", "3",
        "--publish", "8080:80", "--init", "--stop-grace-period", "1s",
        "busybox:latest", "sh", "-c", SERVE,
    )  # fmt: skip
    until("3 tasks running", lambda: replicas(d, "web") == "3/3")
    ls = docker_cli(d, "service", "ls", "--format", "{{.Name}} {{.Ports}}").stdout.strip()
    assert ls == "web *:8080->80/tcp"
    endpoint = json.loads(docker_cli(d, "service", "inspect", "web").stdout)[0]["Endpoint"]
    assert endpoint["Ports"] == [
        {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}
    ]
    until("the port answering", lambda: len(ask(d, 8080)) == 1)
    answers = ask(d, 8080, 30)
    assert len(answers) == 30 and len(set(answers)) == 3, answers
    # A task asking the port through its node's address is answered every time.
    task = docker_cli(
        d, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=web"
    ).stdout.split()[0]
    gateway = "$(ip route | awk '/default/ {print $3}')"
    own = docker_cli(
        d, "exec", task, "sh", "-c",
        f"for i in $(seq 20); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {gateway} 8080"
        " | tail -n 1; done",
    ).stdout.split()  # fmt: skip
    assert len(own) == 20, own

    docker_cli(d, "service", "scale", "--detach", "web=1")
    until("one task left", lambda: replicas(d, "web") == "1/1")
    until("one task behind the port", lambda: len(set(ask(d, 8080, 10))) == 1)

    # A port held by a service, asked for by another: refused, naming the holder.
    taken = docker_cli(
        d, "service", "create", "--detach", "--name", "other", "--publish", "8080:81",
        "busybox:latest", "sleep", "60",
        check=False,
    )  # fmt: skip
    assert taken.returncode != 0
    assert "port '8080' is already in use by service 'web'" in taken.stderr
    # A port a container publishes on the node: refused too.
    docker_cli(d, "run", "-d", "--name", "plain", "-p", "9090:80", "busybox:latest", "sleep", "60")
    clash = docker_cli(
        d, "service", "create", "--detach", "--name", "other", "--publish", "9090:80",
        "busybox:latest", "sleep", "60",
        check=False,
    )  # fmt: skip
    assert clash.returncode != 0 and "already published by a container" in clash.stderr
    docker_cli(d, "rm", "-f", "plain")
    # No PublishedPort: one is given from 30000 on.
    docker_cli(
        d, "service", "create", "--detach", "--name", "given", "--publish", "target=80",
        "--init", "--stop-grace-period", "1s", "busybox:latest", "sh", "-c", SERVE,
    )  # fmt: skip
    given = json.loads(docker_cli(d, "service", "inspect", "given").stdout)[0]
    assert given["Endpoint"]["Ports"][0]["PublishedPort"] == 30000
    until("the given port answering", lambda: len(ask(d, 30000)) == 1)

    docker_cli(d, "service", "rm", "web", "given")
    until("the port closed", lambda: ask(d, 8080) == [] and ask(d, 30000) == [])


def test_a_host_mode_port_leads_to_its_task_and_a_second_waits(net: Daemon) -> None:
    d = net
    docker_cli(
        d, "service", "create", "--detach", "--name", "solo", "--replicas", "2",
        "--publish", "published=8081,target=80,mode=host", "--init",
        "--stop-grace-period", "1s", "busybox:latest", "sh", "-c", SERVE,
    )  # fmt: skip
    until("one task running", lambda: replicas(d, "solo") == "1/2")
    pending = docker_cli(d, "service", "ps", "--no-trunc", "--format", "{{.Error}}", "solo")
    assert "host-mode port already in use on 1 node" in pending.stdout
    [container] = docker_cli(
        d, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=solo"
    ).stdout.split()
    ports = docker_cli(d, "port", container).stdout
    assert "80/tcp -> 0.0.0.0:8081" in ports
    hostname = docker_cli(d, "exec", container, "hostname").stdout.strip()
    until("the port answering", lambda: ask(d, 8081) == [hostname])

    # Another host port: the task is replaced (as Swarm does), and the new one has it.
    docker_cli(d, "service", "scale", "--detach", "solo=1")
    docker_cli(
        d, "service", "update", "--publish-rm", "8081",
        "--publish-add", "published=8082,target=80,mode=host", "solo",
    )  # fmt: skip
    [replaced] = docker_cli(
        d, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=solo"
    ).stdout.split()
    assert replaced != container
    assert "80/tcp -> 0.0.0.0:8082" in docker_cli(d, "port", replaced).stdout
    docker_cli(d, "service", "rm", "solo")


def test_a_restarted_daemon_opens_its_services_ports_again(net: Daemon, state_dir: Path) -> None:
    d = net
    docker_cli(
        d, "service", "create", "--detach", "--name", "web", "--publish", "8085:80",
        "--init", "--stop-grace-period", "1s", "busybox:latest", "sh", "-c", SERVE,
    )  # fmt: skip
    until("the port answering", lambda: len(ask(d, 8085)) == 1)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    # The kernel's rules are gone too (as after a reboot of the node's network).
    host_of(d).run("nft", "delete", "table", "inet", "orchestr", check=True)
    assert ask(d, 8085) == []
    with start_daemon(state_dir, d.socket, host=host_of(d), args=["--dns", "127.0.0.1"]) as again:
        until("the port answering again", lambda: len(ask(d, 8085)) == 1)
        docker_cli(again, "service", "rm", "web")
        until("the port closed", lambda: ask(d, 8085) == [])


def test_a_service_keeps_its_udp_port_when_another_goes(net: Daemon) -> None:
    d = net
    docker_cli(
        d, "service", "create", "--detach", "--name", "dns", "--publish", "5353:53/udp",
        "--publish", "8090:80", "--init", "--stop-grace-period", "1s",
        "busybox:latest", "sleep", "600",
    )  # fmt: skip
    until("the task running", lambda: replicas(d, "dns") == "1/1")

    def rules() -> str:
        return host_of(d).run("nft", "list", "chain", "inet", "orchestr", "published").stdout

    until("both ports balanced", lambda: "udp dport 5353" in rules() and "dport 8090" in rules())
    # The udp port's socket is kept, not bound again beside itself (which udp refuses).
    docker_cli(d, "service", "update", "--detach", "--publish-rm", "80", "dns")
    until("the tcp port gone", lambda: "dport 8090" not in rules())
    assert "udp dport 5353" in rules()
    docker_cli(d, "service", "rm", "dns")
