"""A manager round: the deciders together, service removal and the task reaper."""

from __future__ import annotations

from orchestr.api.swarm import Task, TaskState, TaskStatus
from orchestr.manager.decide import HISTORY, reap
from tests.unit.swarm_sim import Cluster, spec


def ended(tid: str, slot: int, created: float, desired: TaskState = TaskState.SHUTDOWN) -> Task:
    return Task(
        id=tid,
        service_id="s1",
        slot=slot,
        desired_state=desired,
        status=TaskStatus(state=TaskState.FAILED),
        created_at=created,
    )


def test_a_removed_services_tasks_are_stopped_then_deleted() -> None:
    cluster = Cluster()
    cluster.create("s1", spec(replicas=3))
    cluster.run(10)
    assert len(cluster.running("s1")) == 3
    del cluster.services["s1"]
    cluster.tick()
    assert all(t.desired_state == TaskState.REMOVE for t in cluster.of("s1"))
    cluster.run(3)
    assert cluster.of("s1") == []


def test_scaling_down_deletes_the_removed_slots_tasks_once_stopped() -> None:
    cluster = Cluster()
    cluster.create("s1", spec(replicas=4))
    cluster.run(10)
    cluster.update("s1", spec(replicas=1))
    cluster.run(10)
    assert sorted(t.slot for t in cluster.of("s1")) == [1]


def test_each_slot_keeps_its_newest_ended_tasks() -> None:
    slot1 = [ended(f"a{i}", 1, float(i)) for i in range(HISTORY + 3)]
    slot2 = [ended("b0", 2, 0.0)]
    live = Task(id="live", service_id="s1", slot=1, created_at=99.0)
    gone = reap([*slot1, *slot2, live], {"s1"})
    assert sorted(gone) == ["a0", "a1", "a2"]


def test_tasks_never_placed_and_wanted_removed_go_at_once() -> None:
    never = Task(id="n", service_id="s1", slot=3, desired_state=TaskState.REMOVE)
    assert reap([never], {"s1"}) == ["n"]
    running_but_unwanted = never.model_copy(update={"status": TaskStatus(state=TaskState.RUNNING)})
    assert reap([running_but_unwanted], {"s1"}) == []  # stopped first, by its node
