"""Rolling updates and rollbacks: the updater's decisions, run on a simulated cluster."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestr.api.swarm import TaskState, UpdateState, update_config
from tests.unit.swarm_sim import Cluster, spec

S = 1_000_000_000  # ns


def converged(replicas: int, **kw: object) -> Cluster:
    cluster = Cluster()
    cluster.create("s1", spec(replicas=replicas, **kw))  # type: ignore[arg-type]
    cluster.run(10)
    assert len(cluster.running("s1")) == replicas
    return cluster


def state(cluster: Cluster) -> UpdateState | None:
    status = cluster.services["s1"].update_status
    return status.state if status else None


def wanted_per_slot(cluster: Cluster) -> dict[int, int]:
    out: dict[int, int] = {}
    for t in cluster.of("s1"):
        if t.desired_state <= TaskState.RUNNING:
            out[t.slot] = out.get(t.slot, 0) + 1
    return out


def test_defaults_are_swarms() -> None:
    c = update_config({})
    assert (c.parallelism, c.delay, c.failure_action, c.monitor, c.max_failure_ratio, c.order) == (
        1,
        0.0,
        "pause",
        5.0,
        0.0,
        "stop-first",
    )


def test_stop_first_never_runs_old_and_new_in_one_slot() -> None:
    cluster = converged(3, update={"Parallelism": 1, "Monitor": 1 * S})
    cluster.update("s1", spec("app:2", 3, update={"Parallelism": 1, "Monitor": 1 * S}))
    for _ in range(60):
        cluster.tick()
        for slot in (1, 2, 3):
            live = [t for t in cluster.of("s1") if t.slot == slot and t.state == TaskState.RUNNING]
            assert len(live) <= 1
    assert [t.spec["ContainerSpec"]["Image"] for t in cluster.running("s1")] == ["app:2"] * 3
    assert state(cluster) == UpdateState.COMPLETED
    assert cluster.services["s1"].update_status.message == "update completed"  # type: ignore[union-attr]


def test_start_first_starts_the_new_task_before_stopping_the_old() -> None:
    cfg = {"Parallelism": 1, "Order": "start-first", "Monitor": 1 * S}
    cluster = converged(2, update=cfg)
    cluster.update("s1", spec("app:2", 2, update=cfg))
    for _ in range(60):
        cluster.tick()
        assert len(cluster.running("s1")) >= 2  # never below replicas
    assert len(cluster.running("s1", "app:2")) == 2
    assert state(cluster) == UpdateState.COMPLETED


def test_delay_spaces_the_batches_and_monitor_holds_completion() -> None:
    cfg = {"Parallelism": 1, "Delay": 3 * S, "Monitor": 4 * S}
    cluster = converged(2, update=cfg)
    cluster.update("s1", spec("app:2", 2, update=cfg))
    started: list[float] = []
    completed_at = None
    for _ in range(80):
        cluster.tick()
        for t in cluster.running("s1", "app:2"):
            if t.status.started_at not in started:
                started.append(t.status.started_at)
        if completed_at is None and state(cluster) == UpdateState.COMPLETED:
            completed_at = cluster.now
    assert len(started) == 2
    assert started[1] - started[0] >= 3.0  # the delay, after the first was done
    assert completed_at is not None and completed_at - started[1] >= 4.0  # the monitor


def test_a_broken_update_pauses_after_the_first_batch() -> None:
    cfg = {"Parallelism": 2, "FailureAction": "pause", "Monitor": 2 * S}
    cluster = converged(6, update=cfg)
    cluster.bad_images.add("app:bad")
    cluster.update("s1", spec("app:bad", 6, update=cfg))
    cluster.run(40)
    assert state(cluster) == UpdateState.PAUSED
    status = cluster.services["s1"].update_status
    assert status is not None and status.message.startswith(
        "update paused due to failure or early termination of task"
    )
    new_slots = {t.slot for t in cluster.of("s1") if t.spec["ContainerSpec"]["Image"] == "app:bad"}
    assert len(new_slots) == 2  # only the first batch's slots were touched
    assert len(cluster.running("s1", "app:1")) == 4


def test_a_broken_update_rolls_back_and_keeps_the_old_tasks() -> None:
    cfg = {"Parallelism": 1, "FailureAction": "rollback", "Monitor": 2 * S}
    rollback = {"Parallelism": 0, "Monitor": 1 * S}
    cluster = converged(3, update=cfg, rollback=rollback)
    before = {t.id for t in cluster.running("s1")}
    cluster.bad_images.add("app:bad")
    cluster.update("s1", spec("app:bad", 3, update=cfg, rollback=rollback))
    cluster.run(60)
    assert state(cluster) == UpdateState.ROLLBACK_COMPLETED
    svc = cluster.services["s1"]
    assert svc.spec["TaskTemplate"]["ContainerSpec"]["Image"] == "app:1"
    running = cluster.running("s1")
    assert [t.spec["ContainerSpec"]["Image"] for t in running] == ["app:1"] * 3
    # Only the slot the broken update touched got a new task; the others kept theirs.
    assert len(before & {t.id for t in running}) == 2
    assert svc.update_status is not None
    assert svc.update_status.message.startswith(
        "rollback completed (update rolled back due to failure or early termination of task"
    )


def test_the_update_resumes_from_the_store_alone() -> None:
    """A daemon killed mid-update: a new one with only the store's contents finishes it,
    and no slot ever has more than its old and its new task."""
    cfg = {"Parallelism": 2, "Monitor": 1 * S}
    cluster = converged(5, update=cfg)
    cluster.update("s1", spec("app:2", 5, update=cfg))
    cluster.run(4)
    assert state(cluster) == UpdateState.UPDATING
    restarted = Cluster(
        nodes=cluster.nodes,
        services=dict(cluster.services),
        tasks=dict(cluster.tasks),
        now=cluster.now + 7,  # it was down for a while
        ids=cluster.ids,
    )
    for _ in range(60):
        restarted.tick()
        assert all(n <= 2 for n in wanted_per_slot(restarted).values())
    assert len(restarted.running("s1", "app:2")) == 5
    assert sorted(wanted_per_slot(restarted)) == [1, 2, 3, 4, 5]
    assert state(restarted) == UpdateState.COMPLETED


@settings(max_examples=40, deadline=None)
@given(
    replicas=st.integers(min_value=1, max_value=8),
    parallelism=st.integers(min_value=0, max_value=4),
    order=st.sampled_from(["stop-first", "start-first"]),
    delay=st.sampled_from([0, 1]),
)
def test_running_tasks_stay_within_the_update_bounds(
    replicas: int, parallelism: int, order: str, delay: int
) -> None:
    """start-first never runs more than replicas + parallelism tasks; stop-first never
    fewer than replicas - parallelism; both end with every task on the new spec."""
    cfg = {"Parallelism": parallelism, "Order": order, "Delay": delay * S, "Monitor": 1 * S}
    cluster = converged(replicas, update=cfg)
    cluster.update("s1", spec("app:2", replicas, update=cfg))
    width = parallelism or replicas
    for _ in range(40 + 12 * replicas):
        cluster.tick()
        running = len(cluster.running("s1"))
        if order == "start-first":
            assert running <= replicas + width
        else:
            assert running >= replicas - width
    assert len(cluster.running("s1", "app:2")) == replicas
    assert state(cluster) == UpdateState.COMPLETED


@pytest.mark.parametrize("order", ["stop-first", "start-first"])
def test_a_second_update_mid_way_goes_straight_to_the_newest_spec(order: str) -> None:
    cfg = {"Parallelism": 1, "Order": order, "Monitor": 1 * S}
    cluster = converged(3, update=cfg)
    cluster.update("s1", spec("app:2", 3, update=cfg))
    cluster.run(5)
    cluster.update("s1", spec("app:3", 3, update=cfg))
    cluster.run(80)
    assert [t.spec["ContainerSpec"]["Image"] for t in cluster.running("s1")] == ["app:3"] * 3
    assert state(cluster) == UpdateState.COMPLETED
