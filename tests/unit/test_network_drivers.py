"""The network driver seam: drivers describe endpoints; the container spec follows them."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.containers.spec import oci_config, parse_create
from agent.network import Endpoint, NetworkError, driver_for


def test_drivers_by_mode() -> None:
    none = driver_for("none").endpoint("c1", "box")
    assert none.namespace == "new" and none.hostname == "box" and none.warnings == ()
    assert "127.0.1.1\tbox" in none.hosts
    default = driver_for("default").endpoint("c1", "box")
    assert default.namespace == "new" and "not supported yet" in default.warnings[0]
    host = driver_for("host").endpoint("c1", "box")
    assert host.namespace == "host" and host.share_uts
    with pytest.raises(NetworkError, match="mynet networks are not supported yet"):
        driver_for("mynet")


def test_the_runtime_config_follows_the_endpoint(tmp_path: Path) -> None:
    spec = parse_create({"Image": "x", "Cmd": ["true"]})
    image: dict[str, object] = {"config": {}}

    def namespaces(endpoint: Endpoint) -> dict[str, str | None]:
        config = oci_config(
            spec,
            image,
            str(tmp_path),
            hostname="h",
            mounts=[],
            cgroups_path="/o/c",
            endpoint=endpoint,
        )
        return {n["type"]: n.get("path") for n in config["linux"]["namespaces"]}

    fresh = namespaces(Endpoint("new", "h", "", ""))
    assert "network" in fresh and fresh["network"] is None and "uts" in fresh
    shared = namespaces(Endpoint("host", "node", "", "", share_uts=True))
    assert "network" not in shared and "uts" not in shared
    joined = namespaces(Endpoint("/var/run/netns/other", "h", "", ""))
    assert joined["network"] == "/var/run/netns/other"
