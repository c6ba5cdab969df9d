"""The updater's decision: the next step of a rolling update or rollback (pure).

`next_step(service, tasks, now, new_id)` reads a snapshot and returns an `UpdatePlan`;
the controller writes it and calls again when the store changes or `wake_at` comes.
Everything the update needs to know is in the store — the service's spec and update
status, the tasks' specs, states and times — so a restarted daemon carries on where the
last one stopped, with no task made twice.

A slot (a node, for a global service) is *dirty* when none of its wanted tasks runs the
service's current spec (compared by digest). Updating it:

- stop-first (Swarm's default): its old task is shut down and a new one made at once,
  wanted *ready* (placed and prepared, not started) until the old one has stopped, then
  wanted running — so the two never run together (ports, volumes);
- start-first: the new task is made and started beside the old one, which is shut down
  once the new one runs.

A slot is *done* once its new task runs (a task with a health check is reported running
only when healthy) and its old one is gone. Up to `parallelism` slots (0: all) are in
flight at once; a freed place takes the next slot `delay` seconds after the last slot
was done. A new task that ends — or ends within `monitor` seconds of starting — counts
as a failure; when failures / slots exceeds `max_failure_ratio`, `failure_action` runs:
pause (the update stops, its status says why), continue, or rollback (the previous spec
comes back and is rolled out with `rollback_config`; the tasks still on it are left
alone). The update is complete when no slot is dirty or in flight and the last new task
has run for `monitor` seconds.

The update status is the Engine API's: updating, paused, completed, rollback_started,
rollback_paused, rollback_completed. Starting an update, resuming a paused one and
asking for a rollback are the API's doing (a new spec clears the status; `service
rollback` swaps the specs and sets rollback_started); this module moves it on from
there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from orchestr.api.swarm import (
    Service,
    Task,
    TaskState,
    UpdateConfig,
    UpdateState,
    UpdateStatus,
    is_global,
    update_config,
)
from orchestr.orchestrator.reconciler import group_by_slot, new_task, wanted, with_desired

NewId = Callable[[], str]

IN_PROGRESS = (UpdateState.UPDATING, UpdateState.ROLLBACK_STARTED)
PAUSED = (UpdateState.PAUSED, UpdateState.ROLLBACK_PAUSED)


@dataclass
class UpdatePlan:
    create: list[Task] = field(default_factory=list)
    update: list[Task] = field(default_factory=list)  # desired-state changes
    service: Service | None = None  # a new update status, or the rollback's swapped specs
    wake_at: float | None = None
    notes: list[str] = field(default_factory=list)

    def wake(self, at: float) -> None:
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)

    def __bool__(self) -> bool:
        return bool(self.create or self.update or self.service is not None)


@dataclass
class _Slot:
    key: int | str
    new: list[Task]  # wanted, on the current spec
    old: list[Task]  # wanted, on another spec
    stopping: list[Task]  # not wanted any more, not ended yet

    @property
    def dirty(self) -> bool:
        return not self.new and bool(self.old)

    @property
    def done(self) -> bool:
        return (
            bool(self.new)
            and all(t.state == TaskState.RUNNING for t in self.new)
            and not self.old
            and not self.stopping
        )

    @property
    def in_flight(self) -> bool:
        return bool(self.new) and not self.done and not all(t.state.terminal for t in self.new)


def next_step(service: Service, tasks: list[Task], now: float, new_id: NewId) -> UpdatePlan:
    plan = UpdatePlan()
    mine = [t for t in tasks if t.service_id == service.id]
    status = service.update_status
    rolling_back = service.rolling_back
    cfg = update_config(service.spec, rollback=rolling_back)
    target = service.task_digest
    slots = _slots(mine, target, by_node=is_global(service.spec))

    _promote_ready(slots, plan)
    _retire_replaced(slots, cfg, plan)

    dirty = [s for s in slots if s.dirty]
    in_progress = status is not None and status.state in IN_PROGRESS
    if not in_progress:
        if dirty and (status is None or status.state not in PAUSED):
            status = UpdateStatus(
                state=UpdateState.UPDATING, started_at=now, message="update in progress"
            )
            plan.service = service.model_copy(update={"update_status": status})
            in_progress = True
        else:
            return plan
    assert status is not None
    started = status.started_at

    failed = _failures(mine, target, started, cfg)
    if failed and len(failed) / max(1, len(slots)) > cfg.max_failure_ratio:
        stopped = _on_failure(service, status, failed[0], cfg, now)
        if stopped is not None:
            plan.service = stopped
            plan.notes.append(str(stopped.update_status.message if stopped.update_status else ""))
            return plan

    flying = sum(1 for s in slots if s.in_flight)
    last_done = max(
        (t.status.started_at for s in slots if s.done for t in s.new if t.created_at >= started),
        default=started,
    )
    if dirty:
        room = (cfg.parallelism or len(dirty)) - flying
        if room > 0:
            ready_at = last_done + cfg.delay if last_done > started else started
            if now < ready_at:
                plan.wake(ready_at)
            else:
                for s in dirty[:room]:
                    _update_slot(service, s, cfg, now, new_id, plan)
        return plan
    if flying or any(s.stopping for s in slots):
        return plan
    complete_at = last_done + cfg.monitor
    if now < complete_at:
        plan.wake(complete_at)
        return plan
    done = UpdateState.ROLLBACK_COMPLETED if rolling_back else UpdateState.COMPLETED
    message = "rollback completed" if rolling_back else "update completed"
    if rolling_back and status.message and status.state == UpdateState.ROLLBACK_STARTED:
        message += f" ({status.message})"  # why it was rolled back stays in view
    plan.service = service.model_copy(
        update={
            "update_status": UpdateStatus(
                state=done, started_at=started, completed_at=now, message=message
            )
        }
    )
    plan.notes.append(message)
    return plan


def _on_failure(
    service: Service, status: UpdateStatus, culprit: Task, cfg: UpdateConfig, now: float
) -> Service | None:
    """The service after `failure_action` (None: continue). A rollback's own failure
    action cannot be rollback: it pauses instead."""
    why = f"failure or early termination of task {culprit.id}"
    rolling_back = service.rolling_back
    action = cfg.failure_action
    if action == "rollback" and (rolling_back or service.previous_spec is None):
        action = "pause"
        if not rolling_back:
            why += " (no previous spec to roll back to)"
    if action == "continue":
        return None
    if action == "rollback":
        assert service.previous_spec is not None
        return service.model_copy(
            update={
                "spec": service.previous_spec,
                "previous_spec": service.spec,
                "version": service.version + 1,
                "update_status": UpdateStatus(
                    state=UpdateState.ROLLBACK_STARTED,
                    started_at=now,
                    message=f"update rolled back due to {why}",
                ),
            }
        )
    state = UpdateState.ROLLBACK_PAUSED if rolling_back else UpdateState.PAUSED
    what = "rollback" if rolling_back else "update"
    return service.model_copy(
        update={
            "update_status": UpdateStatus(
                state=state, started_at=status.started_at, message=f"{what} paused due to {why}"
            )
        }
    )


def _slots(tasks: list[Task], target: str, by_node: bool) -> list[_Slot]:
    out = []
    for key, ts in sorted(group_by_slot(tasks, by_node).items(), key=_slot_order):
        live = wanted(ts)
        if not live:
            continue
        new = [t for t in live if t.digest == target]
        old = [t for t in live if t.digest != target]
        stopping = [t for t in ts if t.desired_state > TaskState.RUNNING and not t.state.terminal]
        out.append(_Slot(key, new, old, stopping))
    return out


def _slot_order(item: tuple[int | str, list[Task]]) -> tuple[int, str]:
    key = item[0]
    return (key, "") if isinstance(key, int) else (0, key)


def _promote_ready(slots: list[_Slot], plan: UpdatePlan) -> None:
    """stop-first: a new task waits (desired ready) until the slot's old task has stopped."""
    for s in slots:
        if s.old or s.stopping:
            continue
        for t in s.new:
            if t.desired_state == TaskState.READY:
                plan.update.append(with_desired(t, TaskState.RUNNING))
                plan.notes.append(f"slot {s.key}: old task stopped, new task {t.id} may start")


def _retire_replaced(slots: list[_Slot], cfg: UpdateConfig, plan: UpdatePlan) -> None:
    """start-first: the old task goes once the new one runs."""
    for s in slots:
        if s.old and s.new and all(t.state == TaskState.RUNNING for t in s.new):
            for t in s.old:
                plan.update.append(with_desired(t, TaskState.SHUTDOWN))
            s.stopping = s.stopping + s.old
            s.old = []
            plan.notes.append(f"slot {s.key}: new task runs, old one shut down")


def _update_slot(
    service: Service, s: _Slot, cfg: UpdateConfig, now: float, new_id: NewId, plan: UpdatePlan
) -> None:
    slot = s.key if isinstance(s.key, int) else 0
    node_id = s.key if isinstance(s.key, str) else ""
    task = new_task(service, new_id, now, slot=slot, node_id=node_id)
    if cfg.order == "start-first":
        plan.create.append(task)
        plan.notes.append(f"slot {s.key}: new task {task.id} started beside the old one")
        return
    for t in s.old:
        plan.update.append(with_desired(t, TaskState.SHUTDOWN))
    plan.create.append(with_desired(task, TaskState.READY))
    plan.notes.append(f"slot {s.key}: old task shut down, new task {task.id} ready")


def _failures(tasks: list[Task], target: str, started: float, cfg: UpdateConfig) -> list[Task]:
    """New tasks of this update that ended on their own, or soon after they started."""
    out = []
    for t in tasks:
        if t.digest != target or t.created_at < started or not t.state.terminal:
            continue
        if t.state == TaskState.SHUTDOWN:
            continue  # stopped on purpose
        began = t.status.started_at
        if began and t.status.timestamp - began > cfg.monitor:
            continue  # it ran past the monitor window: the restart policy's business
        out.append(t)
    return sorted(out, key=lambda t: (t.status.timestamp, t.id))
