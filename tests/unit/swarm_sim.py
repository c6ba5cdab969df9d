"""A small cluster in memory for the control plane's deciders (no store, no agents).

`Cluster.tick()` does what the controllers and the node agents would do in one round:
the manager's round (orchestrator, updater, scheduler, reaper) is applied, then every
agent moves each of its tasks one step towards its desired state, as
swarmkit's agent does one transition per `do()` — with a task of a spec marked bad
failing as it starts. The clock moves by `step` seconds per tick.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from orchestr.api.swarm import Node, Service, Task, TaskState, TaskStatus
from orchestr.manager.decide import Snapshot, decide

AGENT_STEPS = {
    TaskState.ASSIGNED: TaskState.ACCEPTED,
    TaskState.ACCEPTED: TaskState.PREPARING,
    TaskState.PREPARING: TaskState.READY,
    TaskState.READY: TaskState.STARTING,
    TaskState.STARTING: TaskState.RUNNING,
}


def spec(
    image: str = "app:1",
    replicas: int | None = 1,
    *,
    update: dict[str, Any] | None = None,
    rollback: dict[str, Any] | None = None,
    restart: dict[str, Any] | None = None,
    placement: dict[str, Any] | None = None,
    reservations: dict[str, int] | None = None,
    name: str = "web",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    template: dict[str, Any] = {"ContainerSpec": {"Image": image}}
    template["RestartPolicy"] = restart or {"Condition": "any", "Delay": 0}
    if placement:
        template["Placement"] = placement
    if reservations:
        template["Resources"] = {"Reservations": reservations}
    doc: dict[str, Any] = {
        "Name": name,
        "TaskTemplate": template,
        "Mode": {"Global": {}} if replicas is None else {"Replicated": {"Replicas": replicas}},
    }
    if labels:
        doc["Labels"] = labels
    if update is not None:
        doc["UpdateConfig"] = update
    if rollback is not None:
        doc["RollbackConfig"] = rollback
    return doc


@dataclass
class Cluster:
    nodes: list[Node] = field(default_factory=lambda: [Node(id="n1", hostname="node1")])
    services: dict[str, Service] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    now: float = 1000.0
    step: float = 0.5
    bad_images: set[str] = field(default_factory=set)  # tasks of these fail as they start
    one_shot_images: set[str] = field(default_factory=set)  # these complete once running
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    history: list[dict[str, int]] = field(default_factory=list)  # per tick: running counts

    def new_id(self) -> str:
        return f"t{next(self.ids):04d}"

    def create(self, service_id: str, doc: dict[str, Any]) -> Service:
        svc = Service(id=service_id, spec=doc, created_at=self.now, updated_at=self.now)
        self.services[service_id] = svc
        return svc

    def update(self, service_id: str, doc: dict[str, Any]) -> Service:
        """A new spec, as the API writes it: the old one kept, the status cleared."""
        old = self.services[service_id]
        svc = old.model_copy(
            update={
                "spec": doc,
                "previous_spec": old.spec,
                "version": old.version + 1,
                "update_status": None,
                "updated_at": self.now,
            }
        )
        self.services[service_id] = svc
        return svc

    def put(self, task: Task) -> None:
        self.tasks[task.id] = task

    def control(self) -> None:
        """One round of the control plane (orchestr/manager/decide.py), applied."""
        changes = decide(
            Snapshot(dict(self.services), dict(self.tasks), {n.id: n for n in self.nodes}),
            self.now,
            self.new_id,
        )
        self.services.update(changes.services)
        self.tasks.update(changes.tasks)
        for task_id in changes.deleted_tasks:
            del self.tasks[task_id]

    def agents(self) -> None:
        for t in list(self.tasks.values()):
            state = t.state
            if state.terminal or state < TaskState.ASSIGNED:
                continue
            if t.desired_state > TaskState.RUNNING:
                self._report(t, TaskState.SHUTDOWN, "shutdown")
                continue
            if state == TaskState.READY and t.desired_state == TaskState.READY:
                continue  # prepared: waits to be wanted running
            image = t.spec.get("ContainerSpec", {}).get("Image")
            if state == TaskState.RUNNING and image in self.one_shot_images:
                self._report(t, TaskState.COMPLETE, "finished")
                continue
            if state >= TaskState.RUNNING:
                continue
            nxt = AGENT_STEPS[state]
            if nxt == TaskState.RUNNING and image in self.bad_images:
                self._report(t, TaskState.FAILED, "task: non-zero exit (1)")
            else:
                self._report(t, nxt, nxt.api)

    def _report(self, t: Task, state: TaskState, message: str) -> None:
        started = t.status.started_at or (self.now if state == TaskState.RUNNING else 0.0)
        self.put(
            t.model_copy(
                update={
                    "status": TaskStatus(
                        state=state, timestamp=self.now, message=message, started_at=started
                    )
                }
            )
        )

    def tick(self) -> None:
        self.control()
        self.agents()
        self.history.append(self.running_counts())
        self.now += self.step

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.tick()

    def running_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tasks.values():
            if t.state == TaskState.RUNNING:
                out[t.service_id] = out.get(t.service_id, 0) + 1
        return out

    def of(self, service_id: str) -> list[Task]:
        return [t for t in self.tasks.values() if t.service_id == service_id]

    def running(self, service_id: str, image: str | None = None) -> list[Task]:
        return [
            t
            for t in self.of(service_id)
            if t.state == TaskState.RUNNING
            and (image is None or t.spec.get("ContainerSpec", {}).get("Image") == image)
        ]
