"""The `up` planner: pure decisions from desired services and observed containers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestr.compose.planner import Desired, Observed, Options, plan


def box(service: str, number: int, digest: str = "h1", running: bool = True) -> Observed:
    return Observed(f"id-{service}-{number}", f"p-{service}-{number}", service, number, digest,
                    running)  # fmt: skip


def test_nothing_there_creates_every_replica() -> None:
    result = plan({"web": Desired(3, "h1")}, [])
    assert result.kinds("web") == ["create"] * 3
    assert [a.number for a in result.services["web"]] == [1, 2, 3]


def test_unchanged_running_containers_are_kept() -> None:
    result = plan({"web": Desired(2, "h1")}, [box("web", 1), box("web", 2)])
    assert result.kinds("web") == ["keep", "keep"]
    assert not result.changes("web")


def test_stopped_containers_are_started_not_recreated() -> None:
    result = plan({"web": Desired(1, "h1")}, [box("web", 1, running=False)])
    assert result.kinds("web") == ["start"]


def test_a_changed_hash_recreates_only_that_service() -> None:
    desired = {"web": Desired(1, "h2"), "db": Desired(1, "h1")}
    result = plan(desired, [box("web", 1), box("db", 1)])
    assert result.kinds("web") == ["recreate"]
    assert result.kinds("db") == ["keep"]


def test_force_and_no_recreate() -> None:
    observed = [box("web", 1, "old")]
    assert plan({"web": Desired(1, "h1")}, observed, Options(force_recreate=True)).kinds("web") == [
        "recreate"
    ]
    assert plan({"web": Desired(1, "new")}, observed, Options(no_recreate=True)).kinds("web") == [
        "keep"
    ]


def test_scale_down_removes_the_highest_numbers() -> None:
    result = plan({"web": Desired(1, "h1")}, [box("web", 2), box("web", 1), box("web", 3)])
    assert [(a.kind, a.number) for a in result.services["web"]] == [
        ("keep", 1), ("remove", 2), ("remove", 3)]  # fmt: skip


def test_scale_up_fills_missing_numbers_first() -> None:
    result = plan({"web": Desired(3, "h1")}, [box("web", 2)])
    assert [(a.kind, a.number) for a in result.services["web"]] == [
        ("keep", 2), ("create", 1), ("create", 3)]  # fmt: skip


def test_orphans_are_containers_of_services_gone_from_the_project() -> None:
    result = plan({"web": Desired(1, "h1")}, [box("web", 1), box("old", 1)],
                  all_services=["web", "db"])  # fmt: skip
    assert [o.service for o in result.orphans] == ["old"]


def test_unselected_services_are_not_orphans() -> None:
    result = plan({"web": Desired(1, "h1")}, [box("db", 1)], all_services=["web", "db"])
    assert result.orphans == []
    assert "db" not in result.services


def test_sharing_a_recreated_namespace_recreates_too() -> None:
    desired = {"vpn": Desired(1, "new"), "app": Desired(1, "h1", shares_with=("vpn",))}
    result = plan(desired, [box("vpn", 1, "old"), box("app", 1)])
    assert result.kinds("app") == ["recreate"]


def test_restart_true_restarts_dependents_of_a_recreated_service() -> None:
    desired = {"db": Desired(1, "new"), "api": Desired(1, "h1", restart_with=("db",)),
               "web": Desired(1, "h1")}  # fmt: skip
    result = plan(desired, [box("db", 1, "old"), box("api", 1), box("web", 1)])
    assert result.kinds("api") == ["restart"]
    assert result.kinds("web") == ["keep"]


@given(
    replicas=st.dictionaries(st.sampled_from("abcde"), st.integers(0, 5), min_size=1),
    existing=st.lists(
        st.tuples(
            st.sampled_from("abcdef"), st.integers(1, 7), st.sampled_from(["h", "x"]), st.booleans()
        ),
        max_size=20,
    ),
)
def test_after_the_plan_each_service_has_exactly_its_replicas(
    replicas: dict[str, int], existing: list[tuple[str, int, str, bool]]
) -> None:
    observed = [Observed(f"{s}{n}{i}", f"{s}-{n}", s, n, h, r)
                for i, (s, n, h, r) in enumerate(existing)]  # fmt: skip
    desired = {s: Desired(n, "h") for s, n in replicas.items()}
    result = plan(desired, observed)
    for service, want in replicas.items():
        actions = result.services[service]
        remaining = [a for a in actions if a.kind != "remove"]
        assert len(remaining) == want
        assert len({a.number for a in remaining}) == want  # no number twice
        removed = {a.container.id for a in actions if a.kind == "remove" and a.container}
        mine = {o.id for o in observed if o.service == service}
        kept = {a.container.id for a in remaining if a.container}
        assert removed | kept == mine and not removed & kept  # every container accounted for


def test_a_one_shot_that_exited_0_is_done_not_started_again() -> None:
    done = Observed("i", "p-job-1", "job", 1, "h1", False, exit_code=0)
    failed = Observed("j", "p-job-1", "job", 1, "h1", False, exit_code=3)
    assert plan({"job": Desired(1, "h1", one_shot=True)}, [done]).kinds("job") == ["keep"]
    assert plan({"job": Desired(1, "h1", one_shot=True)}, [failed]).kinds("job") == ["start"]
    assert plan({"job": Desired(1, "h1")}, [done]).kinds("job") == ["start"]
