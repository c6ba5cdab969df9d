"""The agent's one step per task: the state machine a task goes through on its node."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from agent.exec.steps import Action, Observed, next_step
from orchestr.api.swarm import Task, TaskState, TaskStatus

RUNNING = Observed(container_id="c1", running=True)


def task(state: TaskState, desired: TaskState = TaskState.RUNNING) -> Task:
    return Task(
        id="t1",
        service_id="s1",
        slot=1,
        node_id="n1",
        desired_state=desired,
        status=TaskStatus(state=state),
    )


def walk(desired: TaskState, seen_after: Mapping[TaskState, Observed]) -> list[TaskState]:
    """Step a task from assigned until it settles; the container as `seen_after` says."""
    state = TaskState.ASSIGNED
    states = [state]
    for _ in range(20):
        step = next_step(task(state, desired), seen_after.get(state))
        if step.state is None:
            break
        state = step.state
        states.append(state)
    return states


def test_a_task_goes_from_assigned_to_running() -> None:
    seen = {
        TaskState.READY: Observed("c1"),
        TaskState.STARTING: RUNNING,
        TaskState.RUNNING: RUNNING,
    }
    assert walk(TaskState.RUNNING, seen) == [
        TaskState.ASSIGNED,
        TaskState.ACCEPTED,
        TaskState.PREPARING,
        TaskState.READY,
        TaskState.STARTING,
        TaskState.RUNNING,
    ]


def test_a_task_wanted_ready_stops_at_ready() -> None:
    assert walk(TaskState.READY, {TaskState.READY: Observed("c1")})[-1] == TaskState.READY


def test_the_container_is_created_while_preparing_and_started_from_ready() -> None:
    assert next_step(task(TaskState.PREPARING), None).action == Action.CREATE
    assert next_step(task(TaskState.PREPARING), Observed("c1")).action == Action.NONE
    assert next_step(task(TaskState.READY), Observed("c1")).action == Action.START
    # Started already (a report lost to a restart): on to starting, not started twice.
    again = next_step(task(TaskState.READY), RUNNING)
    assert (again.action, again.state) == (Action.NONE, TaskState.STARTING)


def test_a_health_check_holds_the_task_in_starting_until_healthy() -> None:
    starting = Observed("c1", running=True, health="starting")
    assert next_step(task(TaskState.STARTING), starting).idle
    healthy = Observed("c1", running=True, health="healthy")
    assert next_step(task(TaskState.STARTING), healthy).state == TaskState.RUNNING


@pytest.mark.parametrize("state", [TaskState.STARTING, TaskState.RUNNING])
def test_an_unhealthy_task_is_stopped_and_failed(state: TaskState) -> None:
    step = next_step(task(state), Observed("c1", running=True, health="unhealthy"))
    assert (step.action, step.state, step.err) == (
        Action.STOP,
        TaskState.FAILED,
        "unhealthy container",
    )


@pytest.mark.parametrize(
    ("code", "state", "err"),
    [(0, TaskState.COMPLETE, ""), (3, TaskState.FAILED, "task: non-zero exit (3)")],
)
def test_an_exit_ends_the_task(code: int, state: TaskState, err: str) -> None:
    step = next_step(task(TaskState.RUNNING), Observed("c1", exited=True, exit_code=code))
    assert (step.state, step.err) == (state, err)


def test_a_task_wanted_shut_down_is_stopped_from_any_state() -> None:
    wanted_gone = TaskState.SHUTDOWN
    step = next_step(task(TaskState.RUNNING, wanted_gone), RUNNING)
    assert (step.action, step.state) == (Action.STOP, TaskState.SHUTDOWN)
    step = next_step(task(TaskState.ACCEPTED, TaskState.REMOVE), None)
    assert (step.action, step.state) == (Action.NONE, TaskState.SHUTDOWN)
    assert next_step(task(TaskState.SHUTDOWN, wanted_gone), None).idle
    assert next_step(task(TaskState.FAILED, wanted_gone), RUNNING).idle


def test_a_task_not_yet_placed_or_already_ended_is_left_alone() -> None:
    assert next_step(task(TaskState.PENDING), None).idle
    assert next_step(task(TaskState.COMPLETE), None).idle


def test_a_running_task_whose_container_vanished_fails() -> None:
    step = next_step(task(TaskState.RUNNING), None)
    assert step.state == TaskState.FAILED and "gone" in step.err


def test_a_started_container_runs_at_once_unless_it_has_a_health_check() -> None:
    from types import SimpleNamespace

    from agent.exec.worker import _after_start

    def record(status: str, health: str | None = None) -> object:
        return SimpleNamespace(
            id="c1",
            status=status,
            health={"Status": health} if health else None,
            started_at="2026-11-29T00:00:00Z",
            exit_code=0,
        )

    t = task(TaskState.READY)
    assert _after_start(t, record("running")) == (TaskState.RUNNING, "started")
    assert _after_start(t, record("running", "starting")) == (TaskState.STARTING, "starting")
    # It exited already: the next round reports how.
    assert _after_start(t, record("exited")) == (TaskState.STARTING, "starting")
