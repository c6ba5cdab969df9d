"""OCI hooks: when each kind runs, what state it gets, what its failure does."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from agent.runtime import specopts as so
from agent.runtime.errors import RuntimeError_
from agent.runtime.runtime import Runtime
from tests.conftest import BundleFactory, unique
from tests.integration.test_runtime import run_cli


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def with_hooks(hooks: dict[str, list[dict[str, object]]]) -> so.SpecOpt:
    def opt(config: dict[str, object]) -> None:
        config["hooks"] = hooks

    return opt


def test_every_hook_runs_in_order_with_the_state(
    runtime: Runtime, make_bundle: BundleFactory, state_dir: Path
) -> None:
    out = state_dir / "hooks"
    out.mkdir()
    record = script(state_dir / "record.sh", f"cat > {out}/$1.json; echo $1 >> {out}/order")
    hooks = {
        kind: [{"path": record, "args": ["record.sh", kind]}]
        for kind in ("createRuntime", "createContainer", "poststart", "poststop")
    }
    # startContainer runs inside the container: its path is the container's.
    hooks["startContainer"] = [
        {"path": "/bin/sh", "args": ["sh", "-c", "cat > /out/startContainer.json"]}
    ]
    bundle = make_bundle(
        so.with_args(["true"]),
        so.with_mount("/out", "bind", str(out), ["rbind"]),
        with_hooks(hooks),
    )
    cid = unique()
    c = runtime.create(cid, str(bundle))
    assert (out / "order").read_text().split() == ["createRuntime", "createContainer"]
    created = json.loads((out / "createRuntime.json").read_text())
    assert created["id"] == cid and created["status"] == "creating"
    assert created["pid"] == c.pid and created["bundle"] == str(bundle)
    runtime.start(cid)
    runtime.wait(c)
    assert json.loads((out / "poststart.json").read_text())["status"] == "running"
    for _ in range(200):
        if (out / "startContainer.json").exists():
            break
        time.sleep(0.01)
    assert json.loads((out / "startContainer.json").read_text())["id"] == cid
    runtime.delete(cid)
    assert json.loads((out / "poststop.json").read_text())["status"] == "stopped"
    assert (out / "order").read_text().split() == [
        "createRuntime",
        "createContainer",
        "poststart",
        "poststop",
    ]


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        ({"args": ["sh", "-c", "exit 3"]}, "hooks.createRuntime[0]: /bin/sh exited with status 3"),
        ({"args": ["sh", "-c", "sleep 5"], "timeout": 1}, "timed out after 1s"),
    ],
)
def test_failing_create_hook_fails_create_and_leaves_nothing(
    make_bundle: BundleFactory, state_dir: Path, hook: dict[str, object], message: str
) -> None:
    bundle = make_bundle(
        so.with_args(["true"]), with_hooks({"createRuntime": [{"path": "/bin/sh", **hook}]})
    )
    root = state_dir / "root"
    cid = unique()
    out = run_cli(root, "create", "-b", str(bundle), cid)
    assert out.returncode == 1
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (root / cid).exists()


def test_failing_poststop_hook_is_only_a_warning(
    make_bundle: BundleFactory, state_dir: Path
) -> None:
    bundle = make_bundle(
        so.with_args(["true"]),
        with_hooks({"poststop": [{"path": "/bin/false"}]}),
    )
    root = state_dir / "root"
    out = run_cli(root, "run", "-b", str(bundle), unique())
    assert out.returncode == 0
    assert "warning: hooks.poststop[0]: /bin/false exited with status 1" in out.stderr
    assert os.listdir(root) == []


def test_relative_hook_path_is_refused(runtime: Runtime, make_bundle: BundleFactory) -> None:
    bundle = make_bundle(so.with_args(["true"]), with_hooks({"prestart": [{"path": "bin/x"}]}))
    with pytest.raises(RuntimeError_, match=r"hooks.prestart\[0\].path"):
        runtime.create(unique(), str(bundle))
