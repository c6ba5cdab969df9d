"""Whether a node may run a service's task, and why not (pure).

Each filter returns None when the node passes, or a short reason when it fails; the
reasons become a pending task's explanation (`docker service ps` shows it), as
swarmkit's `Filter.Explain` does: "no suitable node (1 node not available for new tasks;
scheduling constraints not satisfied on 2 nodes)".

Constraints are Swarm's: `node.id`, `node.hostname`, `node.role`, `node.platform.os`,
`node.platform.arch`, `node.labels.<k>`, `engine.labels.<k>`, each with `==` or `!=`.
A label that is absent equals nothing (so `!=` holds).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from orchestr.api.swarm import Node, Resources, Task, constraints, max_replicas_per_node

_CONSTRAINT = re.compile(r"^\s*([\w.\-]+)\s*(==|!=)\s*(.*?)\s*$")


class ConstraintError(ValueError):
    """A constraint that is not `key==value` or `key!=value` over a known key."""


def parse_constraint(text: str) -> tuple[str, bool, str]:
    """`node.labels.zone == a` → ("node.labels.zone", True, "a"); False for `!=`."""
    m = _CONSTRAINT.match(text)
    if m is None or not m.group(3):
        raise ConstraintError(f"invalid constraint {text!r}: want key==value or key!=value")
    key, op, value = m.groups()
    if not (
        key in ("node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch")
        or (key.startswith("node.labels.") and len(key) > len("node.labels."))
        or (key.startswith("engine.labels.") and len(key) > len("engine.labels."))
    ):
        raise ConstraintError(f"invalid constraint {text!r}: unknown key {key}")
    return key, op == "==", value


def node_value(node: Node, key: str) -> str | None:
    if key == "node.id":
        return node.id
    if key == "node.hostname":
        return node.hostname
    if key == "node.role":
        return node.role
    if key == "node.platform.os":
        return node.os
    if key == "node.platform.arch":
        return node.arch
    if key.startswith("node.labels."):
        return node.labels.get(key[len("node.labels.") :])
    if key.startswith("engine.labels."):
        return node.engine_labels.get(key[len("engine.labels.") :])
    return None


def _matches(node: Node, key: str, equal: bool, value: str) -> bool:
    actual = node_value(node, key)
    # Swarm compares node values case-insensitively, labels exactly.
    if actual is not None and not key.startswith(("node.labels.", "engine.labels.")):
        same = actual.lower() == value.lower()
    else:
        same = actual == value
    return same if equal else not same


def fails_availability(node: Node, _template: dict[str, Any]) -> str | None:
    if not node.ready:
        return "node is down"
    if node.availability != "active":
        return f"node is {node.availability}"
    return None


def fails_constraints(node: Node, template: dict[str, Any]) -> str | None:
    for text in constraints(template):
        key, equal, value = parse_constraint(text)
        if not _matches(node, key, equal, value):
            return f"constraint {text.strip()} not satisfied"
    return None


NODE_FILTERS: tuple[Callable[[Node, dict[str, Any]], str | None], ...] = (
    fails_availability,
    fails_constraints,
)


def node_fails(node: Node, template: dict[str, Any]) -> str | None:
    """Why `node` cannot take a task of `template` whatever else runs there, or None."""
    for f in NODE_FILTERS:
        reason = f(node, template)
        if reason is not None:
            return reason
    return None


def fails_load(
    node: Node,
    task: Task,
    need: Resources,
    used: Resources,
    of_service_here: int,
) -> str | None:
    """Why `node` cannot take `task` given what its other tasks hold, or None."""
    limit = max_replicas_per_node(task.spec)
    if limit and of_service_here >= limit:
        return f"max replicas per node ({limit}) reached"
    free = Resources(
        nano_cpus=node.resources.nano_cpus - used.nano_cpus,
        memory_bytes=node.resources.memory_bytes - used.memory_bytes,
    )
    if need.nano_cpus and need.nano_cpus > free.nano_cpus:
        return "insufficient resources: CPU"
    if need.memory_bytes and need.memory_bytes > free.memory_bytes:
        return "insufficient resources: memory"
    return None
