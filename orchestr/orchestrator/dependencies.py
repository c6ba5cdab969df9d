"""Compose's `depends_on` for services: a service's first tasks wait for its
dependencies' conditions (pure).

Swarm ignores `depends_on` (moby/moby#46827; users keep asking). orchestr keeps the
stack's dependencies on each service, as the label `org.orchestr.depends-on` (a JSON
object: dependency service name → condition), and the orchestrator makes no task for a
service whose dependencies are not met yet:

- `service_started`: a task of the dependency runs (or has completed);
- `service_healthy`: every wanted task of the dependency runs — a task with a health
  check is running only once healthy — and there are as many as it wants;
- `service_completed_successfully`: the dependency's tasks have completed (exit 0) and
  none is still on its way.

As with Compose, the conditions gate the start only: a service that has tasks is not
stopped when a dependency later fails, and a dependency that does not exist (yet) is
waited for.
"""

from __future__ import annotations

import json

from orchestr.api.swarm import Service, Task, TaskState, is_global, replicas

LABEL = "org.orchestr.depends-on"
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")


def dependencies(service: Service) -> dict[str, str]:
    """Dependency service name → condition, from the service's label."""
    text = (service.spec.get("Labels") or {}).get(LABEL)
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(k): str(v) for k, v in doc.items() if v in CONDITIONS}


def waiting_for(service: Service, services: list[Service], tasks: list[Task]) -> str | None:
    """Why `service` may not start yet, or None when its dependencies are met."""
    by_name = {s.name: s for s in services}
    for name, condition in sorted(dependencies(service).items()):
        dep = by_name.get(name)
        if dep is None:
            return f"waiting for {name} (not created yet)"
        theirs = [t for t in tasks if t.service_id == dep.id]
        if not _met(dep, theirs, condition):
            return f"waiting for {name} ({condition})"
    return None


def _met(dep: Service, tasks: list[Task], condition: str) -> bool:
    wanted = [t for t in tasks if t.desired_state <= TaskState.RUNNING]
    if condition == "service_started":
        return any(t.state in (TaskState.RUNNING, TaskState.COMPLETE) for t in wanted)
    if condition == "service_healthy":
        enough = bool(wanted) if is_global(dep.spec) else len(wanted) >= replicas(dep.spec)
        return enough and all(t.state == TaskState.RUNNING for t in wanted)
    # service_completed_successfully
    return bool(wanted) and all(t.state == TaskState.COMPLETE for t in wanted)
