"""The orchestrator's decision: which tasks a service needs made, restarted or removed.

Pure: `reconcile(service, tasks, nodes, now)` reads a snapshot and returns a `Plan`;
the controller loop (orchestr/orchestrator/controller.py) writes it in one transaction
and calls again when the store changes or the plan's `wake_at` comes.

The rules, as swarmkit's replicated and global orchestrators:

- A replicated service has slots 1…replicas. A slot is *occupied* while one of its tasks
  is still wanted (desired state ≤ running), whatever that task's actual state: a task
  that failed and is not to be restarted keeps its slot, so scaling does not paper over a
  restart policy that gave up.
- Missing slots get a new task (the lowest free slot numbers); slots beyond `replicas` are
  removed, those not running first, then the highest.
- A global service has one slot per node that is ready, active and meets the service's
  constraints; a task on a node that no longer qualifies is shut down (drain).
- A replicated task on a node that is drained, down or gone is shut down and a new task
  made in its slot, for the scheduler to place elsewhere (or leave pending).
- A slot whose wanted tasks have all ended is handled by the restart policy (restart.py):
  restarted now (the ended task is marked shut down and a new one made in its slot),
  later (`wake_at`), or never.
- Tasks of an older spec are left alone: replacing them is the updater's job.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from orchestr.api.swarm import (
    Node,
    Service,
    Task,
    TaskState,
    TaskStatus,
    host_ports,
    is_global,
    replicas,
    restart_policy,
)
from orchestr.orchestrator.restart import RestartDecision, decide_restart
from orchestr.scheduler.filters import node_fails

NewId = Callable[[], str]


@dataclass
class Plan:
    """What to write: new tasks, tasks whose desired state changes, when to look again."""

    create: list[Task] = field(default_factory=list)
    update: list[Task] = field(default_factory=list)
    wake_at: float | None = None
    notes: list[str] = field(default_factory=list)  # why, for the debug log

    def wake(self, at: float) -> None:
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)

    def __bool__(self) -> bool:
        return bool(self.create or self.update)


def new_task(
    service: Service, new_id: NewId, now: float, *, slot: int = 0, node_id: str = ""
) -> Task:
    return Task(
        id=new_id(),
        service_id=service.id,
        slot=slot,
        node_id=node_id,
        spec=service.template,
        spec_version=service.version,
        desired_state=TaskState.RUNNING,
        status=TaskStatus(state=TaskState.NEW, timestamp=now, message="created"),
        created_at=now,
        host_ports=host_ports(service),
    )


def with_desired(task: Task, desired: TaskState) -> Task:
    return task.model_copy(update={"desired_state": desired})


def group_by_slot(tasks: Iterable[Task], by_node: bool = False) -> dict[int | str, list[Task]]:
    """Tasks by slot (replicated) or by node (global), oldest first."""
    out: dict[int | str, list[Task]] = {}
    for t in sorted(tasks, key=lambda t: (t.created_at, t.id)):
        out.setdefault(t.node_id if by_node else t.slot, []).append(t)
    return out


def wanted(tasks: Iterable[Task]) -> list[Task]:
    return [t for t in tasks if t.desired_state <= TaskState.RUNNING]


def reconcile(
    service: Service, tasks: list[Task], nodes: list[Node], now: float, new_id: NewId
) -> Plan:
    mine = [t for t in tasks if t.service_id == service.id]
    if is_global(service.spec):
        return _reconcile_global(service, mine, nodes, now, new_id)
    return _reconcile_replicated(service, mine, nodes, now, new_id)


def _reconcile_replicated(
    service: Service, tasks: list[Task], nodes: list[Node], now: float, new_id: NewId
) -> Plan:
    plan = Plan()
    slots = group_by_slot(tasks)
    occupied = {slot: ts for slot, ts in slots.items() if wanted(ts)}
    want = replicas(service.spec)
    # A task on a node that is drained, down or gone moves: shut down, and a new task
    # in its slot for the scheduler to place (swarmkit's drain).
    usable = {n.id for n in nodes if n.ready and n.availability != "drain"}
    for slot, ts in occupied.items():
        stranded = [t for t in ts if t.node_id and t.node_id not in usable and t.alive]
        if stranded and len(occupied) <= want:
            for t in stranded:
                plan.update.append(with_desired(t, TaskState.SHUTDOWN))
            plan.create.append(new_task(service, new_id, now, slot=int(slot)))
            plan.notes.append(f"slot {slot}: its node is not available, the task moves")
            continue
        _restart_slot(service, ts, slots[slot], now, new_id, plan, slot=int(slot))
    if len(occupied) < want:
        free = (s for s in itertools.count(1) if s not in occupied)
        for slot in itertools.islice(free, want - len(occupied)):
            plan.create.append(new_task(service, new_id, now, slot=slot))
            plan.notes.append(f"slot {slot}: new task (scale to {want})")
    elif len(occupied) > want:
        # Not running first (they serve nobody), then the highest slots.
        def keep_order(slot: int | str) -> tuple[bool, int]:
            running = any(t.state == TaskState.RUNNING for t in occupied[slot])
            return (running, -int(slot))

        for slot in sorted(occupied, key=keep_order)[: len(occupied) - want]:
            for t in wanted(occupied[slot]):
                plan.update.append(with_desired(t, TaskState.REMOVE))
            plan.notes.append(f"slot {slot}: removed (scale to {want})")
    return plan


def _reconcile_global(
    service: Service, tasks: list[Task], nodes: list[Node], now: float, new_id: NewId
) -> Plan:
    plan = Plan()
    by_node = group_by_slot(tasks, by_node=True)
    eligible = {n.id for n in nodes if not node_fails(n, service.template)}
    for node_id, ts in by_node.items():
        live = wanted(ts)
        if not live:
            continue
        if node_id not in eligible:
            for t in live:
                plan.update.append(with_desired(t, TaskState.SHUTDOWN))
            plan.notes.append(f"node {node_id}: no longer eligible, its task shut down")
            continue
        _restart_slot(service, live, ts, now, new_id, plan, node_id=str(node_id))
    for node_id in sorted(eligible):
        if not wanted(by_node.get(node_id, [])):
            plan.create.append(new_task(service, new_id, now, node_id=node_id))
            plan.notes.append(f"node {node_id}: new task")
    return plan


def _restart_slot(
    service: Service,
    live: list[Task],
    history: list[Task],
    now: float,
    new_id: NewId,
    plan: Plan,
    *,
    slot: int = 0,
    node_id: str = "",
) -> None:
    """A slot whose wanted tasks have all ended: restart it now, later or never."""
    if not all(t.state.terminal for t in live):
        return
    last = max(live, key=lambda t: (t.status.timestamp, t.created_at))
    decision: RestartDecision = decide_restart(
        restart_policy(last.spec or service.template), last, history, now
    )
    where = f"slot {slot}" if not node_id else f"node {node_id}"
    if decision.at is None:
        plan.notes.append(f"{where}: not restarted: {decision.reason}")
        return
    if decision.at > now:
        plan.wake(decision.at)
        plan.notes.append(f"{where}: restart at {decision.at:.3f} ({decision.reason})")
        return
    for t in live:
        plan.update.append(with_desired(t, TaskState.SHUTDOWN))
    plan.create.append(new_task(service, new_id, now, slot=slot, node_id=node_id))
    plan.notes.append(f"{where}: restarted ({decision.reason})")
