"""A task's container: its name, labels and Engine API create body (pure).

As Swarm's agent makes them: the container is named `<service>.<slot>.<task id>`
(`<service>.<node id>.<task id>` for a global service) and labelled with the service,
task and node it belongs to, so `docker ps` shows where it comes from and the agent
finds its containers again after a restart. The TaskTemplate's ContainerSpec maps onto
the create body field by field; the restart policy is the orchestrator's (a new task),
never the container's.
"""

from __future__ import annotations

from typing import Any

from orchestr.api.swarm import NS, Service, Task, security_options

LABEL_SERVICE_ID = "com.docker.swarm.service.id"
LABEL_SERVICE_NAME = "com.docker.swarm.service.name"
LABEL_TASK = "com.docker.swarm.task"
LABEL_TASK_ID = "com.docker.swarm.task.id"
LABEL_TASK_NAME = "com.docker.swarm.task.name"
LABEL_NODE_ID = "com.docker.swarm.node.id"


def container_name(service: Service, task: Task) -> str:
    return f"{service.name}.{task.slot if task.slot else task.node_id}.{task.id}"


def labels(service: Service, task: Task) -> dict[str, str]:
    spec = task.spec.get("ContainerSpec") or {}
    out = {str(k): str(v) for k, v in (spec.get("Labels") or {}).items()}
    out.update(
        {
            LABEL_SERVICE_ID: service.id,
            LABEL_SERVICE_NAME: service.name,
            LABEL_TASK: "",
            LABEL_TASK_ID: task.id,
            LABEL_TASK_NAME: container_name(service, task),
            LABEL_NODE_ID: task.node_id,
        }
    )
    return out


def networks_of(task: Task) -> list[str]:
    """The networks a task's container joins (NetworkAttachmentConfig.Target), in order."""
    return [str(n["Target"]) for n in task.spec.get("Networks") or [] if n.get("Target")]


def service_names(service: Service) -> dict[str, list[str]]:
    """Network → the names the service answers to there: its name and the attachment's
    aliases (Swarm's: they resolve to the service, not to one task)."""
    out = {}
    for n in service.template.get("Networks") or []:
        if n.get("Target"):
            out[str(n["Target"])] = list(dict.fromkeys([service.name, *(n.get("Aliases") or [])]))
    return out


def ingress_ports(service: Service) -> list[tuple[int, str, int]]:
    """(published port, protocol, target port) of each port the service publishes in
    ingress mode (Endpoint.Ports, as the manager gave them)."""
    return [
        (int(p["PublishedPort"]), str(p["Protocol"]), int(p["TargetPort"]))
        for p in service.ports
        if p.get("PublishMode") == "ingress" and p.get("PublishedPort")
    ]


def host_bindings(service: Service) -> dict[str, list[dict[str, str]]]:
    """The port bindings of a task's container for the service's host-mode ports (a
    PublishedPort of 0: any free port of the node)."""
    out: dict[str, list[dict[str, str]]] = {}
    for p in service.ports:
        if p.get("PublishMode") == "host":
            published = str(p.get("PublishedPort") or "")
            key = f"{p['TargetPort']}/{p['Protocol']}"
            out.setdefault(key, []).append({"HostIp": "", "HostPort": published})
    return out


def endpoint_mode(service: Service) -> str:
    return str((service.spec.get("EndpointSpec") or {}).get("Mode") or "vip")


def create_body(
    service: Service, task: Task, files: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The `POST /containers/create` body of `task`'s container; `files`, the mounts
    of its secrets and configs (written by the worker)."""
    spec: dict[str, Any] = task.spec.get("ContainerSpec") or {}
    body: dict[str, Any] = {
        "Image": spec.get("Image", ""),
        "Labels": labels(service, task),
        "Env": list(spec.get("Env") or []),
        "Tty": bool(spec.get("TTY")),
        "OpenStdin": bool(spec.get("OpenStdin")),
    }
    if spec.get("Command"):
        body["Entrypoint"] = list(spec["Command"])
    if spec.get("Args"):
        body["Cmd"] = list(spec["Args"])
    for ours, theirs in (("WorkingDir", "Dir"), ("User", "User"), ("Hostname", "Hostname")):
        if spec.get(theirs):
            body[ours] = spec[theirs]
    if spec.get("StopSignal"):
        body["StopSignal"] = spec["StopSignal"]
    grace = spec.get("StopGracePeriod")
    if isinstance(grace, int) and not isinstance(grace, bool):
        body["StopTimeout"] = max(0, -(-grace // NS))  # whole seconds, rounded up
    health = spec.get("HealthCheck") or spec.get("Healthcheck")
    if health:
        body["Healthcheck"] = health
    body["HostConfig"] = _host_config(task, spec)
    bindings = host_bindings(service)
    if bindings:
        body["ExposedPorts"] = {key: {} for key in bindings}
        body["HostConfig"]["PortBindings"] = bindings
    if files:
        body["HostConfig"]["Mounts"] = [*body["HostConfig"].get("Mounts", []), *files]
    targets = networks_of(task)
    if targets:
        # The first network at create, the others connected before start (as dockerd
        # does); the service's names are the service endpoint's, not the container's.
        body["HostConfig"]["NetworkMode"] = targets[0]
        body["NetworkingConfig"] = {"EndpointsConfig": {targets[0]: {}}}
    return body


def _host_config(task: Task, spec: dict[str, Any]) -> dict[str, Any]:
    host: dict[str, Any] = {"RestartPolicy": {"Name": "no"}}
    if spec.get("ReadOnly"):
        host["ReadonlyRootfs"] = True
    if spec.get("Init") is not None:
        host["Init"] = bool(spec["Init"])
    for ours, theirs in (
        ("CapAdd", "CapabilityAdd"),
        ("CapDrop", "CapabilityDrop"),
        ("Ulimits", "Ulimits"),
        ("Mounts", "Mounts"),
    ):
        if spec.get(theirs):
            host[ours] = list(spec[theirs])
    if spec.get("Sysctls"):
        host["Sysctls"] = dict(spec["Sysctls"])
    security = security_options(spec)  # checked when the service was created
    if security:
        host["SecurityOpt"] = security
    if spec.get("Groups"):
        host["GroupAdd"] = list(spec["Groups"])
    hosts = [_extra_host(line) for line in spec.get("Hosts") or []]
    if hosts:
        host["ExtraHosts"] = [h for pair in hosts for h in pair]
    dns = spec.get("DNSConfig") or {}
    for ours, theirs in (
        ("Dns", "Nameservers"),
        ("DnsSearch", "Search"),
        ("DnsOptions", "Options"),
    ):
        if dns.get(theirs):
            host[ours] = list(dns[theirs])
    limits = (task.spec.get("Resources") or {}).get("Limits") or {}
    if limits.get("NanoCPUs"):
        host["NanoCpus"] = int(limits["NanoCPUs"])
    if limits.get("MemoryBytes"):
        host["Memory"] = int(limits["MemoryBytes"])
    if limits.get("Pids"):
        host["PidsLimit"] = int(limits["Pids"])
    return host


def _extra_host(line: str) -> list[str]:
    """`IP name [alias…]` (hosts(5), as ContainerSpec.Hosts has them) → `name:IP` each."""
    words = str(line).split()
    if len(words) < 2:
        return []
    ip, names = words[0], words[1:]
    return [f"{name}:{ip}" for name in names]
