"""The orchestrator's pure decisions: replicas, restarts, global services."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestr.api.swarm import (
    Node,
    RestartPolicy,
    Service,
    Task,
    TaskState,
    TaskStatus,
    restart_policy,
)
from orchestr.orchestrator.reconciler import reconcile
from orchestr.orchestrator.restart import decide_restart
from tests.unit.swarm_sim import Cluster, spec

NOW = 1000.0


def ids() -> itertools.count[int]:
    return itertools.count(1)


def new_id_from(counter: itertools.count[int]) -> str:
    return f"n{next(counter)}"


def task(
    tid: str,
    slot: int,
    state: TaskState,
    *,
    desired: TaskState = TaskState.RUNNING,
    at: float = NOW - 10,
    doc: Service | None = None,
) -> Task:
    svc = doc or service()
    return Task(
        id=tid,
        service_id=svc.id,
        slot=slot,
        node_id="n1",
        spec=svc.template,
        desired_state=desired,
        status=TaskStatus(state=state, timestamp=at),
        created_at=at - 1,
    )


def service(replicas: int | None = 3, **kw: object) -> Service:
    return Service(id="s1", spec=spec(replicas=replicas, **kw))  # type: ignore[arg-type]


def plan_for(svc: Service, tasks: list[Task], nodes: list[Node] | None = None):  # type: ignore[no-untyped-def]
    counter = ids()
    return reconcile(svc, tasks, nodes or [Node(id="n1")], NOW, lambda: new_id_from(counter))


# -- replicated ---------------------------------------------------------------------------


def test_a_new_service_gets_a_task_per_slot() -> None:
    plan = plan_for(service(3), [])
    assert [(t.slot, t.desired_state, t.state) for t in plan.create] == [
        (1, TaskState.RUNNING, TaskState.NEW),
        (2, TaskState.RUNNING, TaskState.NEW),
        (3, TaskState.RUNNING, TaskState.NEW),
    ]
    assert all(t.spec == service().template and t.spec_version == 1 for t in plan.create)
    assert not plan.update


def test_scale_up_fills_the_lowest_free_slots() -> None:
    plan = plan_for(service(4), [task("a", 1, TaskState.RUNNING), task("b", 3, TaskState.RUNNING)])
    assert sorted(t.slot for t in plan.create) == [2, 4]


def test_scale_down_removes_what_does_not_run_first_then_the_highest_slots() -> None:
    tasks = [
        task("a", 1, TaskState.RUNNING),
        task("b", 2, TaskState.PREPARING),
        task("c", 3, TaskState.RUNNING),
        task("d", 4, TaskState.RUNNING),
    ]
    plan = plan_for(service(2), tasks)
    assert not plan.create
    assert sorted((t.id, t.desired_state) for t in plan.update) == [
        ("b", TaskState.REMOVE),
        ("d", TaskState.REMOVE),
    ]


def test_tasks_on_a_drained_down_or_gone_node_move_and_a_paused_node_keeps_them() -> None:
    tasks = [task(f"t{i}", i, TaskState.RUNNING) for i in (1, 2)]
    for nodes in (
        [Node(id="n1", availability="drain")],
        [Node(id="n1", ready=False)],
        [Node(id="n2")],
    ):
        plan = plan_for(service(2), tasks, nodes)
        assert sorted((t.id, t.desired_state) for t in plan.update) == [
            ("t1", TaskState.SHUTDOWN),
            ("t2", TaskState.SHUTDOWN),
        ]
        # New tasks in the same slots, for the scheduler to place (or leave pending).
        assert sorted((t.slot, t.node_id) for t in plan.create) == [(1, ""), (2, "")]
    assert not plan_for(service(2), tasks, [Node(id="n1", availability="pause")])


def test_a_converged_service_needs_nothing() -> None:
    tasks = [task(f"t{i}", i, TaskState.RUNNING) for i in (1, 2, 3)]
    assert not plan_for(service(3), tasks)


def test_tasks_of_other_services_and_shut_down_ones_do_not_count() -> None:
    other = Service(id="s2", spec=spec(replicas=1, name="db"))
    tasks = [
        task("x", 1, TaskState.RUNNING, doc=other),
        task("old", 1, TaskState.SHUTDOWN, desired=TaskState.SHUTDOWN),
    ]
    assert [t.slot for t in plan_for(service(1), tasks).create] == [1]


# -- restarts -----------------------------------------------------------------------------


def test_an_ended_task_is_restarted_in_its_slot_after_the_delay() -> None:
    svc = service(1, restart={"Condition": "any", "Delay": 3_000_000_000})
    ended = task("a", 1, TaskState.FAILED, at=NOW - 1, doc=svc)
    plan = plan_for(svc, [ended])
    assert not plan and plan.wake_at == NOW + 2  # ended 1 s ago, 3 s delay
    ended = task("a", 1, TaskState.FAILED, at=NOW - 5, doc=svc)
    plan = plan_for(svc, [ended])
    assert [(t.id, t.desired_state) for t in plan.update] == [("a", TaskState.SHUTDOWN)]
    assert [t.slot for t in plan.create] == [1]


@pytest.mark.parametrize(
    ("condition", "state", "restarted"),
    [
        ("any", TaskState.COMPLETE, True),
        ("any", TaskState.FAILED, True),
        ("on-failure", TaskState.COMPLETE, False),
        ("on-failure", TaskState.FAILED, True),
        ("on-failure", TaskState.REJECTED, True),
        ("none", TaskState.FAILED, False),
    ],
)
def test_restart_conditions(condition: str, state: TaskState, restarted: bool) -> None:
    svc = service(1, restart={"Condition": condition, "Delay": 0})
    plan = plan_for(svc, [task("a", 1, state, doc=svc)])
    assert bool(plan.create) is restarted
    # A slot that is not restarted stays occupied: no new task replaces it either.
    assert len(plan.create) == (1 if restarted else 0)


def test_max_attempts_counts_restarts_within_the_window() -> None:
    policy = RestartPolicy(condition="any", delay=0, max_attempts=2, window=60)
    history = [
        task("a", 1, TaskState.FAILED, desired=TaskState.SHUTDOWN, at=NOW - 100),  # outside
        task("b", 1, TaskState.FAILED, desired=TaskState.SHUTDOWN, at=NOW - 30),
        task("c", 1, TaskState.FAILED, at=NOW - 1),
    ]
    assert decide_restart(policy, history[-1], history, NOW).at == NOW - 1
    history.insert(2, task("b2", 1, TaskState.COMPLETE, desired=TaskState.SHUTDOWN, at=NOW - 20))
    decision = decide_restart(policy, history[-1], history, NOW)
    assert decision.at is None and "max_attempts" in decision.reason
    # Without a window every earlier end counts.
    forever = RestartPolicy(condition="any", delay=0, max_attempts=3)
    assert decide_restart(forever, history[-1], history, NOW).at is None


def test_a_task_shut_down_on_purpose_is_never_restarted() -> None:
    decision = decide_restart(RestartPolicy(), task("a", 1, TaskState.SHUTDOWN), [], NOW)
    assert decision.at is None


def test_restart_policy_defaults_are_swarms() -> None:
    p = restart_policy({})
    assert (p.condition, p.delay, p.max_attempts, p.window) == ("any", 5.0, 0, 0.0)


# -- global -------------------------------------------------------------------------------


def test_a_global_service_runs_once_per_eligible_node() -> None:
    nodes = [
        Node(id="a", labels={"disk": "ssd"}),
        Node(id="b", labels={"disk": "hdd"}),
        Node(id="c", labels={"disk": "ssd"}, availability="drain"),
        Node(id="d", labels={"disk": "ssd"}, ready=False),
    ]
    svc = service(None, placement={"Constraints": ["node.labels.disk==ssd"]})
    plan = plan_for(svc, [], nodes)
    assert [(t.node_id, t.slot) for t in plan.create] == [("a", 0)]


def test_a_global_task_on_a_drained_node_is_shut_down() -> None:
    svc = service(None)
    on_b = task("x", 0, TaskState.RUNNING).model_copy(update={"node_id": "b"})
    plan = plan_for(svc, [on_b], [Node(id="a"), Node(id="b", availability="drain")])
    assert [(t.id, t.desired_state) for t in plan.update] == [("x", TaskState.SHUTDOWN)]
    assert [t.node_id for t in plan.create] == ["a"]


# -- properties ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    scales=st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=5),
    failing=st.booleans(),
)
def test_once_stable_there_are_exactly_as_many_tasks_as_replicas(
    scales: list[int], failing: bool
) -> None:
    """Whatever the scaling and restarts, a settled service has `replicas` tasks wanted
    and running, one per slot 1…replicas."""
    cluster = Cluster()
    cluster.create("s1", spec(replicas=scales[0]))
    for n in scales:
        cluster.update("s1", spec(replicas=n))
        cluster.run(3)
        if failing:  # a task dies now and then; the restart policy (delay 0) replaces it
            victims = cluster.running("s1")[:1]
            for t in victims:
                cluster.put(
                    t.model_copy(
                        update={"status": TaskStatus(state=TaskState.FAILED, timestamp=cluster.now)}
                    )
                )
        cluster.run(12)
        wanted = [t for t in cluster.of("s1") if t.desired_state <= TaskState.RUNNING]
        assert sorted(t.slot for t in wanted) == list(range(1, n + 1))
        assert len(cluster.running("s1")) == n
