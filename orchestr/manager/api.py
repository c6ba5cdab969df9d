"""The Engine API's service, task and node endpoints (v1.41), over the store.

    POST   /services/create         {"ID", "Warnings"}   409 name taken, 400 bad spec
    GET    /services                [Service]            filters: id, name, label, mode;
                                                         status=true adds ServiceStatus
    GET    /services/{id}           Service              by ID, name or unique ID prefix
    POST   /services/{id}/update    {"Warnings"}         ?version=N (409 when stale),
                                                         ?rollback=previous
    DELETE /services/{id}           200
    GET    /services/{id}/logs      log stream           orchestr.manager.logs
    GET    /tasks                   [Task]               filters: id, name, service, node,
                                                         desired-state, label
    GET    /tasks/{id}              Task
    GET    /tasks/{id}/logs         log stream
    GET    /nodes                   [Node]               filters: id, name, role, membership
    GET    /nodes/{id}              Node                 by ID, hostname or "self"
    POST   /nodes/{id}/update       200                  ?version=N; labels, availability
    GET    /swarm                   ClusterInfo          a cluster of one
    /secrets, /configs                                   orchestr.manager.files

Specs are stored with Swarm's effective defaults filled in (orchestr.compose.deploy's
`with_defaults`: monitor 5 s, restart delay 5 s, …), so that `docker service inspect`
shows what applies. The API writes services only; the manager's controller makes and
changes tasks. A new
spec keeps the old one as PreviousSpec and clears the update status (the updater starts
the rollout); `rollback=previous` swaps them and sets rollback_started.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from orchestr.api.filters import parse_filters
from orchestr.api.http import HttpError, Request, Response, Router, json_response, off_loop
from orchestr.api.logstream import ContainerLogs
from orchestr.api.swarm import (
    Node,
    Service,
    SwarmCluster,
    Task,
    TaskState,
    UpdateState,
    UpdateStatus,
    constraints,
    is_global,
    security_options,
)
from orchestr.api.swarm_json import cluster_json, node_json, service_json, task_json
from orchestr.compose.deploy import with_defaults
from orchestr.manager import files, ports
from orchestr.manager.controller import new_object_id
from orchestr.manager.decide import HISTORY
from orchestr.manager.logs import LogStream, Options
from orchestr.manager.repo import (
    CLUSTER,
    NODES,
    SERVICES,
    TASKS,
    Read,
    Repo,
    encode,
    lookup,
)
from orchestr.scheduler.filters import ConstraintError, parse_constraint
from orchestr.state.base import Compare, Delete, Put

SERVICE_FILTERS = frozenset({"id", "name", "label", "mode"})
# `_up-to-date` is the docker CLI's own (its progress view of create/update/rollback):
# tasks of the service's current spec only.
TASK_FILTERS = frozenset({"id", "name", "service", "node", "desired-state", "label", "_up-to-date"})
NODE_FILTERS = frozenset({"id", "name", "role", "membership", "label", "node.label"})


NOT_YET = (
    ("POST", "/swarm/leave"),
    ("POST", "/swarm/update"),
    ("GET", "/swarm/unlockkey"),
    ("POST", "/swarm/unlock"),
)


class NotFound(LookupError):
    pass


class Conflict(Exception):
    pass


_STATUSES = ((NotFound, 404), (Conflict, 409), (ValueError, 400))


def check_spec(spec: Any) -> dict[str, Any]:
    """A ServiceSpec this manager can run, or ValueError naming what is wrong."""
    if not isinstance(spec, dict):
        raise ValueError("the request body must be a JSON object (ServiceSpec)")
    template = spec.get("TaskTemplate")
    if not isinstance(template, dict):
        raise ValueError("TaskTemplate: required")
    container = template.get("ContainerSpec")
    if not isinstance(container, dict) or not container.get("Image"):
        raise ValueError("ContainerSpec: image reference must be provided")
    if template.get("PluginSpec") or template.get("NetworkAttachmentSpec"):
        raise ValueError("TaskTemplate: only ContainerSpec tasks are supported")
    security_options(container)
    driver = (template.get("LogDriver") or {}).get("Name")
    if driver and driver != "json-file":
        raise ValueError(f"TaskTemplate.LogDriver: the {driver} log driver is not supported")
    ports.check(spec.get("EndpointSpec"))
    mode = spec.get("Mode") or {"Replicated": {"Replicas": 1}}
    if not isinstance(mode, dict) or len(mode) != 1:
        raise ValueError("Mode: one of Replicated or Global")
    kind = next(iter(mode))
    if kind not in ("Replicated", "Global"):
        raise ValueError(f"Mode: {kind} services are not supported yet")
    replicas = (mode.get("Replicated") or {}).get("Replicas", 1)
    if kind == "Replicated" and (not isinstance(replicas, int) or replicas < 0):
        raise ValueError("Mode.Replicated.Replicas: a number ≥ 0")
    for text in constraints(template):
        try:
            parse_constraint(text)
        except ConstraintError as e:
            raise ValueError(str(e)) from None
    name = spec.get("Name")
    if name is not None and not isinstance(name, str):
        raise ValueError("Name: a string")
    # Stored with Swarm's effective defaults, so that inspect shows what applies.
    return with_defaults({**spec, "Mode": mode})


class ServicesApi:
    def __init__(
        self,
        repo: Repo,
        node_id: str,
        clock: Callable[[], float] = time.time,
        logs: ContainerLogs | None = None,
    ) -> None:
        self.repo = repo
        self.node_id = node_id
        self.clock = clock
        self.logs = logs  # the node's container logs (service and task logs)
        # The ports the node's containers publish (set by the daemon): a service cannot
        # publish one of them in ingress mode.
        self.node_ports: Callable[[], set[tuple[int, str]]] = set
        # A service's virtual IPs on the node's networks (set by the daemon).
        self.vips: Callable[[str], list[tuple[str, str]]] = lambda _service_id: []
        self.router = Router()
        r = self.router
        r.route("POST", "/services/create")(self.create)
        r.route("GET", "/services")(self.list_services)
        r.route("GET", "/services/{id}")(self.inspect)
        r.route("POST", "/services/{id}/update")(self.update)
        r.route("DELETE", "/services/{id}")(self.remove)
        r.route("GET", "/services/{id}/logs")(self.service_logs)
        r.route("GET", "/tasks")(self.list_tasks)
        r.route("GET", "/tasks/{id}")(self.inspect_task)
        r.route("GET", "/tasks/{id}/logs")(self.task_logs)
        r.route("GET", "/nodes")(self.list_nodes)
        r.route("GET", "/nodes/{id}")(self.inspect_node)
        r.route("POST", "/nodes/{id}/update")(self.update_node)
        r.route("DELETE", "/nodes/{id}")(self.remove_node)
        r.route("GET", "/swarm")(self.inspect_swarm)
        r.route("POST", "/swarm/init")(self.already_in_swarm)
        r.route("POST", "/swarm/join")(self.already_in_swarm)
        # Swarm's other endpoints: a clear answer, not a 404 that looks like a typo.
        for kind in (files.SECRET, files.CONFIG):
            r.include(files.FilesApi(repo, kind, clock).router)
        for method, path in NOT_YET:
            r.route(method, path)(self.not_yet)

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await off_loop(_STATUSES, fn, *args)

    async def not_yet(self, request: Request) -> Response:
        raise HttpError(501, f"{request.method} {request.path}: not supported yet")

    # -- services ----------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        body = await request.json()
        try:
            spec = check_spec(body)
        except ValueError as e:
            raise HttpError(400, str(e)) from None
        service_id = await self._call(self._create, spec)
        return json_response({"ID": service_id, "Warnings": None}, 201)

    def _create(self, spec: dict[str, Any]) -> str:
        service_id = new_object_id()
        name = spec.get("Name") or f"svc-{service_id[:10]}"
        spec = {**spec, "Name": name}
        now = self.clock()
        service = Service(id=service_id, spec=spec, created_at=now, updated_at=now)
        read = self.repo.snapshot()
        if any(s.name == name for s in read.services.values()):
            raise Conflict(f"service {name} already exists (name conflicts with an existing one)")
        resolved, held = files.resolve(self.repo.store, spec)
        service = service.model_copy(update={"spec": resolved})
        given = ports.allocate(service, read.services.values(), self.node_ports())
        service = service.model_copy(update={"ports": given})
        key = SERVICES + service_id
        compares = [Compare.absent(key), *held] + [
            Compare.mod_revision(SERVICES + s, "==", read.mod_of(SERVICES + s))
            for s in read.services
        ]
        result = self.repo.store.txn(compares, [Put(key, encode(service))], [])
        if not result.succeeded:
            return self._create(spec)  # another service came meanwhile: look again
        return service_id

    async def list_services(self, request: Request) -> Response:
        filters = parse_filters(request.json_arg("filters"), SERVICE_FILTERS)
        status = request.flag("status")
        read = await self._call(self.repo.snapshot)
        out = []
        for service in sorted(read.services.values(), key=lambda s: s.created_at):
            if not _service_matches(service, filters):
                continue
            tasks = list(read.tasks.values()) if status else None
            out.append(
                service_json(
                    service,
                    read.mod_of(SERVICES + service.id),
                    tasks,
                    _nodes(read),
                    self.vips(service.id),
                )
            )
        return json_response(out)

    async def inspect(self, request: Request) -> Response:
        read = await self._call(self.repo.snapshot)
        try:
            service = _find_service(read, request.params["id"])
        except NotFound as e:
            raise HttpError(404, str(e)) from None
        index = read.mod_of(SERVICES + service.id)
        return json_response(service_json(service, index, vips=self.vips(service.id)))

    async def update(self, request: Request) -> Response:
        body = await request.json()
        version = request.int_arg("version")
        rollback = request.arg("rollback") == "previous"
        spec = None
        if not rollback:
            try:
                spec = check_spec(body)
            except ValueError as e:
                raise HttpError(400, str(e)) from None
        await self._call(self._update, request.params["id"], spec, version)
        return json_response({"Warnings": None})

    def _update(self, ref: str, spec: dict[str, Any] | None, version: int | None) -> None:
        read = self.repo.snapshot()
        service = _find_service(read, ref)
        key = SERVICES + service.id
        current = read.mod_of(key)
        if version is not None and version != current:
            raise Conflict(
                f"update out of sequence: service {service.name} is at version {current},"
                f" not {version} (inspect it again)"
            )
        now = self.clock()
        if spec is None:  # rollback=previous
            if service.previous_spec is None:
                raise ValueError(f"service {service.name} does not have a previous spec")
            new = service.model_copy(
                update={
                    "spec": service.previous_spec,
                    "previous_spec": service.spec,
                    "version": service.version + 1,
                    "updated_at": now,
                    "update_status": UpdateStatus(
                        state=UpdateState.ROLLBACK_STARTED,
                        started_at=now,
                        message="manually requested rollback",
                    ),
                }
            )
        else:
            if spec.get("Name", service.name) != service.name:
                raise ValueError("Name: a service cannot be renamed")
            new = service.model_copy(
                update={
                    "spec": {**spec, "Name": service.name},
                    "previous_spec": service.spec,
                    "version": service.version + 1,
                    "updated_at": now,
                    "update_status": None,
                }
            )
        resolved, held = files.resolve(self.repo.store, new.spec)
        new = new.model_copy(update={"spec": resolved})
        given = ports.allocate(new, read.services.values(), self.node_ports())
        new = new.model_copy(update={"ports": given})
        if new.ports or service.ports:  # no other service took a port meanwhile
            held += [
                Compare.mod_revision(SERVICES + s, "==", read.mod_of(SERVICES + s))
                for s in read.services
                if s != service.id
            ]
        result = self.repo.store.txn(
            [Compare.mod_revision(key, "==", current), *held], [Put(key, encode(new))], []
        )
        if not result.succeeded:
            raise Conflict(f"update out of sequence: service {service.name} changed meanwhile")

    async def remove(self, request: Request) -> Response:
        await self._call(self._remove, request.params["id"])
        return Response(200, b"", None)

    def _remove(self, ref: str) -> None:
        read = self.repo.snapshot()
        service = _find_service(read, ref)
        self.repo.store.txn([], [Delete(SERVICES + service.id)], [])

    async def service_logs(self, request: Request) -> Response | None:
        options = Options.of(request)
        read = await self._call(self.repo.snapshot)
        try:
            service = _find_service(read, request.params["id"])
        except NotFound as e:
            raise HttpError(404, str(e)) from None
        tty = bool((service.template.get("ContainerSpec") or {}).get("TTY"))

        def of_service(read: Read) -> list[Task] | None:
            if service.id not in read.services:
                return None
            tasks = (t for t in read.tasks.values() if t.service_id == service.id)
            return sorted(tasks, key=lambda t: (t.slot, t.created_at))

        await self._log_stream(request, options, tty).run(of_service, more_tasks=True)
        return None

    def _log_stream(self, request: Request, options: Options, tty: bool) -> LogStream:
        if self.logs is None:
            raise HttpError(501, f"{request.path}: this node does not keep container logs")
        return LogStream(request, self.repo, self.logs, options, tty)

    # -- tasks -------------------------------------------------------------------------

    async def list_tasks(self, request: Request) -> Response:
        filters = parse_filters(request.json_arg("filters"), TASK_FILTERS)
        read = await self._call(self.repo.snapshot)
        wanted_services = set()
        for ref in filters.get("service", []):
            try:
                wanted_services.add(_find_service(read, ref).id)
            except NotFound:
                return json_response([])  # dockerd: an unknown service has no tasks
        out = []
        for task in sorted(read.tasks.values(), key=lambda t: (t.created_at, t.id)):
            service = read.services.get(task.service_id)
            if wanted_services and task.service_id not in wanted_services:
                continue
            if not _task_matches(task, service, filters):
                continue
            if _truthy(filters.get("_up-to-date")) and (
                service is None or task.digest != service.task_digest
            ):
                continue
            out.append(task_json(task, read.mod_of(TASKS + task.id), service))
        return json_response(out)

    async def inspect_task(self, request: Request) -> Response:
        read = await self._call(self.repo.snapshot)
        task = _find_task(read, request.params["id"])
        service = read.services.get(task.service_id)
        return json_response(task_json(task, read.mod_of(TASKS + task.id), service))

    async def task_logs(self, request: Request) -> Response | None:
        options = Options.of(request)
        read = await self._call(self.repo.snapshot)
        task = _find_task(read, request.params["id"])
        tty = bool((task.spec.get("ContainerSpec") or {}).get("TTY"))

        def of_task(read: Read) -> list[Task] | None:
            found = read.tasks.get(task.id)
            return None if found is None else [found]

        await self._log_stream(request, options, tty).run(of_task, more_tasks=False)
        return None

    # -- nodes -------------------------------------------------------------------------

    async def list_nodes(self, request: Request) -> Response:
        filters = parse_filters(request.json_arg("filters"), NODE_FILTERS)
        read = await self._call(self.repo.snapshot)
        out = []
        for node in sorted(read.nodes.values(), key=lambda n: n.id):
            if filters.get("id") and not any(node.id.startswith(v) for v in filters["id"]):
                continue
            if filters.get("name") and node.hostname not in filters["name"]:
                continue
            if filters.get("role") and node.role not in filters["role"]:
                continue
            out.append(node_json(node, read.mod_of(NODES + node.id)))
        return json_response(out)

    async def inspect_node(self, request: Request) -> Response:
        read = await self._call(self.repo.snapshot)
        node = self._find_node(read, request.params["id"])
        return json_response(node_json(node, read.mod_of(NODES + node.id)))

    def _find_node(self, read: Read, ref: str) -> Node:
        if ref == "self":
            ref = self.node_id
        for node in read.nodes.values():
            if ref in (node.id, node.hostname):
                return node
        matches = [n for n in read.nodes.values() if n.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        raise HttpError(404, f"node {ref} not found")

    async def update_node(self, request: Request) -> Response:
        """`docker node update`: labels, availability (active, pause, drain) and role.
        Draining moves the node's tasks (on a cluster of one: they wait, pending)."""
        body = await request.json()
        version = request.int_arg("version")
        try:
            change = _node_spec(body)
        except ValueError as e:
            raise HttpError(400, str(e)) from None
        await self._call(self._update_node, request.params["id"], change, version)
        return Response(200, b"", None)

    def _update_node(self, ref: str, change: dict[str, Any], version: int | None) -> None:
        read = self.repo.snapshot()
        node = self._find_node(read, ref)
        key = NODES + node.id
        if version is not None and version != read.mod_of(key):
            raise Conflict(
                f"update out of sequence: node {node.hostname} is at version"
                f" {read.mod_of(key)}, not {version} (inspect it again)"
            )
        managers = [n for n in read.nodes.values() if n.role == "manager"]
        if node.role == "manager" and change["role"] == "worker" and len(managers) == 1:
            raise ValueError("attempting to demote the last manager of the swarm")
        new = node.model_copy(update=change)
        result = self.repo.store.txn(
            [Compare.mod_revision(key, "==", read.mod_of(key))], [Put(key, encode(new))], []
        )
        if not result.succeeded:
            raise Conflict(f"update out of sequence: node {node.hostname} changed meanwhile")

    async def remove_node(self, request: Request) -> Response:
        read = await self._call(self.repo.snapshot)
        node = self._find_node(read, request.params["id"])
        raise HttpError(
            400,
            f"node {node.hostname} is the manager of this cluster of one: it cannot be"
            " removed (nodes join and leave with clusters of several nodes)",
        )

    def services_using(self, network_refs: list[str]) -> list[str]:
        """The names of the services whose tasks join a network (named by its ID or
        name, as a service's NetworkAttachmentConfig.Target may be)."""
        read = self.repo.snapshot()
        wanted = set(network_refs)
        return sorted(
            s.name
            for s in read.services.values()
            if any(n.get("Target") in wanted for n in s.template.get("Networks") or [])
        )

    # -- the swarm -----------------------------------------------------------------------

    def swarm_info(self) -> dict[str, Any]:
        """`Info.Swarm`: this node, a manager of a cluster of one (`docker info`, and
        every `orchestr up`: the nodes alone are read, not every task)."""
        kvs, _ = self.repo.store.range(NODES)
        nodes = [Node.model_validate_json(kv.value) for kv in kvs]
        found = self.repo.get(SwarmCluster, CLUSTER)
        managers = [n for n in nodes if n.role == "manager"]
        return {
            "NodeID": self.node_id,
            "NodeAddr": NODE_ADDR,
            "LocalNodeState": "active",
            "ControlAvailable": True,
            "Error": "",
            "RemoteManagers": [{"NodeID": n.id, "Addr": f"{NODE_ADDR}:2377"} for n in managers],
            "Nodes": len(nodes),
            "Managers": len(managers),
            "Cluster": None if found is None else cluster_json(*found, history=HISTORY),
        }

    async def inspect_swarm(self, request: Request) -> Response:
        found = await self._call(self.repo.get, SwarmCluster, CLUSTER)
        if found is None:
            raise HttpError(503, "this node is not part of a swarm yet (it is starting)")
        # No node can join a cluster of one yet: there are no join tokens to give.
        doc = {**cluster_json(*found, history=HISTORY), "JoinTokens": {"Worker": "", "Manager": ""}}
        return json_response(doc)

    async def already_in_swarm(self, request: Request) -> Response:
        raise HttpError(
            503,
            "This node is already part of a swarm: every orchestr daemon is a cluster of"
            " one (joining several nodes into one cluster is not supported yet)",
        )


NODE_ADDR = "127.0.0.1"  # a cluster of one listens to no other node


def _node_spec(body: Any) -> dict[str, Any]:
    """A NodeSpec as the fields of a Node it changes; ValueError names a bad one."""
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object (NodeSpec)")
    role = body.get("Role") or "manager"
    if role not in ("manager", "worker"):
        raise ValueError(f"Role: manager or worker, not {role!r}")
    availability = body.get("Availability") or "active"
    if availability not in ("active", "pause", "drain"):
        raise ValueError(f"Availability: active, pause or drain, not {availability!r}")
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ValueError("Labels: an object of strings")
    return {"role": role, "availability": availability, "labels": dict(labels)}


def _truthy(values: list[str] | None) -> bool:
    return bool(values) and values is not None and values[-1].lower() in ("1", "true")


def _nodes(read: Read) -> list[Any]:
    return list(read.nodes.values())


def _find_service(read: Read, ref: str) -> Service:
    found = lookup(read.services, ref)
    if found is None:
        raise NotFound(f"service {ref} not found")
    return found


def _find_task(read: Read, ref: str) -> Task:
    """A task by ID or unique ID prefix; 404 otherwise."""
    matches = [t for t in read.tasks.values() if t.id.startswith(ref)]
    exact = [t for t in matches if t.id == ref]
    if len(exact or matches) != 1:
        raise HttpError(404, f"task {ref} not found")
    return (exact or matches)[0]


def _labels_hold(labels: dict[str, Any], wanted: list[str]) -> bool:
    for item in wanted:
        key, eq, value = item.partition("=")
        if key not in labels or (eq and str(labels[key]) != value):
            return False
    return True


def _service_matches(service: Service, filters: dict[str, list[str]]) -> bool:
    if filters.get("id") and not any(service.id.startswith(v) for v in filters["id"]):
        return False
    if filters.get("name") and not any(service.name.startswith(v) for v in filters["name"]):
        return False
    if filters.get("mode"):
        mode = "global" if is_global(service.spec) else "replicated"
        if mode not in filters["mode"]:
            return False
    return _labels_hold(service.spec.get("Labels") or {}, filters.get("label", []))


def _task_matches(task: Task, service: Service | None, filters: dict[str, list[str]]) -> bool:
    if filters.get("id") and not any(task.id.startswith(v) for v in filters["id"]):
        return False
    if filters.get("node") and task.node_id not in filters["node"]:
        return False
    if filters.get("name"):
        name = f"{service.name}.{task.slot or task.node_id}" if service else ""
        if not any(name.startswith(v) for v in filters["name"]):
            return False
    desired = filters.get("desired-state")
    if desired:
        # dockerd: "running" means wanted running; "shutdown" wanted stopped; "accepted"
        # wanted no further than accepted.
        d = task.desired_state
        ok = {
            "running": d <= TaskState.RUNNING and d >= TaskState.READY,
            "shutdown": d > TaskState.RUNNING,
            "accepted": d <= TaskState.ACCEPTED,
        }
        if not any(ok.get(v, False) for v in desired):
            return False
    # swarmkit matches a task's labels filter against its service's labels (what
    # `docker stack ps` asks with com.docker.stack.namespace).
    labels = (service.spec.get("Labels") or {}) if service is not None else {}
    return _labels_hold(labels, filters.get("label", []))
