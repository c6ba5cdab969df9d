"""The dependency graph of a project's services.

An edge `web → db` means web depends on db: db starts first and stops last. Edges come
from `depends_on` (with its condition, `required` and `restart`) and from what Compose
implies: `network_mode: service:x`, `volumes_from`, `links` (condition service_started).

- `build_graph(project)` → `Graph`; a cycle is a StackError that writes the cycle out
  (`web → api → db → web`).
- `start_waves(graph)` / `stop_waves(graph)`: services in waves whose members do not
  depend on each other (start: dependencies first; stop: the reverse).
- `with_dependencies(graph, names)`: the names and everything they need;
  `dependents(graph, name)`: everything that needs it.
- `render(graph, format)`: text, mermaid or dot.
- `to_networkx(graph)`: the same graph as a networkx DiGraph, for networkx's algorithms.

The graph is a small class of its own rather than a networkx DiGraph because it sits
on every `up`'s path and networkx takes a quarter of a second to import; the tests check
its answers against networkx's on random graphs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestr.stack.errors import StackError
from orchestr.stack.model import Project

if TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "Edge",
    "Graph",
    "build_graph",
    "dependents",
    "render",
    "start_waves",
    "stop_waves",
    "to_networkx",
    "with_dependencies",
]


@dataclass(frozen=True)
class Edge:
    condition: str
    required: bool = True
    restart: bool = False
    implicit: bool = False


@dataclass
class Graph:
    """Services and their `service → dependency` edges."""

    nodes: list[str] = field(default_factory=list)
    edges: dict[str, dict[str, Edge]] = field(default_factory=dict)

    def add_node(self, name: str) -> None:
        if name not in self.edges:
            self.nodes.append(name)
            self.edges[name] = {}

    def add_edge(self, service: str, dependency: str, edge: Edge) -> None:
        self.add_node(service)
        self.add_node(dependency)
        self.edges[service][dependency] = edge

    def successors(self, name: str) -> list[str]:
        """What `name` depends on."""
        return list(self.edges[name])

    def predecessors(self, name: str) -> list[str]:
        """What depends on `name`."""
        return [n for n in self.nodes if name in self.edges[n]]

    def find_cycle(self) -> list[str] | None:
        """A cycle as [a, b, …, a], or None (depth-first, nodes in insertion order)."""
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        path: list[str] = []

        def visit(name: str) -> list[str] | None:
            state[name] = 1
            path.append(name)
            for dep in self.edges[name]:
                if state.get(dep) == 1:
                    return [*path[path.index(dep) :], dep]
                if dep not in state:
                    found = visit(dep)
                    if found:
                        return found
            path.pop()
            state[name] = 2
            return None

        for node in self.nodes:
            if node not in state:
                found = visit(node)
                if found:
                    return found
        return None


def build_graph(project: Project) -> Graph:
    """Services as nodes, `service → dependency` edges with the dependency's settings."""
    graph = Graph()
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
                Edge(spec.condition, spec.required, spec.restart, dep not in explicit),
            )
    cycle = graph.find_cycle()
    if cycle is not None:
        raise StackError(
            f"dependency cycle: {' → '.join(cycle)}",
            path=("services", cycle[0], "depends_on"),
            hint="a service cannot depend, directly or through others, on itself",
        )
    return graph


def start_waves(graph: Graph) -> list[list[str]]:
    """Waves in start order: each wave depends only on earlier ones (sorted by name)."""
    left = {n: set(graph.edges[n]) for n in graph.nodes}
    waves = []
    while left:
        wave = sorted(n for n, deps in left.items() if not deps)
        if not wave:
            raise StackError(f"dependency cycle among {', '.join(sorted(left))}")
        waves.append(wave)
        for name in wave:
            del left[name]
        for deps in left.values():
            deps.difference_update(wave)
    return waves


def stop_waves(graph: Graph) -> list[list[str]]:
    """Waves in stop order: dependents first."""
    return list(reversed(start_waves(graph)))


def _closure(start: Iterable[str], step: Any) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        for nxt in step(name):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def with_dependencies(graph: Graph, names: Iterable[str]) -> set[str]:
    """`names` and everything they depend on, transitively."""
    names = list(names)
    return set(names) | _closure(names, graph.successors)


def dependents(graph: Graph, name: str) -> set[str]:
    """Services that depend on `name`, transitively."""
    return _closure([name], graph.predecessors)


def to_networkx(graph: Graph) -> nx.DiGraph[str]:
    """The graph as a networkx DiGraph (edge attributes: condition, required, …)."""
    import networkx as nx

    out: nx.DiGraph[str] = nx.DiGraph()
    out.add_nodes_from(graph.nodes)
    for name, deps in graph.edges.items():
        for dep, edge in deps.items():
            out.add_edge(name, dep, **edge.__dict__)
    return out


def _label(edge: Edge) -> str:
    label = edge.condition.removeprefix("service_")
    if edge.implicit:
        label += ", implied"
    if not edge.required:
        label += ", optional"
    if edge.restart:
        label += ", restart"
    return label


def _edges(graph: Graph) -> list[tuple[str, str, Edge]]:
    return sorted((a, b, e) for a, deps in graph.edges.items() for b, e in deps.items())


def render(graph: Graph, format: str = "text") -> str:
    """The graph as text (waves), Mermaid or Graphviz dot."""
    if format == "mermaid":
        lines = ["flowchart BT"]
        lines += [f"  {_mermaid_id(n)}[{n}]" for n in sorted(graph.nodes)]
        for a, b, edge in _edges(graph):
            lines.append(f"  {_mermaid_id(a)} -->|{_label(edge)}| {_mermaid_id(b)}")
        return "\n".join(lines) + "\n"
    if format == "dot":
        lines = ["digraph stack {", "  rankdir=BT;"]
        lines += [f'  "{n}";' for n in sorted(graph.nodes)]
        for a, b, edge in _edges(graph):
            lines.append(f'  "{a}" -> "{b}" [label="{_label(edge)}"];')
        return "\n".join(lines) + "\n}\n"
    if format != "text":
        raise ValueError(f"unknown graph format {format!r} (text, mermaid or dot)")
    lines = []
    for i, wave in enumerate(start_waves(graph), 1):
        parts = []
        for name in wave:
            deps = sorted(graph.edges[name].items())
            needs = ", ".join(f"{d} ({_label(e)})" for d, e in deps)
            parts.append(f"{name} ← {needs}" if deps else name)
        lines.append(f"{i}. " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def _mermaid_id(name: str) -> str:
    return "s_" + "".join(c if c.isalnum() else "_" for c in name)
