"""Published ports of services: checked, given (30000-32767 when none is asked for),
kept across updates, refused when another service holds them; the scheduler keeps two
host-mode tasks off one node's port; the node's rule balances over the tasks."""

from __future__ import annotations

import pytest

from agent.network import nft
from orchestr.api.swarm import Node, Service, Task, TaskState, TaskStatus, host_ports
from orchestr.manager.ports import allocate, check
from orchestr.scheduler.scheduler import schedule


def svc(sid: str, *ports: dict[str, object], mode: str = "vip") -> Service:
    spec = {"Name": sid, "EndpointSpec": {"Mode": mode, "Ports": list(ports)}}
    return Service(id=sid, spec=spec)


def test_ports_are_checked_and_completed() -> None:
    assert check({"Ports": [{"TargetPort": 80, "PublishedPort": 8080}]}) == [
        {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"}
    ]
    for endpoint, words in (
        ({"Ports": [{"PublishedPort": 8080}]}, "TargetPort"),
        ({"Ports": [{"TargetPort": 70000}]}, "TargetPort"),
        ({"Ports": [{"TargetPort": 80, "Protocol": "sctp"}]}, "sctp is not supported"),
        ({"Ports": [{"TargetPort": 80, "Protocol": "icmp"}]}, "tcp or udp"),
        ({"Ports": [{"TargetPort": 80, "PublishMode": "routed"}]}, "ingress or host"),
        (
            {
                "Ports": [
                    {"TargetPort": 80, "PublishedPort": 1},
                    {"TargetPort": 81, "PublishedPort": 1},
                ]
            },
            "published twice",
        ),
        ({"Mode": "dnsrr", "Ports": [{"TargetPort": 80}]}, "dnsrr"),
    ):
        with pytest.raises(ValueError, match=words):
            check(endpoint)
    # The same number for tcp and udp is two ports; host mode works with dnsrr.
    both = [
        {"TargetPort": 53, "PublishedPort": 53},
        {"TargetPort": 53, "PublishedPort": 53, "Protocol": "udp"},
    ]
    assert len(check({"Ports": both})) == 2
    assert check({"Mode": "dnsrr", "Ports": [{"TargetPort": 80, "PublishMode": "host"}]})


def test_a_port_is_given_kept_and_not_shared() -> None:
    web = svc("web", {"TargetPort": 80})
    given = allocate(web, [])
    assert given[0]["PublishedPort"] == 30000
    other = svc("api", {"TargetPort": 80}).model_copy(update={"ports": allocate(svc("api"), [])})
    held = web.model_copy(update={"ports": given})
    # The next service gets the next free port; an update keeps the one given.
    assert allocate(svc("api", {"TargetPort": 80}), [held])[0]["PublishedPort"] == 30001
    assert allocate(held, [held, other])[0]["PublishedPort"] == 30000
    with pytest.raises(ValueError, match="port '30000' is already in use by service 'web'"):
        allocate(svc("api", {"TargetPort": 81, "PublishedPort": 30000}), [held])
    # A port a container of the node publishes is refused, and never given.
    with pytest.raises(ValueError, match="already published by a container on this node"):
        allocate(svc("api", {"TargetPort": 80, "PublishedPort": 9090}), [], {(9090, "tcp")})
    assert (
        allocate(svc("api", {"TargetPort": 80}), [], {(30000, "tcp")})[0]["PublishedPort"] == 30001
    )
    # udp 30000 is another port; host-mode ports are the nodes' business.
    assert allocate(
        svc("dns", {"TargetPort": 53, "PublishedPort": 30000, "Protocol": "udp"}), [held]
    )
    assert allocate(
        svc("h", {"TargetPort": 80, "PublishedPort": 30000, "PublishMode": "host"}), [held]
    )


def test_two_host_mode_tasks_do_not_share_a_nodes_port() -> None:
    service = svc("web", {"TargetPort": 80, "PublishedPort": 8080, "PublishMode": "host"})
    service = service.model_copy(update={"ports": allocate(service, [])})
    assert host_ports(service) == [(8080, "tcp")]

    def task(tid: str, slot: int) -> Task:
        return Task(
            id=tid, service_id="web", slot=slot, host_ports=host_ports(service),
            status=TaskStatus(state=TaskState.NEW), created_at=slot,
        )  # fmt: skip

    placed = schedule([task("a", 1), task("b", 2)], [Node(id="n1")], 10.0)
    assert [t.id for t in placed.assigned] == ["a"]
    assert [t.pending_reason for t in placed.pending] == [
        "no suitable node (host-mode port already in use on 1 node)"
    ]
    two = schedule([task("a", 1), task("b", 2)], [Node(id="n1"), Node(id="n2")], 10.0)
    assert sorted(t.node_id for t in two.assigned) == ["n1", "n2"]


def test_the_nodes_rule_balances_over_the_tasks() -> None:
    one = nft.IngressRule(8080, "tcp", 80, ("10.0.0.2",))
    many = nft.IngressRule(8080, "tcp", 80, ("10.0.0.2", "10.0.0.3"))
    script = nft.ruleset([nft.BridgeRules("br0", ("10.0.0.0/24",))], [], [], [one])
    assert "meta nfproto ipv4 tcp dport 8080 dnat ip to 10.0.0.2:80" in script
    script = nft.ruleset([nft.BridgeRules("br0", ("10.0.0.0/24",))], [], [], [many])
    assert "numgen random mod 2 map { 0 : 10.0.0.2, 1 : 10.0.0.3 } : 80" in script
    idle = nft.ruleset(
        [nft.BridgeRules("br0", ("10.0.0.0/24",))], [], [], [one.__class__(8080, "tcp", 80, ())]
    )
    assert "8080" not in idle  # no task: the node refuses the connection


def test_a_new_host_port_makes_the_tasks_out_of_date() -> None:
    from orchestr.orchestrator.reconciler import new_task

    def with_port(port: int) -> Service:
        s = svc("web", {"TargetPort": 80, "PublishedPort": port, "PublishMode": "host"})
        return s.model_copy(update={"ports": allocate(s, [])})

    task = new_task(with_port(8080), lambda: "t1", 1.0, slot=1)
    assert task.host_ports == [(8080, "tcp")]
    assert task.digest == with_port(8080).task_digest
    assert task.digest != with_port(8081).task_digest  # the updater replaces it
    # Without host ports a task's identity is its template alone, as before.
    plain = svc("api")
    assert new_task(plain, lambda: "t2", 1.0, slot=1).digest == plain.task_digest
