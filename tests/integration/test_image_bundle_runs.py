"""A config made from an image config runs under orchestr's runtime and under runc."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agent.images.bundle import Overrides, runtime_config
from tests.conftest import unique
from tests.integration.test_runtime import run_cli, run_command


@pytest.mark.parametrize("runtime_cmd", ["orchestr", "runc"])
def test_image_config_bundle_runs(state_dir: Path, busybox_rootfs: Path, runtime_cmd: str) -> None:
    if runtime_cmd == "runc" and shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    bundle = state_dir / "bundle"
    bundle.mkdir()
    shutil.copytree(busybox_rootfs, bundle / "rootfs", symlinks=True)
    image_config = {
        "config": {
            "Entrypoint": ["sh", "-c"],
            "Cmd": ["echo default"],
            "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hello"],
            "WorkingDir": "/var",
            "User": "daemon",
        }
    }
    overrides = Overrides(
        cmd=['echo "$GREETING $(id -u):$(id -g) $(pwd) $(hostname)"'],
        env=["GREETING=hi"],
        hostname="from-image",
    )
    config = runtime_config(image_config, overrides, str(bundle / "rootfs"))
    (bundle / "config.json").write_text(json.dumps(config, indent=2))
    if runtime_cmd == "orchestr":
        out = run_cli(state_dir / "root", "run", "-b", str(bundle), unique())
    else:
        out = run_command(
            ["runc", "--root", str(state_dir / "runc"), "run", "-b", str(bundle), unique()]
        )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hi 1:1 /var from-image"
