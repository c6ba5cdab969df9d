"""depends_on between services: a service's first tasks wait for their dependencies."""

from __future__ import annotations

import json

from orchestr.api.swarm import TaskState
from orchestr.orchestrator.dependencies import LABEL
from tests.unit.swarm_sim import Cluster, spec


def after(deps: dict[str, str], image: str = "app:1", name: str = "web") -> dict[str, object]:
    return spec(image, 1, name=name, labels={LABEL: json.dumps(deps)})


def first_running(cluster: Cluster, service_id: str) -> float | None:
    times = [t.status.started_at for t in cluster.of(service_id) if t.status.started_at]
    return min(times) if times else None


def test_a_service_starts_only_once_its_dependency_runs_all_its_tasks() -> None:
    cluster = Cluster()
    cluster.create("db", spec("db:1", 3, name="db"))
    cluster.create("web", after({"db": "service_healthy"}))
    cluster.tick()
    assert cluster.of("web") == []  # nothing made while db is not up
    cluster.run(15)
    db_up = max(t.status.started_at for t in cluster.running("db"))
    web_up = first_running(cluster, "web")
    assert web_up is not None and web_up > db_up


def test_service_started_needs_one_task_running() -> None:
    cluster = Cluster()
    cluster.create("db", spec("db:1", 2, name="db"))
    cluster.create("web", after({"db": "service_started"}))
    cluster.run(15)
    web_up = first_running(cluster, "web")
    db_first = first_running(cluster, "db")
    assert web_up is not None and db_first is not None and web_up > db_first


def test_a_job_must_complete_before_its_dependents_start() -> None:
    cluster = Cluster(one_shot_images={"migrate:1"})
    cluster.create(
        "migrate", spec("migrate:1", 1, name="migrate", restart={"Condition": "on-failure"})
    )
    cluster.create("web", after({"migrate": "service_completed_successfully"}))
    cluster.run(20)
    [job] = cluster.of("migrate")
    assert job.state == TaskState.COMPLETE
    assert len(cluster.running("web")) == 1


def test_a_missing_dependency_is_waited_for() -> None:
    cluster = Cluster()
    cluster.create("web", after({"db": "service_started"}))
    cluster.run(5)
    assert cluster.of("web") == []
    cluster.create("db", spec("db:1", 1, name="db"))
    cluster.run(15)
    assert len(cluster.running("web")) == 1


def test_a_started_service_is_not_stopped_when_its_dependency_fails() -> None:
    cluster = Cluster()
    cluster.create("db", spec("db:1", 1, name="db"))
    cluster.create("web", after({"db": "service_healthy"}))
    cluster.run(15)
    assert len(cluster.running("web")) == 1
    cluster.bad_images.add("db:2")
    cluster.update("db", spec("db:2", 1, name="db", update={"FailureAction": "continue"}))
    cluster.run(15)
    assert len(cluster.running("web")) == 1
