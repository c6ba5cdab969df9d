"""The dependency graph: edges, implicit edges, cycles, waves and drawings."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import networkx as nx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestr.graph.deps import (
    Edge,
    Graph,
    build_graph,
    dependents,
    render,
    start_waves,
    stop_waves,
    to_networkx,
    with_dependencies,
)
from orchestr.stack.errors import StackError
from orchestr.stack.model import Project


def project(**services: dict[str, Any]) -> Project:
    return Project.from_document({"name": "p", "services": services})


def dep(condition: str = "service_started", **extra: Any) -> dict[str, Any]:
    return {"condition": condition, "required": True, "restart": False, **extra}


def test_waves_start_dependencies_first_and_independents_together() -> None:
    p = project(
        web={"depends_on": {"api": dep()}},
        api={"depends_on": {"db": dep("service_healthy"), "cache": dep()}},
        db={},
        cache={},
        docs={},
    )
    graph = build_graph(p)
    assert start_waves(graph) == [["cache", "db", "docs"], ["api"], ["web"]]
    assert stop_waves(graph) == [["web"], ["api"], ["cache", "db", "docs"]]
    assert with_dependencies(graph, ["api"]) == {"api", "db", "cache"}
    assert dependents(graph, "db") == {"api", "web"}


def test_implied_edges() -> None:
    p = project(
        app={"network_mode": "service:vpn", "volumes_from": ["data:ro"], "links": ["db:database"]},
        vpn={},
        data={},
        db={},
    )
    graph = build_graph(p)
    assert set(graph.successors("app")) == {"vpn", "data", "db"}
    assert all(graph.edges["app"][d].implicit for d in ("vpn", "data", "db"))


def test_a_cycle_is_written_out() -> None:
    p = project(
        a={"depends_on": {"b": dep()}},
        b={"depends_on": {"c": dep()}},
        c={"depends_on": {"a": dep()}},
    )
    with pytest.raises(StackError) as caught:
        build_graph(p)
    assert "dependency cycle: a → b → c → a" in str(caught.value)


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(StackError, match="dependency cycle: a → a"):
        build_graph(project(a={"depends_on": {"a": dep()}}))


def test_optional_missing_dependency_is_dropped_required_is_an_error() -> None:
    graph = build_graph(project(a={"depends_on": {"gone": dep(required=False)}}))
    assert graph.edges == {"a": {}}
    with pytest.raises(StackError, match="undefined service 'gone'"):
        build_graph(project(a={"depends_on": {"gone": dep()}}))


def test_renderings() -> None:
    graph = build_graph(
        project(web={"depends_on": {"db": dep("service_healthy", restart=True)}}, db={})
    )
    assert render(graph, "text") == "1. db\n2. web ← db (healthy, restart)\n"
    mermaid = render(graph, "mermaid")
    assert "s_web -->|healthy, restart| s_db" in mermaid
    assert '"web" -> "db" [label="healthy, restart"];' in render(graph, "dot")
    with pytest.raises(ValueError):
        render(graph, "svg")


@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=20))
def test_answers_agree_with_networkx(pairs: list[tuple[int, int]]) -> None:
    graph = Graph()
    for n in range(8):
        graph.add_node(f"s{n}")
    for a, b in pairs:
        graph.add_edge(f"s{a}", f"s{b}", Edge("service_started"))
    reference = to_networkx(graph)
    cycle = graph.find_cycle()
    assert (cycle is None) == nx.is_directed_acyclic_graph(reference)
    if cycle is not None:
        assert cycle[0] == cycle[-1]
        assert all(reference.has_edge(x, y) for x, y in pairwise(cycle))
        return
    waves = start_waves(graph)
    expected = [sorted(w) for w in nx.topological_generations(reference.reverse())]
    assert waves == expected
    for n in range(8):
        name = f"s{n}"
        assert with_dependencies(graph, [name]) == {name} | nx.descendants(reference, name)
        assert dependents(graph, name) == nx.ancestors(reference, name)
