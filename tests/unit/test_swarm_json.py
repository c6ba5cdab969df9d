"""Services, tasks and nodes as the Engine API shows them, and a task's container body."""

from __future__ import annotations

import re

import jsonschema
import pytest

from agent.containers.spec import parse_create
from agent.exec.container import container_name, create_body
from orchestr.api.swarm import (
    Node,
    Resources,
    Service,
    SwarmCluster,
    Task,
    TaskState,
    TaskStatus,
    UpdateState,
    UpdateStatus,
    security_options,
)
from orchestr.api.swarm_json import cluster_json, node_json, rfc3339, service_json, task_json
from tests.unit.swarm_sim import spec
from tests.unit.test_image_service import swagger_schema, without_nulls

S = 1_000_000_000
RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def web(**kw: object) -> Service:
    doc = spec("busybox:latest", 3, name="shop_web", **kw)  # type: ignore[arg-type]
    return Service(id="svc1", spec=doc, created_at=1_700_000_000.25, updated_at=1_700_000_100.5)


def task(slot: int, state: TaskState, desired: TaskState = TaskState.RUNNING) -> Task:
    return Task(
        id=f"task{slot}",
        service_id="svc1",
        slot=slot,
        node_id="node1",
        spec=web().template,
        desired_state=desired,
        status=TaskStatus(state=state, timestamp=1_700_000_200.0, container_id="c" * 64),
        created_at=1_700_000_150.0,
    )


def test_times_are_rfc3339_with_nanoseconds() -> None:
    assert rfc3339(1_700_000_000.25) == "2023-11-14T22:13:20.250000000Z"
    assert rfc3339(0) == "0001-01-01T00:00:00Z"
    assert RFC3339_NANO.match(rfc3339(1_700_000_000.9999999999))


def test_a_service_has_the_swagger_shape_and_its_status_counts() -> None:
    svc = web().model_copy(
        update={
            "update_status": UpdateStatus(
                state=UpdateState.PAUSED, started_at=1_700_000_300.0, message="update paused"
            ),
            "previous_spec": spec("busybox:old", 3, name="shop_web"),
        }
    )
    tasks = [
        task(1, TaskState.RUNNING),
        task(2, TaskState.RUNNING),
        task(3, TaskState.PREPARING),
        task(4, TaskState.SHUTDOWN, TaskState.SHUTDOWN),
    ]
    doc = service_json(svc, 42, tasks)
    jsonschema.validate(without_nulls(doc), swagger_schema("Service"))
    assert doc["ID"] == "svc1" and doc["Version"] == {"Index": 42}
    assert doc["Spec"]["Name"] == "shop_web"
    assert doc["ServiceStatus"] == {"RunningTasks": 2, "DesiredTasks": 3}
    assert doc["UpdateStatus"]["State"] == "paused"
    assert doc["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "busybox:old"
    assert "ServiceStatus" not in service_json(svc, 42)


def test_a_global_service_wants_one_task_per_node_it_runs_on() -> None:
    svc = Service(id="svc1", spec=spec(replicas=None))
    tasks = [task(0, TaskState.RUNNING), task(0, TaskState.SHUTDOWN, TaskState.SHUTDOWN)]
    doc = service_json(svc, 1, tasks, [Node(id="node1")])
    assert doc["ServiceStatus"] == {"RunningTasks": 1, "DesiredTasks": 1}


def test_a_task_has_the_swagger_shape() -> None:
    t = task(2, TaskState.RUNNING)
    doc = task_json(t, 7, web())
    jsonschema.validate(without_nulls(doc), swagger_schema("Task"))
    assert doc["Name"] == "shop_web.2"
    assert doc["Status"]["State"] == "running" and doc["DesiredState"] == "running"
    assert doc["Status"]["ContainerStatus"]["ContainerID"] == "c" * 64
    assert doc["Slot"] == 2 and doc["NodeID"] == "node1"
    waiting = Task(
        id="t9",
        service_id="svc1",
        slot=9,
        status=TaskStatus(state=TaskState.PENDING, timestamp=1.0),
        pending_reason="no suitable node (node is down on 1 node)",
    )
    doc = task_json(waiting, 8)
    jsonschema.validate(without_nulls(doc), swagger_schema("Task"))
    assert doc["Status"]["Err"] == "no suitable node (node is down on 1 node)"
    assert "NodeID" not in doc


def test_the_cluster_has_the_swagger_shape_and_only_what_holds() -> None:
    cluster = SwarmCluster(id="c1", created_at=1.5, updated_at=2.0)
    doc = cluster_json(cluster, 7, history=5)
    jsonschema.validate(without_nulls(doc), swagger_schema("ClusterInfo"))
    assert doc["Version"] == {"Index": 7} and doc["CreatedAt"].startswith("1970-01-01T00:00:01.5")
    assert doc["Spec"]["Orchestration"] == {"TaskHistoryRetentionLimit": 5}
    # No VXLAN port nor address pool before there is an overlay across nodes.
    assert "DataPathPort" not in doc and "DefaultAddrPool" not in doc


def test_a_node_has_the_swagger_shape() -> None:
    node = Node(
        id="node1",
        hostname="host1",
        labels={"zone": "a"},
        resources=Resources(nano_cpus=2 * S, memory_bytes=1 << 30),
    )
    doc = node_json(node, 3)
    jsonschema.validate(without_nulls(doc), swagger_schema("Node"))
    assert doc["Spec"] == {"Labels": {"zone": "a"}, "Role": "manager", "Availability": "active"}
    assert doc["Status"]["State"] == "ready" and doc["ManagerStatus"]["Leader"] is True
    assert "ManagerStatus" not in node_json(node.model_copy(update={"role": "worker"}), 3)


def test_a_tasks_container_body_is_one_the_daemon_takes() -> None:
    template = {
        "ContainerSpec": {
            "Image": "busybox:latest",
            "Command": ["sh", "-c"],
            "Args": ["exec httpd -f"],
            "Env": ["A=1"],
            "Dir": "/srv",
            "User": "nobody",
            "Labels": {"tier": "front"},
            "StopSignal": "SIGINT",
            "StopGracePeriod": 1_500_000_000,
            "HealthCheck": {"Test": ["CMD", "true"], "Interval": 2 * S},
            "Hosts": ["10.0.0.5 db db.local"],
            "DNSConfig": {"Nameservers": ["10.0.0.53"]},
            "ReadOnly": True,
            "Init": True,
            "CapabilityDrop": ["NET_RAW"],
            "Mounts": [{"Type": "tmpfs", "Target": "/tmp"}],
            "Privileges": {"NoNewPrivileges": True, "Seccomp": {"Mode": "unconfined"}},
        },
        "Resources": {"Limits": {"NanoCPUs": S // 2, "MemoryBytes": 64 << 20, "Pids": 50}},
        "Networks": [{"Target": "shop_default", "Aliases": ["web"]}],
    }
    svc = web()
    t = task(2, TaskState.ASSIGNED).model_copy(update={"spec": template})
    body = create_body(svc, t)
    assert container_name(svc, t) == "shop_web.2.task2"
    assert body["Entrypoint"] == ["sh", "-c"] and body["Cmd"] == ["exec httpd -f"]
    assert body["StopTimeout"] == 2  # 1.5 s, rounded up
    assert body["Labels"]["com.docker.swarm.service.name"] == "shop_web"
    assert body["Labels"]["com.docker.swarm.task.id"] == "task2"
    assert body["Labels"]["tier"] == "front"
    assert body["HostConfig"]["ExtraHosts"] == ["db:10.0.0.5", "db.local:10.0.0.5"]
    assert body["HostConfig"]["RestartPolicy"] == {"Name": "no"}
    # The first network at create (the others are connected before start); the
    # service's names belong to its endpoint (the VIP), not to the container.
    assert body["HostConfig"]["NetworkMode"] == "shop_default"
    assert body["NetworkingConfig"]["EndpointsConfig"] == {"shop_default": {}}
    # The daemon's own parser of create bodies reads it as meant.
    parsed = parse_create(body)
    assert (parsed.image, parsed.working_dir, parsed.user) == ("busybox:latest", "/srv", "nobody")
    assert parsed.memory == 64 << 20 and parsed.nano_cpus == S // 2 and parsed.pids_limit == 50
    assert parsed.readonly_rootfs and parsed.init and parsed.cap_drop == ("CAP_NET_RAW",)
    assert parsed.healthcheck == {"Test": ["CMD", "true"], "Interval": 2 * S}
    assert [m.target for m in parsed.mounts] == ["/tmp"]
    assert parsed.no_new_privileges and not parsed.seccomp


def test_privileges_run_as_security_options_or_are_refused_by_name() -> None:
    # What `docker stack deploy` sends when the file says nothing of them.
    assert security_options({"Privileges": {"CredentialSpec": None, "SELinuxContext": None}}) == []
    assert security_options({"Privileges": {"AppArmor": {"Mode": "disabled"}}}) == []
    for privileges, words in (
        ({"CredentialSpec": {"File": "x.json"}}, "CredentialSpec"),
        ({"SELinuxContext": {"Type": "svirt_t"}}, "SELinux"),
        ({"Seccomp": {"Mode": "custom", "Profile": "{}"}}, "custom"),
    ):
        with pytest.raises(ValueError, match=words):
            security_options({"Privileges": privileges})


def test_a_tasks_digest_is_kept_but_not_across_a_new_spec() -> None:
    t = task(1, TaskState.RUNNING)
    first = t.digest
    assert t.model_copy(update={"slot": 2}).digest == first
    assert t.model_copy(update={"spec": {"ContainerSpec": {"Image": "b"}}}).digest != first
