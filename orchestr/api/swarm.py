"""The control plane's objects: services (desired state), tasks (observed units), nodes.

Shaped after swarmkit's task model, which the Engine API's services and tasks show:

- a `Service` holds its spec as the Engine API's ServiceSpec (a JSON object with the
  Engine's PascalCase keys, exactly what `POST /services/create` takes and `docker
  service inspect` shows), its spec version, the spec before the last update (for
  rollback) and the update's status;
- a `Task` is one unit of a service: a slot of a replicated service or a node of a
  global one. The control plane alone writes its `desired_state`; the node agent alone
  writes its `status`. States only move forward (`TaskState` is ordered, with gaps, as
  swarmkit's). A task whose container has a health check is reported running only once
  it is healthy, and failed when it turns unhealthy (as Swarm's agent does), so the
  deciders read readiness from the state alone;
- a `Node` is a machine that runs tasks: its availability, readiness, labels and the
  resources it offers;
- a `Secret` or `Config` is a named blob that tasks get as a file (`TaskFile`).

The deciders (orchestr/orchestrator, orchestr/scheduler, orchestr/updater) read these as
frozen snapshots and return plans; nothing here does I/O. The few spec fields the
deciders need are read through the typed views at the bottom (`replicas`,
`restart_policy`, `update_config`, …), with Swarm's effective defaults.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NS = 1_000_000_000  # nanoseconds per second: the Engine API's durations


class TaskState(IntEnum):
    """swarmkit's task states, in the order a task goes through them (values as its)."""

    NEW = 0
    PENDING = 64  # waiting for the scheduler
    ASSIGNED = 192  # on a node; the node has not taken it yet
    ACCEPTED = 256
    PREPARING = 320
    READY = 384
    STARTING = 448
    RUNNING = 512
    COMPLETE = 576  # exited 0
    SHUTDOWN = 640  # stopped because it was asked to
    FAILED = 704
    REJECTED = 768  # the node could not run it
    REMOVE = 800  # desired only: shut down and forget
    ORPHANED = 832  # its node went away

    @property
    def api(self) -> str:
        """The Engine API's name: "running", "complete", …"""
        return self.name.lower()

    @property
    def terminal(self) -> bool:
        return self > TaskState.RUNNING


class TaskStatus(BaseModel):
    """What the agent last reported (the Engine API's Task.Status)."""

    model_config = ConfigDict(frozen=True)

    state: TaskState = TaskState.NEW
    timestamp: float = 0.0  # seconds since the epoch
    message: str = ""
    err: str = ""
    container_id: str = ""
    exit_code: int | None = None
    started_at: float = 0.0  # when it began running (kept by the agent in later reports)


class Task(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    service_id: str
    slot: int = 0  # replicated: 1…replicas; global: 0
    node_id: str = ""  # assigned by the scheduler (global: from the start)
    spec: dict[str, Any] = Field(default_factory=dict)  # the service's TaskTemplate
    spec_version: int = 0  # the service's spec version it was made from
    desired_state: TaskState = TaskState.RUNNING
    status: TaskStatus = Field(default_factory=TaskStatus)
    created_at: float = 0.0
    pending_reason: str = ""  # why the scheduler has not placed it
    # (port, protocol) its container publishes on its node (the service's host-mode ports)
    host_ports: list[tuple[int, str]] = Field(default_factory=list)

    @functools.cached_property
    def digest(self) -> str:
        """What it runs, as a digest (its spec and the host ports it holds), computed
        once per object (the deciders ask every round)."""
        return task_digest(self.spec, self.host_ports)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Task:
        copied = super().model_copy(update=update, deep=deep)
        if update and ("spec" in update or "host_ports" in update):
            copied.__dict__.pop("digest", None)  # computed again from the new spec
        return copied

    @property
    def state(self) -> TaskState:
        return self.status.state

    @property
    def alive(self) -> bool:
        """Wanted running and not ended: counts as one of the service's tasks."""
        return self.desired_state <= TaskState.RUNNING and not self.status.state.terminal


class UpdateState(IntEnum):
    UPDATING = 1
    PAUSED = 2
    COMPLETED = 3
    ROLLBACK_STARTED = 4
    ROLLBACK_PAUSED = 5
    ROLLBACK_COMPLETED = 6

    @property
    def api(self) -> str:
        return self.name.lower()


class UpdateStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    state: UpdateState
    started_at: float = 0.0
    completed_at: float = 0.0
    message: str = ""


class Service(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    spec: dict[str, Any]  # the Engine API's ServiceSpec, defaults filled in
    version: int = 1  # bumped at every spec change
    previous_spec: dict[str, Any] | None = None
    update_status: UpdateStatus | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    # Endpoint.Ports: the spec's published ports, each with its published port as given
    # (orchestr.manager.ports)
    ports: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.spec.get("Name", ""))

    @property
    def template(self) -> dict[str, Any]:
        template = self.spec.get("TaskTemplate")
        return template if isinstance(template, dict) else {}

    @property
    def task_digest(self) -> str:
        """The digest of what its tasks should run (Task.digest of an up-to-date task):
        a new task template, or new host-mode ports, make its tasks out of date."""
        return task_digest(self.template, host_ports(self))

    @property
    def rolling_back(self) -> bool:
        s = self.update_status
        return s is not None and s.state in (
            UpdateState.ROLLBACK_STARTED,
            UpdateState.ROLLBACK_PAUSED,
            UpdateState.ROLLBACK_COMPLETED,
        )


class Resources(BaseModel):
    model_config = ConfigDict(frozen=True)

    nano_cpus: int = 0
    memory_bytes: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            nano_cpus=self.nano_cpus + other.nano_cpus,
            memory_bytes=self.memory_bytes + other.memory_bytes,
        )

    def fits_in(self, available: Resources) -> bool:
        return self.nano_cpus <= available.nano_cpus and self.memory_bytes <= available.memory_bytes


class Node(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    hostname: str = ""
    role: str = "manager"  # manager | worker
    availability: str = "active"  # active | pause | drain
    ready: bool = True  # its agent reports (down once its heartbeats lapse)
    labels: dict[str, str] = Field(default_factory=dict)  # node.labels.* (set by managers)
    engine_labels: dict[str, str] = Field(default_factory=dict)  # engine.labels.*
    os: str = "linux"
    arch: str = "x86_64"
    resources: Resources = Field(default_factory=Resources)  # what it offers in all


class Secret(BaseModel):
    """A secret (or, as `Config`, a config): a named blob kept in the store and mounted
    as a file into the containers of the services that reference it."""

    model_config = ConfigDict(frozen=True)

    id: str
    spec: dict[str, Any]  # SecretSpec / ConfigSpec: Name, Labels, Data (base64)
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def name(self) -> str:
        return str(self.spec.get("Name", ""))

    @property
    def data(self) -> bytes:
        return base64.b64decode(str(self.spec.get("Data") or ""))


class Config(Secret):
    pass


@dataclass(frozen=True)
class TaskFile:
    """A secret or config as a file of a task's container."""

    target: str  # absolute path in the container
    data: bytes
    uid: int = 0
    gid: int = 0
    mode: int = 0o444


def file_refs(container: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """ContainerSpec's secret and config references, as ("secret" | "config", ref)."""
    out = []
    for kind, field in (("secret", "Secrets"), ("config", "Configs")):
        for ref in container.get(field) or []:
            out.append((kind, ref if isinstance(ref, dict) else {}))
    return out


def file_target(kind: str, ref: dict[str, Any]) -> str:
    """Where a reference's file goes: a relative name under /run/secrets for a secret,
    under / for a config (Swarm's places); an absolute path as it is."""
    name = str((ref.get("File") or {}).get("Name") or ref.get(f"{kind.title()}Name") or "")
    if name.startswith("/"):
        return name
    return f"/run/secrets/{name}" if kind == "secret" else f"/{name}"


class SwarmCluster(BaseModel):
    """The cluster itself (`docker swarm inspect`): made when its first manager starts."""

    model_config = ConfigDict(frozen=True)

    id: str
    created_at: float = 0.0
    updated_at: float = 0.0


# -- typed views of a ServiceSpec ---------------------------------------------------------


class RestartPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    condition: str = "any"  # none | on-failure | any
    delay: float = 5.0  # seconds (swarmkit's default; the Compose spec says 0)
    max_attempts: int = 0  # 0: unlimited
    window: float = 0.0  # seconds; 0: attempts are counted over the task's whole life


class UpdateConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    parallelism: int = 1  # 0: all at once
    delay: float = 0.0
    failure_action: str = "pause"  # pause | continue | rollback
    monitor: float = 5.0
    max_failure_ratio: float = 0.0
    order: str = "stop-first"  # stop-first | start-first


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _seconds(ns: Any, default: float) -> float:
    return ns / NS if isinstance(ns, int | float) and not isinstance(ns, bool) else default


def is_global(spec: dict[str, Any]) -> bool:
    return _get(spec, "Mode", "Global") is not None


def replicas(spec: dict[str, Any]) -> int:
    """Desired replicas of a replicated service (1 when not given, as Swarm)."""
    value = _get(spec, "Mode", "Replicated", "Replicas")
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def restart_policy(template: dict[str, Any]) -> RestartPolicy:
    p = template.get("RestartPolicy") or {}
    d = RestartPolicy()
    return RestartPolicy(
        condition=str(p.get("Condition") or d.condition),
        delay=_seconds(p.get("Delay"), d.delay),
        max_attempts=int(p.get("MaxAttempts") or 0),
        window=_seconds(p.get("Window"), d.window),
    )


def update_config(spec: dict[str, Any], rollback: bool = False) -> UpdateConfig:
    c = spec.get("RollbackConfig" if rollback else "UpdateConfig") or {}
    d = UpdateConfig()
    parallelism = c.get("Parallelism")
    return UpdateConfig(
        parallelism=parallelism if isinstance(parallelism, int) else d.parallelism,
        delay=_seconds(c.get("Delay"), d.delay),
        failure_action=str(c.get("FailureAction") or d.failure_action),
        monitor=_seconds(c.get("Monitor"), d.monitor) or d.monitor,
        max_failure_ratio=float(c.get("MaxFailureRatio") or 0.0),
        order=str(c.get("Order") or d.order),
    )


def reservations(template: dict[str, Any]) -> Resources:
    r = _get(template, "Resources", "Reservations") or {}
    return Resources(
        nano_cpus=int(r.get("NanoCPUs") or 0), memory_bytes=int(r.get("MemoryBytes") or 0)
    )


def constraints(template: dict[str, Any]) -> list[str]:
    value = _get(template, "Placement", "Constraints")
    return [str(c) for c in value] if isinstance(value, list) else []


def spread_labels(template: dict[str, Any]) -> list[str]:
    """The labels of the placement preferences (`spread: node.labels.zone`), in order."""
    out = []
    for pref in _get(template, "Placement", "Preferences") or []:
        label = _get(pref, "Spread", "SpreadDescriptor")
        if isinstance(label, str) and label:
            out.append(label)
    return out


def max_replicas_per_node(template: dict[str, Any]) -> int:
    value = _get(template, "Placement", "MaxReplicas")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def security_options(container: dict[str, Any]) -> list[str]:
    """ContainerSpec.Privileges as the container's SecurityOpt. ValueError names what
    cannot be honoured here: a credential spec (Windows), an SELinux context, a custom
    seccomp profile. AppArmor's `default` and `disabled` are both what runs here (no
    AppArmor profile is applied to containers)."""
    privileges = container.get("Privileges") or {}
    if not isinstance(privileges, dict):
        raise ValueError("ContainerSpec.Privileges: a JSON object")
    if privileges.get("CredentialSpec"):
        raise ValueError("ContainerSpec.Privileges.CredentialSpec: for Windows containers")
    selinux = privileges.get("SELinuxContext") or {}
    if any(selinux.get(k) for k in ("User", "Role", "Type", "Level")):
        raise ValueError("ContainerSpec.Privileges.SELinuxContext: SELinux is not supported")
    out = []
    seccomp = str((privileges.get("Seccomp") or {}).get("Mode") or "default")
    if seccomp == "unconfined":
        out.append("seccomp=unconfined")
    elif seccomp != "default":
        raise ValueError(f"ContainerSpec.Privileges.Seccomp: {seccomp} profiles are not supported")
    apparmor = str((privileges.get("AppArmor") or {}).get("Mode") or "default")
    if apparmor not in ("default", "disabled"):
        raise ValueError(f"ContainerSpec.Privileges.AppArmor: unknown mode {apparmor}")
    if privileges.get("NoNewPrivileges"):
        out.append("no-new-privileges")
    return out


def host_ports(service: Service) -> list[tuple[int, str]]:
    """The ports a task of the service holds on its node: host-mode, with a number."""
    return sorted(
        (int(p["PublishedPort"]), str(p["Protocol"]))
        for p in service.ports
        if p.get("PublishMode") == "host" and p.get("PublishedPort")
    )


def task_digest(template: dict[str, Any], ports: list[tuple[int, str]]) -> str:
    """A task's identity: its template, and the host-mode ports it holds (as Swarm, a
    task whose host ports changed is replaced)."""
    if not ports:
        return spec_digest(template)
    return spec_digest({"TaskTemplate": template, "HostPorts": [list(p) for p in ports]})


def spec_digest(template: dict[str, Any]) -> str:
    """A task template's identity: whether a task runs the service's current spec."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
