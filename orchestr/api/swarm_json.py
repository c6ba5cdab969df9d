"""The Engine API's JSON for services, tasks and nodes (what `docker service ls|ps|
inspect` and `docker node ls` read), from the control plane's objects.

Pure: each function takes an object and the store revision it was read at (the
Engine's `Version.Index`, which clients send back on update) and returns a dict shaped
as the v1.41 swagger's Service, Task and Node. Times are RFC 3339 with nanoseconds, UTC,
as dockerd writes them.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from orchestr.api.swarm import (
    Node,
    Secret,
    Service,
    SwarmCluster,
    Task,
    TaskState,
    is_global,
    replicas,
)

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time, which dockerd shows for "never"


def rfc3339(seconds: float) -> str:
    if not seconds:
        return ZERO_TIME
    whole = int(seconds)
    nanos = round((seconds - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    stamp = _dt.datetime.fromtimestamp(whole, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


def service_json(
    service: Service,
    index: int,
    tasks: list[Task] | None = None,
    nodes: list[Node] | None = None,
    vips: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """A Service; with `tasks`, its ServiceStatus too (`GET /services?status=true`);
    `vips`, (network id, address/prefix) of its virtual IPs."""
    doc: dict[str, Any] = {
        "ID": service.id,
        "Version": {"Index": index},
        "CreatedAt": rfc3339(service.created_at),
        "UpdatedAt": rfc3339(service.updated_at or service.created_at),
        "Spec": service.spec,
        "Endpoint": {"Spec": service.spec.get("EndpointSpec") or {}},
    }
    if service.ports:
        doc["Endpoint"]["Ports"] = service.ports
    if vips:
        doc["Endpoint"]["VirtualIPs"] = [{"NetworkID": n, "Addr": a} for n, a in vips]
    if service.previous_spec is not None:
        doc["PreviousSpec"] = service.previous_spec
    status = service.update_status
    if status is not None:
        update: dict[str, Any] = {"State": status.state.api, "Message": status.message}
        if status.started_at:
            update["StartedAt"] = rfc3339(status.started_at)
        if status.completed_at:
            update["CompletedAt"] = rfc3339(status.completed_at)
        doc["UpdateStatus"] = update
    if tasks is not None:
        mine = [t for t in tasks if t.service_id == service.id]
        running = sum(1 for t in mine if t.state == TaskState.RUNNING)
        if is_global(service.spec):
            ready = {n.id for n in nodes or [] if n.ready and n.availability != "drain"}
            desired = sum(
                1
                for t in mine
                if t.desired_state <= TaskState.RUNNING and (not ready or t.node_id in ready)
            )
        else:
            desired = replicas(service.spec)
        doc["ServiceStatus"] = {"RunningTasks": running, "DesiredTasks": desired}
    return doc


def task_json(task: Task, index: int, service: Service | None = None) -> dict[str, Any]:
    status = task.status
    state: dict[str, Any] = {
        "Timestamp": rfc3339(status.timestamp),
        "State": status.state.api,
        "Message": status.message or status.state.api,
    }
    if status.err:
        state["Err"] = status.err
    if status.container_id:
        state["ContainerStatus"] = {
            "ContainerID": status.container_id,
            "ExitCode": status.exit_code if status.exit_code is not None else 0,
        }
    elif task.state == TaskState.PENDING and task.pending_reason:
        state["Err"] = task.pending_reason
    doc: dict[str, Any] = {
        "ID": task.id,
        "Version": {"Index": index},
        "CreatedAt": rfc3339(task.created_at),
        "UpdatedAt": rfc3339(status.timestamp or task.created_at),
        "Labels": {},
        "Spec": task.spec,
        "ServiceID": task.service_id,
        "Status": state,
        "DesiredState": task.desired_state.api,
    }
    if task.slot:
        doc["Slot"] = task.slot
    if task.node_id:
        doc["NodeID"] = task.node_id
    if service is not None:
        doc["Name"] = task_name(service, task)
    return doc


def task_name(service: Service, task: Task) -> str:
    """`web.2` (replicated) or `web.<node id>` (global), as the docker CLI names tasks;
    the container adds `.<task id>`."""
    return f"{service.name}.{task.slot if task.slot else task.node_id}"


def node_json(node: Node, index: int, *, leader: bool = True, addr: str = "") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "ID": node.id,
        "Version": {"Index": index},
        "CreatedAt": ZERO_TIME,
        "UpdatedAt": ZERO_TIME,
        "Spec": {
            "Labels": dict(node.labels),
            "Role": node.role,
            "Availability": node.availability,
        },
        "Description": {
            "Hostname": node.hostname,
            "Platform": {"Architecture": node.arch, "OS": node.os},
            "Resources": {
                "NanoCPUs": node.resources.nano_cpus,
                "MemoryBytes": node.resources.memory_bytes,
            },
            "Engine": {"EngineVersion": "", "Labels": dict(node.engine_labels), "Plugins": []},
        },
        "Status": {"State": "ready" if node.ready else "down", "Addr": addr or "127.0.0.1"},
    }
    if node.role == "manager":
        doc["ManagerStatus"] = {
            "Leader": leader,
            "Reachability": "reachable" if node.ready else "unreachable",
            "Addr": f"{addr or '127.0.0.1'}:2377",
        }
    return doc


def cluster_json(cluster: SwarmCluster, index: int, *, history: int) -> dict[str, Any]:
    """Engine API ClusterInfo: what `docker info` and `docker swarm inspect` show.

    Only what holds here is filled in: the task history kept per slot (`history`). The
    Raft, dispatcher and CA settings, the address pool and the VXLAN port belong to a
    cluster of several nodes, which a cluster of one does not have yet; they are left
    out (zero), and the docker CLI prints them as such."""
    return {
        "ID": cluster.id,
        "Version": {"Index": index},
        "CreatedAt": rfc3339(cluster.created_at),
        "UpdatedAt": rfc3339(cluster.updated_at),
        "Spec": {
            "Name": "default",
            "Labels": {},
            "Orchestration": {"TaskHistoryRetentionLimit": history},
            "Raft": {},
            "Dispatcher": {},
            "CAConfig": {},
            "TaskDefaults": {},
            "EncryptionConfig": {"AutoLockManagers": False},
        },
        "TLSInfo": {},
        "RootRotationInProgress": False,
    }


def secret_json(obj: Secret, index: int, *, with_data: bool) -> dict[str, Any]:
    """A Secret or a Config: a secret's data is never shown (`with_data` for configs)."""
    spec = {k: v for k, v in obj.spec.items() if with_data or k != "Data"}
    return {
        "ID": obj.id,
        "Version": {"Index": index},
        "CreatedAt": rfc3339(obj.created_at),
        "UpdatedAt": rfc3339(obj.updated_at),
        "Spec": spec,
    }
