"""The cluster's control loops: one that fails starts again; a closed store ends it. A
started cluster is a swarm of one."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestr.manager import local
from orchestr.state.errors import Closed
from orchestr.state.sqlite import open_store


def test_a_failing_loop_starts_again_and_a_closed_store_ends_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(local, "RESTART_DELAY", 0.0)
    calls = []

    def flaky(stop: threading.Event) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("a bug")
        raise Closed("the store is closed")

    local._logged(flaky)(threading.Event())
    assert len(calls) == 3


def test_a_stopped_cluster_does_not_restart_its_loops() -> None:
    stop = threading.Event()
    calls = []

    def once(event: threading.Event) -> None:
        calls.append(1)
        event.set()
        raise RuntimeError("failed while stopping")

    local._logged(once)(stop)
    assert calls == [1]


def test_a_started_cluster_is_a_swarm_of_one_whose_id_stays(tmp_path: Path) -> None:
    ids = []
    for _ in range(2):  # a manager that starts again finds its cluster
        cluster = local.Cluster(open_store(str(tmp_path)), "node1")
        cluster.start()
        try:
            info = cluster.api.swarm_info()
            assert info["NodeID"] == "node1" and info["LocalNodeState"] == "active"
            assert info["ControlAvailable"] is True
            assert (info["Nodes"], info["Managers"]) == (1, 1)
            ids.append(info["Cluster"]["ID"])
        finally:
            cluster.stop()
    assert ids[0] == ids[1]
