"""The scheduler's decision: a node for each task waiting for one (pure).

`schedule(tasks, nodes, now)` takes every task of the cluster (those already on nodes
hold their reservations there) and returns the tasks whose assignment changes: placed
ones (state assigned, `node_id` set) and ones left pending with the reason why, as
swarmkit's scheduler explains a pending task.

How a node is chosen, as Swarm does: the nodes that pass the filters (ready, active,
constraints; then max replicas per node, the task's resource reservations against
what the node's other tasks reserve, and its host-mode published ports against those the
node's tasks hold); among them, Swarm's spread: first over the values
of each placement preference label (`spread: node.labels.zone`, nodes without the label
being one more group), then the node with the fewest tasks of this service, then the
fewest tasks in all, then the node id (so the choice is stable). A global service's task
comes with its node chosen and is checked against that node only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from orchestr.api.swarm import (
    Node,
    Resources,
    Task,
    TaskState,
    TaskStatus,
    reservations,
    spread_labels,
)
from orchestr.scheduler.filters import fails_load, node_fails, node_value


@dataclass
class Schedule:
    assigned: list[Task] = field(default_factory=list)
    pending: list[Task] = field(default_factory=list)  # with a new reason only


def waiting(task: Task) -> bool:
    """Whether `task` waits for the scheduler."""
    return task.desired_state <= TaskState.RUNNING and task.state in (
        TaskState.NEW,
        TaskState.PENDING,
    )


def holds_node(task: Task) -> bool:
    """Whether `task` holds its node's resources (placed, wanted and not ended)."""
    return bool(task.node_id) and task.alive and not waiting(task)


class _Load:
    """What the placed tasks take on each node, kept up to date as tasks are placed."""

    def __init__(self, tasks: list[Task]) -> None:
        self.used: dict[str, Resources] = {}
        self.total: Counter[str] = Counter()
        self.of_service: Counter[tuple[str, str]] = Counter()
        self.ports: dict[str, set[tuple[int, str]]] = {}  # node -> host ports held
        for t in tasks:
            if holds_node(t):
                self.add(t)

    def add(self, task: Task) -> None:
        node = task.node_id
        self.used[node] = self.used.get(node, Resources()) + reservations(task.spec)
        self.total[node] += 1
        self.of_service[(node, task.service_id)] += 1
        self.ports.setdefault(node, set()).update(task.host_ports)


def schedule(tasks: list[Task], nodes: list[Node], now: float) -> Schedule:
    load = _Load(tasks)
    out = Schedule()
    for task in sorted(
        (t for t in tasks if waiting(t)), key=lambda t: (t.created_at, t.service_id, t.slot)
    ):
        candidates = [n for n in nodes if n.id == task.node_id] if task.node_id else nodes
        fit: list[Node] = []
        reasons: Counter[str] = Counter()
        need = reservations(task.spec)
        for node in candidates:
            reason = (
                node_fails(node, task.spec)
                or fails_load(
                    node,
                    task,
                    need,
                    load.used.get(node.id, Resources()),
                    load.of_service[(node.id, task.service_id)],
                )
                or _ports_taken(task, load.ports.get(node.id, set()))
            )
            if reason is None:
                fit.append(node)
            else:
                reasons[reason] += 1
        if not fit:
            why = _explain(reasons, task.node_id)
            if task.state != TaskState.PENDING or task.pending_reason != why:
                out.pending.append(
                    task.model_copy(
                        update={
                            "pending_reason": why,
                            "status": TaskStatus(state=TaskState.PENDING, timestamp=now, err=why),
                        }
                    )
                )
            continue
        node = _spread(fit, task, load)
        placed = task.model_copy(
            update={
                "node_id": node.id,
                "pending_reason": "",
                "status": TaskStatus(state=TaskState.ASSIGNED, timestamp=now, message="scheduled"),
            }
        )
        load.add(placed)
        out.assigned.append(placed)
    return out


def _spread(fit: list[Node], task: Task, load: _Load) -> Node:
    for label in spread_labels(task.spec):
        groups: dict[str | None, list[Node]] = {}
        for n in fit:
            groups.setdefault(node_value(n, label), []).append(n)
        if len(groups) > 1:

            def in_group(members: list[Node]) -> int:
                return sum(load.of_service[(n.id, task.service_id)] for n in members)

            fit = min(groups.values(), key=in_group)
    return min(
        fit,
        key=lambda n: (load.of_service[(n.id, task.service_id)], load.total[n.id], n.id),
    )


def _ports_taken(task: Task, held: set[tuple[int, str]]) -> str | None:
    """Swarm's reason when a host-mode port of the task is held on the node already."""
    return "host-mode port already in use" if held.intersection(task.host_ports) else None


def _explain(reasons: Counter[str], node_id: str) -> str:
    if node_id and reasons:
        return f"node {node_id} cannot run it: {next(iter(reasons))}"
    if not reasons:
        return "no suitable node (no nodes)"
    parts = [
        f"{reason} on {n} node{'s' if n != 1 else ''}" for reason, n in sorted(reasons.items())
    ]
    return f"no suitable node ({'; '.join(parts)})"
