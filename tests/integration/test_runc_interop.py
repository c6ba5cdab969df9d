"""The bundle is the contract: runc's bundles run under orchestr and ours under runc."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.runtime import specopts as so
from tests.conftest import BundleFactory, unique
from tests.integration.test_runtime import run_cli, run_command

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
]

# Commands whose output must not depend on which runtime ran them.
SCRIPTS = [
    "echo hello; exit 0",
    "exit 42",
    "echo $$; hostname; id; pwd; echo $PATH",
    "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status",
    "grep NoNewPrivs /proc/self/status; ulimit -n; ulimit -Hn",
    "ls /sys/class/net; ls /dev | sort; readlink /dev/fd /dev/ptmx",
    "cat /proc/self/mountinfo | awk '{print $5, $9}' | sort",
    "touch /x 2>/dev/null || echo read-only; wc -c < /proc/timer_list; ls /proc/acpi | wc -l",
    "kill -9 $$",
    "echo out; echo err >&2; exit 7",
]


def runc_spec_bundle(dest: Path, rootfs: Path, script: str) -> Path:
    """A bundle written by `runc spec`, with only args and terminal edited."""
    dest.mkdir()
    shutil.copytree(rootfs, dest / "rootfs", symlinks=True)
    subprocess.run(["runc", "spec"], cwd=dest, check=True)
    config = json.loads((dest / "config.json").read_text())
    config["process"]["args"] = ["sh", "-c", script]
    config["process"]["terminal"] = False
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    return dest


def runc(root: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_command(["runc", "--root", str(root), *args], cwd=cwd)


@pytest.mark.parametrize("script", SCRIPTS)
def test_runc_spec_bundle_gives_the_same_result(
    state_dir: Path, busybox_rootfs: Path, script: str
) -> None:
    bundle = runc_spec_bundle(state_dir / "bundle", busybox_rootfs, script)
    theirs = runc(state_dir / "runc-root", "run", "-b", str(bundle), unique())
    ours = run_cli(state_dir / "root", "run", "-b", str(bundle), unique())
    assert ours.returncode == theirs.returncode, ours.stderr
    assert ours.stdout == theirs.stdout
    assert ours.stderr == theirs.stderr


def test_orchestr_bundle_runs_under_runc(make_bundle: BundleFactory, state_dir: Path) -> None:
    bundle = make_bundle(
        so.with_args(["sh", "-c", "hostname; id -u; echo $GREETING; exit 5"]),
        so.with_hostname("ours"),
        so.with_user(1000, 1000),
        so.with_env({"GREETING": "from orchestr"}),
        so.with_memory_limit(64 * 1024 * 1024),
        so.with_pids_limit(32),
    )
    theirs = runc(state_dir / "runc-root", "run", "-b", str(bundle), unique())
    assert theirs.returncode == 5, theirs.stderr
    assert theirs.stdout.split("\n")[:3] == ["ours", "1000", "from orchestr"]
    ours = run_cli(state_dir / "root", "run", "-b", str(bundle), unique())
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout)


def test_state_has_runcs_shape(make_bundle: BundleFactory, state_dir: Path) -> None:
    bundle = make_bundle(so.with_args(["sleep", "30"]))
    cid_runc, cid_ours = unique(), unique()
    assert runc(state_dir / "runc-root", "create", "-b", str(bundle), cid_runc).returncode == 0
    try:
        assert run_cli(state_dir / "root", "create", "-b", str(bundle), cid_ours).returncode == 0
        theirs = json.loads(runc(state_dir / "runc-root", "state", cid_runc).stdout)
        ours = json.loads(run_cli(state_dir / "root", "state", cid_ours).stdout)
        assert set(theirs) <= set(ours) | {"annotations"}
        assert ours["status"] == theirs["status"] == "created"
        assert ours["bundle"] == theirs["bundle"]
        assert ours["rootfs"] == theirs["rootfs"]
    finally:
        runc(state_dir / "runc-root", "delete", "--force", cid_runc)
        run_cli(state_dir / "root", "delete", "--force", cid_ours)
