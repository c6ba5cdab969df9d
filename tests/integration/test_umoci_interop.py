"""Our loader and saver beside umoci (0.4.7, Debian's): an image umoci builds, with
whiteouts from its own layer writer, loads into our content store, unpacks into
overlay snapshots and runs with our runtime; an image we save, umoci reads and
unpacks."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from agent.content import ContentStore
from agent.images.archive import load, save
from agent.images.bundle import Overrides, runtime_config
from agent.images.importer import import_rootfs
from agent.images.reference import parse
from agent.images.store import ImageStore
from agent.snapshots import OverlaySnapshotter
from tests.conftest import Mounter, skopeo, unique
from tests.integration.test_runtime import run_cli

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed"),
]

CMD = (
    "ls /etc/doomed 2>&1; ls /data/old; cat /data/old/b /data/swap; "
    "test -e /data/old/a || echo a-gone; test -f /data/swap && echo swap-is-a-file"
)


def umoci(*args: str | Path, cwd: Path | None = None) -> str:
    """Run umoci; its stdout, or the test fails with its stderr."""
    done = subprocess.run(
        ["umoci", *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def umoci_layout(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Path:
    """An OCI layout umoci built: busybox, then a layer that deletes and replaces.

    Layer 1: the busybox rootfs plus /etc/doomed, /data/old/a and an empty
    directory /data/swap. Layer 2: /etc/doomed deleted, /data/old replaced by a
    new directory holding only b, /data/swap replaced by a file. (A directory
    with files in it replaced by a file is `test_umoci_file_over_a_full_directory`.)
    """
    work = tmp_path_factory.mktemp("umoci")
    layout, image = work / "layout", f"{work / 'layout'}:t"
    umoci("init", "--layout", layout)
    umoci("new", "--image", image)
    umoci("unpack", "--image", image, work / "b1")
    rootfs = work / "b1" / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True, dirs_exist_ok=True)
    (rootfs / "etc" / "doomed").write_text("doomed\n")
    (rootfs / "data" / "old").mkdir(parents=True)
    (rootfs / "data" / "old" / "a").write_text("old\n")
    (rootfs / "data" / "swap").mkdir()
    umoci("repack", "--image", image, work / "b1")
    umoci(
        "config",
        "--image",
        image,
        "--config.env",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "--config.cmd",
        "sh",
        "--config.cmd",
        "-c",
        "--config.cmd",
        CMD,
    )
    umoci("unpack", "--image", image, work / "b2")
    rootfs = work / "b2" / "rootfs"
    (rootfs / "etc" / "doomed").unlink()
    shutil.rmtree(rootfs / "data" / "old")
    (rootfs / "data" / "old").mkdir()
    (rootfs / "data" / "old" / "b").write_text("new\n")
    shutil.rmtree(rootfs / "data" / "swap")
    (rootfs / "data" / "swap").write_text("file\n")
    umoci("repack", "--image", image, work / "b2")
    return layout


def _tar_of(directory: Path, out: Path) -> Path:
    with tarfile.open(out, "w") as tar:
        for entry in sorted(directory.iterdir()):
            tar.add(entry, arcname=entry.name)
    return out


def _stores(root: Path) -> tuple[ContentStore, ImageStore]:
    content = ContentStore(root / "content")
    return content, ImageStore(root / "images", content)


def _layer_names(content: ContentStore, digest: str) -> set[str]:
    with content.open(digest) as blob, tarfile.open(fileobj=blob, mode="r:*") as tar:
        return {m.name for m in tar.getmembers()}


def test_umoci_layout_loads_with_the_same_digests(umoci_layout: Path, tmp_path: Path) -> None:
    index = json.loads((umoci_layout / "index.json").read_text())
    [entry] = index["manifests"]
    stat = json.loads(umoci("stat", "--json", "--image", f"{umoci_layout}:t"))
    stat_layers = [h for h in stat["history"] if not h.get("empty_layer")]
    inspect = json.loads(skopeo("inspect", f"oci:{umoci_layout}:t"))

    for source in (umoci_layout, _tar_of(umoci_layout, tmp_path / "layout.tar")):
        content, images = _stores(tmp_path / f"from-{Path(source).name}-store")
        [image] = load(content, images, source, name="umoci.test/busybox")
        assert str(image.reference) == "umoci.test/busybox:t"
        assert image.target.digest == entry["digest"] == inspect["Digest"]
        manifest = json.loads(content.read(image.target.digest))
        config = json.loads(content.read(manifest["config"]["digest"]))
        layers = [layer["digest"] for layer in manifest["layers"]]
        assert layers == [h["layer"]["digest"] for h in stat_layers] == inspect["Layers"]
        assert config["rootfs"]["diff_ids"] == [h["diff_id"] for h in stat_layers]
        assert config["config"]["Cmd"] == ["sh", "-c", CMD]
        assert content.fsck() == []

    # umoci's own writer made the whiteouts: one per deleted path, none opaque
    assert _layer_names(content, layers[1]) >= {"etc/.wh.doomed", "data/old/.wh.a"}


def test_umoci_image_runs_from_our_snapshots(
    umoci_layout: Path, state_dir: Path, mounter: Mounter
) -> None:
    content, images = _stores(state_dir / "data")
    [image] = load(content, images, umoci_layout, name="umoci.test/busybox")
    manifest = json.loads(content.read(image.target.digest))
    config = json.loads(content.read(manifest["config"]["digest"]))
    snapshots = OverlaySnapshotter(str(state_dir / "data"))
    chain: str | None = None
    for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
        with content.open(layer["digest"]) as blob:
            chain = snapshots.unpack(chain, blob, layer["mediaType"], diff_id)
    assert chain is not None and len(snapshots.list()) == 2

    bundle = state_dir / "bundle"
    bundle.mkdir()
    rootfs = mounter(snapshots.mounts(chain, str(state_dir / "c1")), bundle / "rootfs")
    (bundle / "config.json").write_text(
        json.dumps(runtime_config(config, Overrides(), str(rootfs)))
    )
    out = run_cli(state_dir / "root", "run", "-b", str(bundle), unique())
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "ls: /etc/doomed: No such file or directory",
        "b",
        "new",
        "file",
        "a-gone",
        "swap-is-a-file",
    ]


def test_umoci_reads_and_unpacks_what_we_save(
    umoci_layout: Path, busybox_rootfs: Path, tmp_path: Path
) -> None:
    content, images = _stores(tmp_path / "data")
    ours = import_rootfs(content, images, str(busybox_rootfs), parse("example.com/bb:v1"))
    load(content, images, umoci_layout, name="umoci.test/busybox")  # and back out again
    archive = io.BytesIO()
    save(content, images, ["example.com/bb:v1", "umoci.test/busybox:t"], archive, format="oci")
    layout = tmp_path / "saved"
    archive.seek(0)
    with tarfile.open(fileobj=archive) as tar:
        tar.extractall(layout, filter="data")

    assert set(umoci("ls", "--layout", layout).split()) == {"v1", "t"}
    stat = json.loads(umoci("stat", "--json", "--image", f"{layout}:v1"))
    manifest = json.loads(content.read(ours.target.digest))
    config = json.loads(content.read(manifest["config"]["digest"]))
    assert [h["layer"]["digest"] for h in stat["history"]] == [
        layer["digest"] for layer in manifest["layers"]
    ]
    assert [h["diff_id"] for h in stat["history"]] == config["rootfs"]["diff_ids"]

    umoci("unpack", "--image", f"{layout}:v1", tmp_path / "ours")
    rootfs = tmp_path / "ours" / "rootfs"
    assert (rootfs / "etc" / "hostname").read_text() == "busybox\n"
    assert (rootfs / "bin" / "busybox").read_bytes() == (
        busybox_rootfs / "bin" / "busybox"
    ).read_bytes()
    assert (rootfs / "bin" / "sh").is_symlink()

    # umoci's own image, through our store and save: its whiteouts still apply
    umoci("unpack", "--image", f"{layout}:t", tmp_path / "theirs")
    rootfs = tmp_path / "theirs" / "rootfs"
    assert not (rootfs / "etc" / "doomed").exists()
    assert sorted(p.name for p in (rootfs / "data" / "old").iterdir()) == ["b"]
    assert (rootfs / "data" / "swap").read_text() == "file\n"


def test_umoci_file_over_a_full_directory_loads(tmp_path: Path) -> None:
    layout = _file_over_full_directory(tmp_path)
    content, images = _stores(tmp_path / "data")
    [image] = load(content, images, layout, name="umoci.test/swap")
    manifest = json.loads(content.read(image.target.digest))
    # umoci writes the new file *and* a whiteout below it, for the old child
    assert {"data/swap", "data/swap/.wh.inner"} <= _layer_names(
        content, manifest["layers"][1]["digest"]
    )


def test_umoci_file_over_a_full_directory_unpacks(tmp_path: Path) -> None:
    layout = _file_over_full_directory(tmp_path)
    content, images = _stores(tmp_path / "data")
    [image] = load(content, images, layout, name="umoci.test/swap")
    manifest = json.loads(content.read(image.target.digest))
    config = json.loads(content.read(manifest["config"]["digest"]))
    snapshots = OverlaySnapshotter(str(tmp_path / "data"))
    chain: str | None = None
    for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
        with content.open(layer["digest"]) as blob:
            chain = snapshots.unpack(chain, blob, layer["mediaType"], diff_id)
    assert chain is not None
    top = Path(snapshots.snapshots_dir) / str(snapshots.stat(chain).id) / "fs"
    # The file hides the old directory; the redundant whiteout below it was skipped.
    assert (top / "data" / "swap").read_text() == "file\n"
    assert sorted(p.name for p in (top / "data").iterdir()) == ["swap"]


def _file_over_full_directory(work: Path) -> Path:
    """A two-layer umoci image: /data/swap/inner, then /data/swap a file."""
    layout, image = work / "layout", f"{work / 'layout'}:t"
    umoci("init", "--layout", layout)
    umoci("new", "--image", image)
    umoci("unpack", "--image", image, work / "b1")
    (work / "b1" / "rootfs" / "data" / "swap").mkdir(parents=True)
    (work / "b1" / "rootfs" / "data" / "swap" / "inner").write_text("inner\n")
    umoci("repack", "--image", image, work / "b1")
    umoci("unpack", "--image", image, work / "b2")
    shutil.rmtree(work / "b2" / "rootfs" / "data" / "swap")
    (work / "b2" / "rootfs" / "data" / "swap").write_text("file\n")
    umoci("repack", "--image", image, work / "b2")
    return layout
