"""The whole image path: import a busybox rootfs as an image, unpack its layers
from the content store into snapshots, mount them, make the bundle from the
image config, and run it."""

from __future__ import annotations

import json
from pathlib import Path

from agent.content import ContentStore
from agent.images.bundle import Overrides, runtime_config
from agent.images.importer import import_rootfs
from agent.images.reference import parse
from agent.images.store import ImageStore
from agent.snapshots import OverlaySnapshotter
from tests.conftest import Mounter, unique
from tests.integration.test_runtime import run_cli


def test_imported_image_runs_from_its_snapshots(
    state_dir: Path,
    busybox_rootfs: Path,
    mounter: Mounter,
) -> None:
    content = ContentStore(state_dir / "data" / "content")
    images = ImageStore(state_dir / "data" / "images", content)
    import_rootfs(content, images, str(busybox_rootfs), parse("busybox"), cmd=["sh"])

    image = images.get("busybox:latest")
    manifest = json.loads(content.read(image.target.digest))
    config = json.loads(content.read(manifest["config"]["digest"]))
    snapshots = OverlaySnapshotter(str(state_dir / "data"))
    chain: str | None = None
    for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
        with content.open(layer["digest"]) as blob:
            chain = snapshots.unpack(chain, blob, layer["mediaType"], diff_id)
    assert chain == config["rootfs"]["diff_ids"][0]  # one layer: its chain id is its diff id

    bundle = state_dir / "bundle"
    bundle.mkdir()
    rootfs = mounter(snapshots.mounts(chain, str(state_dir / "c1")), bundle / "rootfs")
    overrides = Overrides(cmd=["sh", "-c", "id -un; cat /etc/hostname; echo $PATH"], user="daemon")
    (bundle / "config.json").write_text(json.dumps(runtime_config(config, overrides, str(rootfs))))
    out = run_cli(state_dir / "root", "run", "-b", str(bundle), unique())
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "daemon",
        "busybox",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    assert content.fsck() == []
