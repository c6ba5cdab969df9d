"""The node agent's worker: runs the tasks assigned to its node as containers.

A thin loop around the pure step (steps.py): for each task of this node, look at its
container, take one step, report the new status. It wakes when its source of tasks says
something changed, when a container event comes (start, die, health_status), and every
`POLL` seconds in any case, so a missed wake-up costs at most that.

A task's container is found by its `com.docker.swarm.task.id` label, so a restarted
agent picks up where it left off. A container whose task is no longer known (deleted by
the task reaper, or its service removed) is removed. The agent alone writes a task's
status; the control plane alone its desired state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from agent.exec.container import LABEL_TASK_ID, container_name, create_body
from agent.exec.steps import Action, Observed, Step, next_step
from orchestr.api.swarm import Service, Task, TaskState, TaskStatus

log = logging.getLogger("orchestr.agent.worker")

POLL = 1.0
PARALLEL = 16  # container actions at once (a stop may wait out a grace period)


class TaskSource(Protocol):
    """Where the worker gets its tasks and sends their status (the store, on a node
    that is also a manager; the dispatcher's session later)."""

    def assigned(self, node_id: str) -> list[tuple[Task, Service]]:
        """This node's tasks (every state), each with its service."""
        ...

    def report(self, task_id: str, status: TaskStatus) -> None: ...

    def on_change(self, wake: Callable[[], None]) -> None:
        """Call `wake` whenever tasks may have changed."""
        ...


class Containers(Protocol):
    """What the worker needs of the node's container service."""

    def create(self, body: object, name: str | None) -> tuple[Any, list[str]]: ...

    def start(self, ref: str) -> Any: ...

    def stop(self, ref: str, timeout: int | None = None) -> bool: ...

    def remove(self, ref: str, *, force: bool = False) -> None: ...

    def all_records(self) -> list[Any]: ...


class Worker:
    def __init__(self, node_id: str, source: TaskSource, containers: Containers) -> None:
        self.node_id = node_id
        self.source = source
        self.containers = containers
        self.wakeup = threading.Event()
        self.pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="task")
        self.busy: set[str] = set()  # tasks with an action under way
        self.lock = threading.Lock()
        source.on_change(self.wakeup.set)

    def wake(self) -> None:
        self.wakeup.set()

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.wakeup.wait(POLL)
                self.wakeup.clear()
                if stop.is_set():
                    return
                try:
                    while self.sync():
                        pass  # a step was taken: the next one may follow at once
                except Exception:
                    if stop.is_set():
                        return
                    log.exception("worker: a round failed; trying again")
                    time.sleep(POLL)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def sync(self) -> bool:
        """One round over this node's tasks; whether any task moved."""
        records = {
            r.body.get("Labels", {}).get(LABEL_TASK_ID): r
            for r in self.containers.all_records()
            if r.body.get("Labels", {}).get(LABEL_TASK_ID)
        }
        moved = False
        known = set()
        # Busy before the read: a task whose action ends after it was read is seen
        # stale in this round, and must wait for the next (its end wakes one).
        with self.lock:
            was_busy = set(self.busy)
        for task, service in self.source.assigned(self.node_id):
            known.add(task.id)
            with self.lock:
                if task.id in was_busy or task.id in self.busy:
                    continue
            record = records.get(task.id)
            step = next_step(task, _observe(record))
            if step.idle:
                continue
            if step.action == Action.NONE:
                self._take(task, service, record, step)
                moved = True
                continue
            with self.lock:
                self.busy.add(task.id)
            self.pool.submit(self._in_background, task, service, record, step)
        for task_id, record in records.items():
            if task_id not in known and task_id not in was_busy:
                log.info("worker: removing container %s of a task gone", record.name)
                self.containers.remove(record.id, force=True)
        return moved

    def _in_background(self, task: Task, service: Service, record: Any, step: Step) -> None:
        try:
            self._take(task, service, record, step)
        except Exception:
            log.exception("worker: task %s", task.id)
        finally:
            with self.lock:
                self.busy.discard(task.id)
            self.wakeup.set()

    def _take(self, task: Task, service: Service, record: Any, step: Step) -> None:
        status = task.status
        container_id = status.container_id or (record.id if record is not None else "")
        state, message, err = step.state, step.message, step.err
        try:
            if step.action == Action.CREATE:
                made, _warnings = self.containers.create(
                    create_body(service, task), container_name(service, task)
                )
                container_id = made.id
            elif step.action == Action.START:
                self.containers.start(container_id)
            elif step.action == Action.STOP:
                grace = (task.spec.get("ContainerSpec") or {}).get("StopGracePeriod")
                timeout = -(-grace // 1_000_000_000) if isinstance(grace, int) else None
                self.containers.stop(container_id, timeout)
        except Exception as e:  # the container service's refusal, as the task's error
            failed = TaskState.REJECTED if step.action == Action.CREATE else TaskState.FAILED
            state, message, err = failed, failed.api, _one_line(e)
        if state is None:
            return
        now = time.time()
        exit_code = status.exit_code
        if record is not None and state in (TaskState.COMPLETE, TaskState.FAILED):
            exit_code = record.exit_code if not record.running else exit_code
        self.source.report(
            task.id,
            TaskStatus(
                state=state,
                timestamp=now,
                message=message,
                err=err,
                container_id=container_id,
                exit_code=exit_code,
                started_at=status.started_at or (now if state == TaskState.RUNNING else 0.0),
            ),
        )


def _observe(record: Any) -> Observed | None:
    if record is None:
        return None
    health = (record.health or {}).get("Status", "") if record.health else ""
    return Observed(
        container_id=record.id,
        running=record.status in ("running", "restarting"),
        exited=record.status in ("exited", "dead") and record.started_at[:4] != "0001",
        exit_code=record.exit_code,
        health=str(health),
    )


def _one_line(e: BaseException) -> str:
    return " ".join((str(e) or type(e).__name__).split())


class ServiceContainers:
    """`Containers` over the node's ContainerService."""

    def __init__(self, containers: Any) -> None:
        self.containers = containers

    def create(self, body: object, name: str | None) -> tuple[Any, list[str]]:
        record, warnings = self.containers.create(body, name)
        return record, warnings

    def start(self, ref: str) -> Any:
        return self.containers.start(ref)

    def stop(self, ref: str, timeout: int | None = None) -> bool:
        return bool(self.containers.stop(ref, timeout))

    def remove(self, ref: str, *, force: bool = False) -> None:
        self.containers.remove(ref, force=force)

    def all_records(self) -> list[Any]:
        return list(self.containers.records.all())
