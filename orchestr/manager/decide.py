"""One round of the control plane over a snapshot of the cluster (pure).

`decide(snapshot, now, new_id)` runs the deciders in the order swarmkit's components act
on a change — the orchestrator (reconcile, restarts; a service with no tasks yet waits
for its dependencies' conditions, orchestrator/dependencies.py) and the updater for each
service,
then the scheduler over the resulting tasks, then the task reaper — each seeing what the
ones before it decided, and returns every object that changed. The controller
(controller.py) writes them in one transaction, conditioned on nothing having changed
since the snapshot; a conflict is simply another round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from orchestr.api.swarm import Node, Service, Task, TaskState
from orchestr.orchestrator.dependencies import waiting_for
from orchestr.orchestrator.reconciler import reconcile, with_desired
from orchestr.scheduler.scheduler import schedule
from orchestr.updater.rolling import next_step

HISTORY = 5  # ended tasks kept per slot (Swarm's task-history-limit default)


@dataclass(frozen=True)
class Snapshot:
    services: dict[str, Service]
    tasks: dict[str, Task]
    nodes: dict[str, Node]


@dataclass
class Changes:
    services: dict[str, Service] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    deleted_tasks: set[str] = field(default_factory=set)
    wake_at: float | None = None
    notes: list[str] = field(default_factory=list)

    def wake(self, at: float | None) -> None:
        if at is not None:
            self.wake_at = at if self.wake_at is None else min(self.wake_at, at)

    def __bool__(self) -> bool:
        return bool(self.services or self.tasks or self.deleted_tasks)


def decide(snap: Snapshot, now: float, new_id: Callable[[], str]) -> Changes:
    out = Changes()
    tasks = dict(snap.tasks)
    nodes = list(snap.nodes.values())

    def put(task: Task) -> None:
        tasks[task.id] = task
        out.tasks[task.id] = task

    for task in list(tasks.values()):
        if task.service_id not in snap.services and task.desired_state <= TaskState.RUNNING:
            put(with_desired(task, TaskState.REMOVE))  # its service was removed
    services = list(snap.services.values())
    for sid in sorted(snap.services):
        service = snap.services[sid]
        if not any(
            t.service_id == sid and t.desired_state <= TaskState.RUNNING for t in tasks.values()
        ):
            reason = waiting_for(service, services, list(tasks.values()))
            if reason is not None:
                out.notes.append(f"{service.name}: {reason}")
                continue
        plan = reconcile(service, list(tasks.values()), nodes, now, new_id)
        for t in plan.create + plan.update:
            put(t)
        out.wake(plan.wake_at)
        out.notes += [f"{service.name}: {n}" for n in plan.notes]
        update = next_step(service, list(tasks.values()), now, new_id)
        for t in update.create + update.update:
            put(t)
        if update.service is not None:
            out.services[sid] = update.service
        out.wake(update.wake_at)
        out.notes += [f"{service.name}: {n}" for n in update.notes]
    placed = schedule(list(tasks.values()), nodes, now)
    for t in placed.assigned + placed.pending:
        put(t)
    for task_id in reap(list(tasks.values()), set(snap.services)):
        out.deleted_tasks.add(task_id)
        out.tasks.pop(task_id, None)
    return out


def reap(tasks: list[Task], services: set[str]) -> list[str]:
    """Tasks to delete: ended ones wanted removed or of a removed service, and, in each
    slot, the ended ones beyond the newest `HISTORY`."""
    out = []
    by_slot: dict[tuple[str, int | str], list[Task]] = {}
    for t in tasks:
        ended = t.state.terminal or t.state < TaskState.ASSIGNED
        if (
            ended
            and t.desired_state > TaskState.RUNNING
            and (t.desired_state == TaskState.REMOVE or t.service_id not in services)
        ):
            out.append(t.id)
            continue
        if t.state.terminal and t.desired_state > TaskState.RUNNING:
            by_slot.setdefault((t.service_id, t.slot or t.node_id), []).append(t)
    for old in by_slot.values():
        old.sort(key=lambda t: (t.created_at, t.id), reverse=True)
        out += [t.id for t in old[HISTORY:]]
    return out
