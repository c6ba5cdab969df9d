from __future__ import annotations

from agent.runtime import specopts as so


def test_with_env_replaces_in_place_and_appends() -> None:
    config = so.build({"process": {"env": ["PATH=/bin", "A=1"]}}, so.with_env({"A": "2", "B": "3"}))
    assert config["process"]["env"] == ["PATH=/bin", "A=2", "B=3"]  # type: ignore[index]


def test_namespace_options() -> None:
    config = so.build(
        so.default_spec(),
        so.with_namespace("network", "/run/netns/x"),
        so.without_namespace("cgroup"),
    )
    nss = config["linux"]["namespaces"]  # type: ignore[index]
    assert {"type": "network", "path": "/run/netns/x"} in nss
    assert all(n["type"] != "cgroup" for n in nss)
    assert sum(n["type"] == "network" for n in nss) == 1


def test_resources_compose() -> None:
    config = so.build(
        {}, so.with_memory_limit(100), so.with_pids_limit(5), so.with_cpu(shares=2, cpus="0")
    )
    assert config["linux"]["resources"] == {  # type: ignore[index]
        "memory": {"limit": 100},
        "pids": {"limit": 5},
        "cpu": {"shares": 2, "cpus": "0"},
    }


def test_default_spec_is_fresh_each_time() -> None:
    a = so.default_spec()
    a["process"]["args"] = ["x"]  # type: ignore[index]
    assert so.default_spec()["process"]["args"] == ["sh"]  # type: ignore[index]
