"""The cgroup v2 code path, on a real cgroup2 mount.

This machine is a v1/v2 hybrid: its cgroup2 hierarchy at /sys/fs/cgroup/unified
has no resource controllers, but cgroup.procs, cgroup.freeze and cgroup
namespaces are real. Pointing the runtime's cgroup root there runs every v2
step a pure-v2 machine runs, except the resource files themselves (those are
covered by tests/unit/test_cgroups.py).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent.runtime import specopts as so
from agent.runtime.linux import cgroups
from agent.runtime.runtime import Runtime
from tests.conftest import BundleFactory, unique

UNIFIED = "/sys/fs/cgroup/unified"


def _is_cgroup2(path: str) -> bool:
    out = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True)
    return out.stdout.strip() == "cgroup2fs"


@pytest.fixture
def v2_root(monkeypatch: pytest.MonkeyPatch) -> str:
    if _is_cgroup2("/sys/fs/cgroup"):
        return "/sys/fs/cgroup"  # a pure v2 machine: nothing to pretend
    if not os.path.isdir(UNIFIED) or not _is_cgroup2(UNIFIED):
        pytest.skip("no cgroup2 hierarchy on this machine")
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", UNIFIED)
    monkeypatch.setattr(cgroups, "_hierarchies", None)
    yield UNIFIED
    monkeypatch.setattr(cgroups, "_hierarchies", None)


def test_container_in_a_v2_cgroup(
    v2_root: str, runtime: Runtime, make_bundle: BundleFactory
) -> None:
    assert cgroups.is_unified()
    bundle = make_bundle(
        so.with_args(
            [
                "sh",
                "-c",
                "cat /proc/self/cgroup; ls /sys/fs/cgroup | grep -c cgroup.procs; sleep 30",
            ]
        )
    )
    cid = unique()
    out = Path(runtime.root).parent / "out"
    with open(out, "w") as f:
        c = runtime.create(cid, str(bundle), stdio=(0, f.fileno(), f.fileno()))
    assert c.cgroup is not None and c.cgroup.unified
    d = c.cgroup.paths[v2_root]
    assert d == os.path.join(v2_root, "orchestr", cid)
    assert str(c.pid) in Path(d, "cgroup.procs").read_text().split()
    runtime.start(cid)
    for _ in range(300):
        if out.read_text().splitlines()[-1:] == ["1"]:
            break
        import time

        time.sleep(0.01)
    # In its cgroup namespace the container is at the root of the v2 tree,
    # and /sys/fs/cgroup is a cgroup2 mount of its own subtree.
    lines = out.read_text().splitlines()
    assert "0::/" in lines  # the unified line: the container sits at its namespace's root
    assert lines[-1] == "1"  # /sys/fs/cgroup holds exactly one cgroup.procs: its own
    runtime.pause(cid)
    assert Path(d, "cgroup.freeze").read_text().strip() == "1"
    assert runtime.state(cid)["status"] == "paused"
    runtime.resume(cid)
    assert runtime.state(cid)["status"] == "running"
    runtime.delete(cid, force=True)
    assert not os.path.exists(d)
    assert not os.path.exists(os.path.join(v2_root, "orchestr"))
