"""The cluster's control loops: one that fails starts again; a closed store ends it."""

from __future__ import annotations

import threading

import pytest

from orchestr.manager import local
from orchestr.state.errors import Closed


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
