"""The scheduler's pure decisions: filters, resources, spread, and why a task waits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestr.api.swarm import Node, Resources, Task, TaskState, TaskStatus, reservations
from orchestr.scheduler.filters import ConstraintError, node_fails, parse_constraint
from orchestr.scheduler.scheduler import schedule
from tests.unit.swarm_sim import spec

NOW = 50.0
GiB = 1 << 30


def pending(
    tid: str, template: dict[str, object], service_id: str = "s1", node_id: str = ""
) -> Task:
    return Task(
        id=tid,
        service_id=service_id,
        slot=int(tid[1:] or 0),
        node_id=node_id,
        spec=template,
        created_at=float(tid[1:] or 0),
    )


def placed(tid: str, node: str, template: dict[str, object], service_id: str = "s1") -> Task:
    return pending(tid, template, service_id).model_copy(
        update={"node_id": node, "status": TaskStatus(state=TaskState.RUNNING)}
    )


def template(**kw: object) -> dict[str, object]:
    return spec(**kw)["TaskTemplate"]  # type: ignore[arg-type,no-any-return]


def test_tasks_spread_over_nodes_fewest_of_the_service_first() -> None:
    nodes = [Node(id="a"), Node(id="b"), Node(id="c")]
    tpl = template()
    tasks = [placed("t0", "a", tpl)] + [pending(f"t{i}", tpl) for i in range(1, 6)]
    out = schedule(tasks, nodes, NOW)
    where = {t.id: t.node_id for t in out.assigned}
    assert sorted(where.values()) == ["a", "b", "b", "c", "c"]
    assert all(t.state == TaskState.ASSIGNED for t in out.assigned)


@pytest.mark.parametrize(
    ("constraint", "eligible"),
    [
        ("node.labels.zone==east", {"a"}),
        ("node.labels.zone != east", {"b", "c"}),  # c has no zone label: != holds
        ("node.hostname==HOST-B", {"b"}),  # node values compare without case
        ("node.role==worker", {"c"}),
        ("node.id!=a", {"b", "c"}),
        ("engine.labels.gpu==yes", {"c"}),
        ("node.platform.os==linux", {"a", "b", "c"}),
    ],
)
def test_constraints(constraint: str, eligible: set[str]) -> None:
    nodes = [
        Node(id="a", hostname="host-a", labels={"zone": "east"}),
        Node(id="b", hostname="host-b", labels={"zone": "west"}),
        Node(id="c", hostname="host-c", role="worker", engine_labels={"gpu": "yes"}),
    ]
    tpl = template(placement={"Constraints": [constraint]})
    assert {n.id for n in nodes if node_fails(n, tpl) is None} == eligible


@pytest.mark.parametrize("bad", ["node.labels.zone", "zone==east", "node.labels.==x", "node.id=="])
def test_malformed_constraints_are_refused(bad: str) -> None:
    with pytest.raises(ConstraintError, match="invalid constraint"):
        parse_constraint(bad)


def test_a_task_that_fits_nowhere_waits_with_the_reasons() -> None:
    nodes = [
        Node(id="a", resources=Resources(nano_cpus=2_000_000_000, memory_bytes=GiB)),
        Node(id="b", availability="drain"),
        Node(id="c", ready=False),
    ]
    big = template(reservations={"MemoryBytes": 2 * GiB})
    out = schedule([pending("t1", big)], nodes, NOW)
    assert not out.assigned
    [waiting] = out.pending
    assert waiting.state == TaskState.PENDING
    assert waiting.pending_reason == (
        "no suitable node (insufficient resources: memory on 1 node; node is down on 1 node;"
        " node is drain on 1 node)"
    )
    # Asked again with nothing changed, it says nothing new.
    assert not schedule([waiting], nodes, NOW + 1).pending


def test_reservations_add_up_on_a_node() -> None:
    nodes = [Node(id="a", resources=Resources(nano_cpus=4_000_000_000, memory_bytes=4 * GiB))]
    tpl = template(reservations={"NanoCPUs": 1_500_000_000})
    out = schedule([pending(f"t{i}", tpl) for i in range(1, 5)], nodes, NOW)
    assert len(out.assigned) == 2
    assert [t.pending_reason for t in out.pending] == [
        "no suitable node (insufficient resources: CPU on 1 node)"
    ] * 2


def test_max_replicas_per_node() -> None:
    nodes = [Node(id="a"), Node(id="b")]
    tpl = template(placement={"MaxReplicas": 1})
    out = schedule([pending(f"t{i}", tpl) for i in range(1, 4)], nodes, NOW)
    assert sorted(t.node_id for t in out.assigned) == ["a", "b"]
    assert "max replicas per node (1) reached on 2 nodes" in out.pending[0].pending_reason


def test_spread_preference_balances_over_a_label_first() -> None:
    nodes = [
        Node(id="a1", labels={"zone": "a"}),
        Node(id="a2", labels={"zone": "a"}),
        Node(id="b1", labels={"zone": "b"}),
    ]
    tpl = template(
        placement={"Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]}
    )
    out = schedule([pending(f"t{i}", tpl) for i in range(1, 5)], nodes, NOW)
    zones = sorted(t.node_id[0] for t in out.assigned)
    assert zones == ["a", "a", "b", "b"]  # two per zone, though zone a has two nodes


def test_a_global_task_goes_only_to_its_own_node() -> None:
    nodes = [Node(id="a"), Node(id="b", availability="pause")]
    tpl = template(replicas=None)
    out = schedule([pending("t1", tpl, node_id="a"), pending("t2", tpl, node_id="b")], nodes, NOW)
    assert [(t.id, t.node_id) for t in out.assigned] == [("t1", "a")]
    assert out.pending[0].pending_reason == "node b cannot run it: node is pause"


@settings(max_examples=150, deadline=None)
@given(
    node_specs=st.lists(
        st.tuples(
            st.sampled_from(["east", "west", None]),
            st.integers(min_value=0, max_value=8),  # CPUs
            st.booleans(),  # ready
            st.sampled_from(["active", "active", "pause", "drain"]),
        ),
        min_size=0,
        max_size=6,
    ),
    task_specs=st.lists(
        st.tuples(
            st.sampled_from([None, "node.labels.zone==east", "node.labels.zone!=east"]),
            st.integers(min_value=0, max_value=3),  # CPUs reserved
            st.sampled_from(["s1", "s2"]),
        ),
        min_size=1,
        max_size=25,
    ),
)
def test_no_task_lands_on_a_node_that_fails_its_constraints_or_resources(
    node_specs: list[tuple[str | None, int, bool, str]],
    task_specs: list[tuple[str | None, int, str]],
) -> None:
    nodes = [
        Node(
            id=f"n{i}",
            labels={"zone": zone} if zone else {},
            resources=Resources(nano_cpus=cpus * 1_000_000_000, memory_bytes=GiB),
            ready=ready,
            availability=availability,
        )
        for i, (zone, cpus, ready, availability) in enumerate(node_specs)
    ]
    tasks = []
    for i, (constraint, cpus, sid) in enumerate(task_specs, start=1):
        tpl = template(
            placement={"Constraints": [constraint]} if constraint else None,
            reservations={"NanoCPUs": cpus * 1_000_000_000} if cpus else None,
        )
        tasks.append(pending(f"t{i}", tpl, service_id=sid))
    out = schedule(tasks, nodes, NOW)
    assert len(out.assigned) + len(out.pending) == len(tasks)
    by_id = {n.id: n for n in nodes}
    used: dict[str, Resources] = {}
    for t in out.assigned:
        node = by_id[t.node_id]
        assert node_fails(node, t.spec) is None
        used[node.id] = used.get(node.id, Resources()) + reservations(t.spec)
    for node_id, total in used.items():
        assert total.fits_in(by_id[node_id].resources)
    for t in out.pending:
        assert t.pending_reason.startswith("no suitable node")
