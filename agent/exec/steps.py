"""One step of a task on its node: what to do to its container, what to report (pure).

As swarmkit's `exec.Do`: the agent looks at a task (its state and desired state) and
at its container (`Observed`), and moves the task at most one state forward:

    assigned → accepted → preparing (container created) → ready → starting (started)
    → running (once healthy, when it has a health check) → complete | failed

A task wanted shut down is stopped and reported shutdown, from any state. A task wanted
*ready* (a stop-first update's new task) is prepared and waits there until it is wanted
running. A running task that turns unhealthy is stopped and reported failed, as Swarm's
agent does — the orchestrator's restart policy replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from orchestr.api.swarm import Task, TaskState


class Action(Enum):
    NONE = "none"
    CREATE = "create"
    START = "start"
    STOP = "stop"


@dataclass(frozen=True)
class Observed:
    """The task's container as the node sees it."""

    container_id: str = ""
    running: bool = False
    exited: bool = False
    exit_code: int | None = None
    health: str = ""  # "" (no health check) | starting | healthy | unhealthy


@dataclass(frozen=True)
class Step:
    action: Action = Action.NONE
    state: TaskState | None = None  # the state to report (after the action succeeds)
    message: str = ""
    err: str = ""

    @property
    def idle(self) -> bool:
        return self.action == Action.NONE and self.state is None


IDLE = Step()


def next_step(task: Task, seen: Observed | None) -> Step:
    state, desired = task.state, task.desired_state
    if desired > TaskState.RUNNING:
        if state.terminal:
            return IDLE
        if seen is not None and seen.running:
            return Step(Action.STOP, TaskState.SHUTDOWN, "shutdown")
        return Step(Action.NONE, TaskState.SHUTDOWN, "shutdown")
    if state.terminal or state < TaskState.ASSIGNED:
        return IDLE
    if state == TaskState.ASSIGNED:
        return Step(state=TaskState.ACCEPTED, message="accepted")
    if state == TaskState.ACCEPTED:
        return Step(state=TaskState.PREPARING, message="preparing")
    if state == TaskState.PREPARING:
        if seen is None:
            return Step(Action.CREATE, TaskState.READY, "created")
        return Step(state=TaskState.READY, message="created")
    if state == TaskState.READY:
        if desired < TaskState.RUNNING:
            return IDLE  # prepared; waits to be wanted running
        if seen is not None and (seen.running or seen.exited):
            return Step(state=TaskState.STARTING, message="starting")  # started already
        return Step(Action.START, TaskState.STARTING, "starting")
    if seen is None:
        return Step(state=TaskState.FAILED, message="failed", err="the task's container is gone")
    if seen.exited:
        code = seen.exit_code if seen.exit_code is not None else -1
        if code == 0:
            return Step(state=TaskState.COMPLETE, message="finished")
        return Step(state=TaskState.FAILED, message="failed", err=f"task: non-zero exit ({code})")
    if seen.health == "unhealthy":
        return Step(Action.STOP, TaskState.FAILED, "failed", "unhealthy container")
    if state == TaskState.STARTING and seen.running and seen.health in ("", "healthy"):
        return Step(state=TaskState.RUNNING, message="started")
    return IDLE
