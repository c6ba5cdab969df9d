"""The dependency graph of a project's services.

An edge `web → db` means web depends on db: db starts first and stops last. Edges come
from `depends_on` (with its condition, `required` and `restart`) and from what Compose
implies: `network_mode: service:x`, `volumes_from`, `links` (condition service_started).

- `build_graph(project)` → networkx DiGraph; a cycle is a StackError that writes the
  cycle out (`web → api → db → web`).
- `start_waves(graph)` / `stop_waves(graph)`: services in waves whose members have no
  dependency on each other (start: dependencies first; stop: the reverse).
- `with_dependencies(graph, names)`: the names and everything they need.
- `render(graph, format)`: text, mermaid or dot.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

import networkx as nx

from orchestr.stack.errors import StackError
from orchestr.stack.model import Project

__all__ = [
    "build_graph",
    "dependents",
    "render",
    "start_waves",
    "stop_waves",
    "with_dependencies",
]

Graph: TypeAlias = "nx.DiGraph[str]"


def build_graph(project: Project) -> Graph:
    """Services as nodes, `service → dependency` edges with the dependency's settings."""
    graph: Graph = nx.DiGraph()
    for name in project.services:
        graph.add_node(name)
    for name, service in project.services.items():
        explicit = set(service.depends_on)
        for dep, spec in service.dependencies().items():
            if dep not in project.services:
                if spec.required:
                    raise StackError(
                        f"depends on undefined service {dep!r}",
                        path=("services", name, "depends_on"),
                    )
                continue
            graph.add_edge(
                name,
                dep,
                condition=spec.condition,
                required=spec.required,
                restart=spec.restart,
                implicit=dep not in explicit,
            )
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return graph
    names = [edge[0] for edge in cycle] + [cycle[0][0]]
    raise StackError(
        f"dependency cycle: {' → '.join(names)}",
        path=("services", names[0], "depends_on"),
        hint="a service cannot depend, directly or through others, on itself",
    )


def start_waves(graph: Graph) -> list[list[str]]:
    """Waves in start order: each wave depends only on earlier ones (sorted by name)."""
    return [sorted(wave) for wave in nx.topological_generations(graph.reverse(copy=False))]


def stop_waves(graph: Graph) -> list[list[str]]:
    """Waves in stop order: dependents first."""
    return list(reversed(start_waves(graph)))


def with_dependencies(graph: Graph, names: Iterable[str]) -> set[str]:
    """`names` and everything they depend on, transitively."""
    out: set[str] = set()
    for name in names:
        out.add(name)
        out |= nx.descendants(graph, name)
    return out


def dependents(graph: Graph, name: str) -> set[str]:
    """Services that depend on `name`, transitively."""
    return set(nx.ancestors(graph, name))


def _label(graph: Graph, a: str, b: str) -> str:
    data = graph.edges[a, b]
    label = str(data["condition"]).removeprefix("service_")
    if data.get("implicit"):
        label += ", implied"
    if not data.get("required", True):
        label += ", optional"
    if data.get("restart"):
        label += ", restart"
    return label


def render(graph: Graph, format: str = "text") -> str:
    """The graph as text (waves), Mermaid or Graphviz dot."""
    if format == "mermaid":
        lines = ["flowchart BT"]
        lines += [f"  {_mermaid_id(n)}[{n}]" for n in sorted(graph.nodes)]
        for a, b in sorted(graph.edges):
            lines.append(f"  {_mermaid_id(a)} -->|{_label(graph, a, b)}| {_mermaid_id(b)}")
        return "\n".join(lines) + "\n"
    if format == "dot":
        lines = ["digraph stack {", "  rankdir=BT;"]
        lines += [f'  "{n}";' for n in sorted(graph.nodes)]
        for a, b in sorted(graph.edges):
            lines.append(f'  "{a}" -> "{b}" [label="{_label(graph, a, b)}"];')
        return "\n".join(lines) + "\n}\n"
    if format != "text":
        raise ValueError(f"unknown graph format {format!r} (text, mermaid or dot)")
    lines = []
    for i, wave in enumerate(start_waves(graph), 1):
        parts = []
        for name in wave:
            deps = sorted(graph.successors(name))
            needs = ", ".join(f"{d} ({_label(graph, name, d)})" for d in deps)
            parts.append(f"{name} ← {needs}" if deps else name)
        lines.append(f"{i}. " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def _mermaid_id(name: str) -> str:
    return "s_" + "".join(c if c.isalnum() else "_" for c in name)
